"""fxp: a bit-exact fixed-point simulator and bit-width optimizer for CNNs.

Integers are the truth and floats a view: every fixed-point value is an
integer *code* (int64) plus a :class:`~fxp.core.format.QFormat` that says how
to read it.  See the README for the tour.

The names below are the curated public API; heavier ones (ONNX import, the
engine, the optimizer) are imported on first use, so ``import fxp`` stays light.
"""

from __future__ import annotations

from importlib import import_module

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import FxpError

__version__ = "0.1.0"

_LAZY = {
    "Plan": "fxp.plan.plan",
    "LayerPlan": "fxp.plan.plan",
    "TensorSpec": "fxp.plan.plan",
    "load_plan": "fxp.plan.io",
    "save_plan": "fxp.plan.io",
    "load_onnx": "fxp.frontends.onnx_import",
    "compile_plan": "fxp.sim.compile",
    "run_integer": "fxp.sim.integer",
    "simulate": "fxp.sim.evaluate",
    "quantize": "fxp.ops.fixed",
    "dequantize": "fxp.ops.fixed",
    "cast": "fxp.ops.fixed",
    "optimize_bits": "fxp.opt.solve",
}

__all__ = ["FxpError", "OverflowMode", "QFormat", "RoundingMode", "__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fxp' has no attribute {name!r}")
