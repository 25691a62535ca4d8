"""How the integer executor brings codes into a layer's input format (issue 17's fast path).

* :func:`quantize_pow2_input` -- the plan's power-of-two input quantization, with its
  branch-free kernel's arguments found once per model;
* :func:`cast_input` -- a value's codes cast (saturating) to a step's input format, in one
  fused pass (:func:`fxp.sim.fast.fast_cast`) where it applies; a tensor that two layers
  read under the same cast is cast once;
* :func:`clamp_narrow` -- an activation clamp in the codes' own narrow dtype.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

import numpy as np

from fxp.ops.fixed import cast, fast_quantize_args, quantize, run_fast_quantize
from fxp.sim.fast import cast_plan, fast_cast

if TYPE_CHECKING:
    from fxp.sim.compile import CompiledModel, LayerStep

__all__ = ["cast_input", "clamp_narrow", "quantize_pow2_input"]


def quantize_pow2_input(model: CompiledModel, x: np.ndarray) -> tuple[np.ndarray, int]:
    """The plan's power-of-two input quantization: :func:`fxp.ops.fixed.quantize` with its
    branch-free kernel's arguments found once per model (the general path where it falls
    back, which also names a non-finite input)."""
    plan = model.plan
    if "_input_q" not in model.__dict__:
        model.__dict__["_input_q"] = fast_quantize_args(plan.input.fmt, plan.input_rounding,
                                                        plan.input_overflow)
    args = model.__dict__["_input_q"]
    done = run_fast_quantize(x.ravel(), args) if args is not None else None
    if done is not None:
        return done[0].reshape(x.shape), done[1]
    return quantize(x, plan.input.fmt, plan.input_rounding, plan.input_overflow)


def cast_input(step: LayerStep, v) -> tuple[np.ndarray, int]:
    """``v``'s codes cast (saturating) to the step's input format: the fused pass of
    :func:`fxp.sim.fast.fast_cast` where it applies (planned once per step and source
    format), else :func:`fxp.ops.fixed.cast`."""
    src, dst = v.spec.fmt, step.in_specs[0].fmt
    plans = step.__dict__.setdefault("_casts", {})
    if src not in plans:
        plans[src] = cast_plan(src, dst, step.plan.rounding)
    if plans[src] is None:
        return cast(v.codes, src, dst, step.plan.rounding, "saturate")
    key = plans[src][1:]  # the shift, offsets, bounds and dtype (not the zero bias array)
    last = getattr(_LAST_CAST, "entry", None)  # a tensor read by two layers: cast once
    if last is not None and last[0] is v.codes and last[1] == key:
        return last[2]
    done = fast_cast(v.codes, plans[src])
    _LAST_CAST.entry = (v.codes, key, done)
    return done


_LAST_CAST = threading.local()
"""This thread's last :func:`fast_cast`: ``(source codes, cast arguments, (codes, n))``.  The
executor never writes into codes it has produced, so the same source array under the same
plan gives the same result (residual blocks cast one tensor for two convolutions)."""


@functools.cache
def _dtype_range(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def clamp_narrow(codes: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``clip(codes, lo, hi)`` in the codes' own dtype (bounds beyond it change nothing; no
    bound inside it: the codes as they are)."""
    d_lo, d_hi = _dtype_range(codes.dtype)
    out = codes
    if lo > d_lo:
        out = np.maximum(out, codes.dtype.type(lo))
    if hi < d_hi:
        out = np.minimum(out, codes.dtype.type(hi))
    return out
