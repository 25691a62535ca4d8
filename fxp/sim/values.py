"""Tensor values flowing through the integer executor: integer codes or floats."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FormatError, PlanError
from fxp.ops.fixed import quantize
from fxp.plan.plan import TensorSpec

__all__ = ["INPUT_ARITHMETIC", "ChannelsLast", "FloatValue", "IntValue", "quantize_linear_f32",
           "quantize_spec", "to_float"]

INPUT_ARITHMETIC = ("float64", "float32")
"""How :func:`quantize_spec` divides by an affine scale (see there)."""


@dataclass(frozen=True)
class IntValue:
    """Integer codes plus the spec that says how to read them."""

    codes: np.ndarray
    spec: TensorSpec


@dataclass(frozen=True)
class ChannelsLast:
    """Codes of an NCHW tensor held channels-last, the layout of the proven float path.

    ``codes`` is ``[N, H, W, C]`` or, after a Flatten, ``[N, H*W*C]`` in that
    ``(h, w, c)`` order; ``chw`` is the NCHW tensor's ``(C, H, W)``.  The
    executor keeps these only between layers that read them
    (:mod:`fxp.sim.fast`); :meth:`to_int` gives the NCHW :class:`IntValue`.
    """

    codes: np.ndarray
    spec: TensorSpec
    chw: tuple[int, int, int]

    def to_int(self) -> IntValue:
        """The same codes in NCHW order (flattened: in ``(c, h, w)`` order)."""
        c, h, w = self.chw
        n = self.codes.shape[0]
        nchw = np.ascontiguousarray(self.codes.reshape(n, h, w, c).transpose(0, 3, 1, 2))
        return IntValue(nchw.reshape(n, -1) if self.codes.ndim == 2 else nchw, self.spec)


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


def quantize_linear_f32(x, scale, zero_point, fmt: QFormat, *, axis: int = 1,
                        rounding: str = "half_even") -> tuple[np.ndarray, int]:
    """onnxruntime ``QuantizeLinear``: ``saturate(rint(float32(x) / float32(scale)) + zp)``.

    The quotient is one float32 division (MLAS ``_mm_div_ps``), rounded half to
    even (``_mm_cvtps_epi32``), clamped to ``fmt`` and shifted by the zero
    point.  ``scale`` / ``zero_point`` are scalars or 1-D per-channel arrays
    along ``axis`` of ``x``.  Returns ``(codes int64, n_saturated)``.

    >>> quantize_linear_f32([0.5, 1.5, -300.0], 1.0, 0, QFormat.integer(8))[0].tolist()
    [0, 2, -128]
    """
    x32 = np.asarray(x, np.float32)
    if not np.all(np.isfinite(x32)):
        bad = int(np.flatnonzero(~np.isfinite(x32))[0])
        raise FormatError(f"cannot quantize non-finite value {float(x32.flat[bad])!r} at flat "
                          f"index {bad}")
    with np.errstate(over="ignore"):
        s32 = np.asarray(scale, np.float32)
    zp = np.asarray(zero_point).astype(np.int64)
    if not np.all(np.isfinite(s32)) or np.any(s32 <= 0):
        raise FormatError(f"scale must be finite and > 0 in float32, got {scale!r}")
    if s32.ndim > 1 or zp.ndim > 1:
        raise FormatError("scale and zero_point must be scalars or 1-D (per channel)")
    if s32.ndim == 1 or zp.ndim == 1:
        if x32.ndim == 0 or not -x32.ndim <= axis < x32.ndim:
            raise FormatError(f"axis={axis} is out of range for shape {x32.shape}")
        shape = [1] * x32.ndim
        shape[axis] = -1
        s32 = s32.reshape(shape) if s32.ndim == 1 else s32
        zp = zp.reshape(shape) if zp.ndim == 1 else zp
    if np.any((zp < fmt.min_code) | (zp > fmt.max_code)):
        raise FormatError(f"zero_point {zero_point!r} is outside {fmt}")
    with np.errstate(over="ignore"):
        q = x32 / s32  # float32 / float32 -> float32, round to nearest even
    lo = (fmt.min_code - zp).astype(np.float32) - np.float32(2)
    hi = (fmt.max_code - zp).astype(np.float32) + np.float32(2)
    q = np.clip(q, lo, hi)  # finite now; clamping first changes no result (MLAS clamps too)
    wide = QFormat.integer(min(64, fmt.bits + 40))
    r, _ = quantize(q.astype(np.float64), wide, rounding, "saturate")
    shifted = r + zp
    codes = np.clip(shifted, fmt.min_code, fmt.max_code)
    return codes, int(np.count_nonzero(codes != shifted))


def quantize_spec(x: np.ndarray, spec: TensorSpec, what: str = "tensor",
                  rounding: str = "half_even", *, arithmetic: str = "float64"
                  ) -> tuple[np.ndarray, int]:
    """Real values -> codes of ``spec`` with saturation; returns (codes, n_saturated).

    Power-of-two specs round the exact binary value.  Affine specs round
    ``x / scale`` and add the zero point; ``arithmetic`` says how the
    quotient is formed: ``"float64"`` (default) divides exactly enough that
    only the final rounding matters, ``"float32"`` is onnxruntime's
    ``QuantizeLinear`` (one float32 division, :func:`quantize_linear_f32`),
    which differs from float64 on inputs within a float32 ulp of a tie.
    """
    if arithmetic not in INPUT_ARITHMETIC:
        raise PlanError(f"arithmetic must be one of {INPUT_ARITHMETIC}, got {arithmetic!r}")
    if spec.is_pow2:
        return quantize(x, spec.fmt, rounding, "saturate")
    scale = _per_tensor_scale(spec, what)
    if arithmetic == "float32":
        return quantize_linear_f32(x, scale, spec.zero_point, spec.fmt, rounding=rounding)
    wide = spec.fmt.__class__.integer(min(64, spec.fmt.bits + 40))
    codes, _ = quantize(np.asarray(x, np.float64) / scale, wide, rounding, "saturate")
    shifted = codes + spec.zero_point
    clipped = np.clip(shifted, spec.fmt.min_code, spec.fmt.max_code)
    return clipped, int(np.count_nonzero(clipped != shifted))
