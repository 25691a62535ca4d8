"""Tensor values flowing through the integer executor: integer codes or floats."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.errors import PlanError
from fxp.ops.fixed import quantize
from fxp.plan.plan import TensorSpec

__all__ = ["FloatValue", "IntValue", "quantize_spec", "to_float"]


@dataclass(frozen=True)
class IntValue:
    """Integer codes plus the spec that says how to read them."""

    codes: np.ndarray
    spec: TensorSpec


@dataclass(frozen=True)
class FloatValue:
    """A float32 tensor (layers the plan keeps in float)."""

    data: np.ndarray


def _per_tensor_scale(spec: TensorSpec, what: str) -> float:
    s = spec.scale_array()
    if s.size != 1:
        raise PlanError(f"{what}: activations take one scale per tensor, got {s.size}")
    return float(s[0])


def to_float(v: IntValue | FloatValue, what: str = "tensor") -> np.ndarray:
    """Real values: ``scale * (code - zero_point)`` in float32 (float64 product, rounded once)."""
    if isinstance(v, FloatValue):
        return v.data
    spec = v.spec
    if spec.is_pow2:
        return np.ldexp(v.codes.astype(np.float64), -spec.fmt.frac_bits).astype(np.float32)
    scale = _per_tensor_scale(spec, what)
    return ((v.codes - spec.zero_point).astype(np.float64) * scale).astype(np.float32)


def quantize_spec(x: np.ndarray, spec: TensorSpec, what: str = "tensor",
                  rounding: str = "half_even") -> tuple[np.ndarray, int]:
    """Real values -> codes of ``spec`` with saturation; returns (codes, n_saturated).

    Power-of-two specs round the exact binary value; affine specs round
    ``x / scale`` (computed in float64) and add the zero point, as
    onnxruntime's QuantizeLinear does (which computes in float32: for
    bit-exact comparison with it, feed already-quantized inputs).
    """
    if spec.is_pow2:
        return quantize(x, spec.fmt, rounding, "saturate")
    scale = _per_tensor_scale(spec, what)
    wide = spec.fmt.__class__.integer(min(64, spec.fmt.bits + 40))
    codes, _ = quantize(np.asarray(x, np.float64) / scale, wide, rounding, "saturate")
    shifted = codes + spec.zero_point
    clipped = np.clip(shifted, spec.fmt.min_code, spec.fmt.max_code)
    return clipped, int(np.count_nonzero(clipped != shifted))
