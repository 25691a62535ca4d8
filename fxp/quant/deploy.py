"""Run any weight quantizer's output on the integer engine.

A quantizer maps each weight to one of a few reconstruction levels (a codebook,
power-of-two values, minifloats, ...).  Hardware stores those levels in a
fixed-point word; :func:`deploy_quantizer` does the same: every layer's
reconstructed weights are rounded (half to even) into a power-of-two format of
``store_bits`` bits sized to the layer's largest level, and a plan is built
whose weight format holds those stored values exactly, so ``fxp simulate``
computes with exactly the stored levels.  The number of distinct weight values
per tensor stays at most the quantizer's level count (two levels closer than
one LSB of the storage format could merge; the result reports it).

Power-of-two quantizers (``pow2``, ``inq``) leave every stored weight at 0 or
``+-2**k`` LSBs: their plan marks the weights shift (:meth:`TensorSpec.shift`),
so the integer engine runs those layers as shift-add layers (the same integers
as multiplying, computed the way shift hardware does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fxp.core.format import QFormat
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense
from fxp.ops.fixed import dequantize, quantize
from fxp.plan.plan import Plan
from fxp.plan.ptq import int_bits_for, ptq_pow2
from fxp.quant import get
from fxp.quant.pow2 import Pow2

__all__ = ["DeployedModel", "deploy_quantizer"]


@dataclass(frozen=True)
class DeployedModel:
    """A graph whose weights are the stored levels, its plan, and per-layer level counts."""

    graph: Graph
    plan: Plan
    levels: dict[str, int]
    entropy_bits: dict[str, float]


def deploy_quantizer(graph: Graph, calib_x: np.ndarray, quantizer: str, bits: int, *,
                     store_bits: int = 16, act_bits: int = 16, acc_bits: int = 48,
                     per_channel: bool = False, shift: bool | None = None) -> DeployedModel:
    """Quantize every Conv2D/Dense weight with ``quantizer`` at ``bits`` and make it runnable.

    Parameters
    ----------
    quantizer : str
        A registry name, e.g. ``"kmeans"``, ``"hc:ward"``, ``"deadzone:0.4"``.
    bits : int
        The quantizer's width (2**bits levels for clustering).
    store_bits : int
        Word length (bits) of the stored levels; activations use ``act_bits`` and
        accumulators ``acc_bits`` (power-of-two formats from calibration).
    shift : bool or None
        Mark the weights shift (shift-add layers); None: for power-of-two
        quantizers only.  Every stored code must then be 0 or +-2**k.
    """
    from fxp.quant.entropy import entropy_bits as _entropy

    q = get(quantizer)
    nodes, levels, ent = [], {}, {}
    for node in graph.nodes:
        if isinstance(node, (Conv2D, Dense)):
            qt = q(node.weight.astype(np.float64), bits, axis=0 if per_channel else None)
            vals = np.asarray(qt.values, np.float64)
            m = float(np.max(np.abs(vals)))
            fmt = QFormat(store_bits, int_bits_for(m, True) if m > 0 else 1)
            codes, _ = quantize(vals, fmt, "half_even", "saturate")
            stored = dequantize(codes, fmt).astype(np.float32)
            levels[node.name] = int(np.unique(stored).size)
            ent[node.name] = float(_entropy(qt.codes))
            node = replace(node, weight=stored)
        nodes.append(node)
    g2 = graph.with_nodes(nodes)
    plan = ptq_pow2(g2, calib_x, weight_bits=store_bits, act_bits=act_bits, acc_bits=acc_bits,
                    name=f"deploy-{quantizer}-{bits}b-store{store_bits}")
    if shift if shift is not None else isinstance(q, Pow2):
        plan = plan.with_shift_weights(list(levels))
    return DeployedModel(g2, plan, levels, ent)
