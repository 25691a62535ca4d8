"""The fxp model IR: typed nodes, the :class:`Graph`, passes and layer statistics."""

from __future__ import annotations

from fxp.ir.graph import Graph
from fxp.ir.stats import LayerStats, layer_stats, node_macs, param_count

__all__ = ["Graph", "LayerStats", "layer_stats", "node_macs", "param_count"]
