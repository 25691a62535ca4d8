"""PTQ plan entries of the non-weighted nodes: Add, Mul, Concat, pools, ReLU/Clip, Sigmoid,
LeakyRelu.

Used by :func:`fxp.plan.ptq.ptq_pow2` and :func:`fxp.plan.ptq.ptq_affine` so
that residual and mobile networks compile under every scheme (see
:mod:`fxp.sim.residual` for the arithmetic each entry selects):

* Add, Mul, Concat, Sigmoid, LeakyRelu: an output spec calibrated from the float
  reference's range of the node's output, like every other activation;
* AvgPool2D, GlobalAvgPool, ReLU, Clip: no output spec (the input's coding is
  kept; an affine ReLU/Clip clamps, an affine pool runs the runtime's pool);
* Sigmoid / LeakyRelu under a TFLite scheme (``double`` / ``single``), which
  has no integer kernel for them here (issue 16), become float islands:
  ``float_layer`` with the calibrated output spec (dequantize, compute in
  float32, quantize).

The entries carry the plan's ``requant`` scheme, ``rounding`` and
``output_overflow``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fxp.ir.graph import Graph
from fxp.ir.nodes import Add, AvgPool2D, Clip, Concat, GlobalAvgPool, LeakyRelu, Mul, ReLU, Sigmoid
from fxp.plan.plan import LayerPlan, RequantScheme, TensorSpec

__all__ = ["CALIBRATED", "KEEP_INPUT", "calibrated_tensors", "node_plans"]

CALIBRATED = (Add, Mul, Concat, Sigmoid, LeakyRelu)
"""Nodes whose output spec is calibrated from the float range of their output."""
KEEP_INPUT = (AvgPool2D, GlobalAvgPool, ReLU, Clip)
"""Nodes whose plan entry keeps the input's coding."""


def calibrated_tensors(graph: Graph) -> list[str]:
    """Output tensors of the :data:`CALIBRATED` nodes, in graph order."""
    return [n.output for n in graph.nodes if isinstance(n, CALIBRATED)]


def node_plans(graph: Graph, ranges: dict[str, np.ndarray],
               spec: Callable[[np.ndarray, str], TensorSpec], *, requant: RequantScheme,
               rounding: str, output_overflow: str = "saturate") -> list[LayerPlan]:
    """One :class:`LayerPlan` per non-weighted node (see the module docstring).

    ``spec(values, tensor_name)`` codes a calibrated tensor (the scheme's
    activation spec); ``ranges`` holds the values of :func:`calibrated_tensors`.
    """
    tflite = requant in (RequantScheme.DOUBLE, RequantScheme.SINGLE)
    common = dict(requant=requant, rounding=rounding, output_overflow=output_overflow)
    plans = []
    for node in graph.nodes:
        if isinstance(node, CALIBRATED):
            out = spec(ranges[node.output], node.output)
            island = tflite and isinstance(node, (Sigmoid, LeakyRelu))
            plans.append(LayerPlan(node.name, output=out, float_layer=island, **common))
        elif isinstance(node, KEEP_INPUT):
            plans.append(LayerPlan(node.name, **common))
    return plans
