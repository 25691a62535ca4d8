"""Number-system operations on integer codes: the public, validated entry points.

Each function validates its arguments, then runs either the Numba kernel
(``backend="numba"``, the default) or the numpy specification in
:mod:`fxp.core.intmath` (``backend="numpy"``).  Both return the same
``(codes, n_overflow)`` bit for bit; the test suite checks it on every example.

>>> from fxp import QFormat
>>> codes, n = quantize([0.7, -0.7, 3.0], QFormat(4, 2), "half_even", "saturate")
>>> codes.tolist(), n           # fixed<4,2>: LSB 0.25, range [-2, 1.75]
([3, -3, 7], 1)
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import FormatError, HeadroomError

__all__ = [
    "accumulate",
    "cast",
    "dequantize",
    "dot",
    "quantize",
    "requantize_float32",
    "requantize_multiplier",
    "requantize_pow2",
]

_BACKENDS = ("numba", "numpy")


def _backend(name: str) -> str:
    if name not in _BACKENDS:
        raise FormatError(f"backend must be one of {_BACKENDS}, got {name!r}")
    return name


def _seed(mode: RoundingMode, seed: int | None) -> np.uint64:
    if mode is RoundingMode.STOCHASTIC:
        intmath._stochastic_bits(mode, seed, (0,), 0)  # validates the seed
        return np.uint64(int(seed) % (1 << 64))
    return np.uint64(0)


def _fmt_args(fmt: QFormat, mode: OverflowMode) -> tuple[int, int, int, bool, int]:
    lo, hi = intmath._range_for(fmt, mode)
    return lo, hi, fmt.bits, fmt.signed, mode.code


def quantize(x, fmt: QFormat, rounding="half_even", overflow="saturate", *,
             seed: int | None = None, index_offset: int = 0, backend: str = "numba"):
    """Real values -> codes of ``fmt``; returns ``(codes, n_overflow)``.

    Rounding is decided on the exact binary value of each float (never on a
    rounded product); NaN/Inf raise :class:`FormatError` naming the index.
    ``seed`` is required for ``"stochastic"`` rounding.
    """
    rounding = RoundingMode.from_string(rounding)
    overflow = OverflowMode.from_string(overflow)
    if _backend(backend) == "numpy":
        return intmath.quantize(x, fmt, rounding, overflow, seed=seed, index_offset=index_offset)
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise FormatError(f"cannot quantize non-finite value {float(a.flat[bad])!r} at flat index {bad}")
    from fxp.kernels.elementwise import quantize_floats

    lo, hi, bits, signed, ocode = _fmt_args(fmt, overflow)
    flat = np.ascontiguousarray(a).ravel()
    fast = _fast_quantize(flat, fmt, rounding, overflow)
    if fast is not None:
        return fast[0].reshape(a.shape), fast[1]
    out, n = quantize_floats(flat.size, flat, fmt.frac_bits, rounding.code, ocode,
                             lo, hi, bits, signed, _seed(rounding, seed), int(index_offset))
    return out.reshape(a.shape), int(n)


def _fast_ok(rounding: RoundingMode, overflow: OverflowMode) -> bool:
    return rounding is not RoundingMode.STOCHASTIC and overflow in (
        OverflowMode.SATURATE, OverflowMode.SATURATE_SYMMETRIC, OverflowMode.WRAP)


def fast_quantize_args(fmt: QFormat, rounding, overflow) -> tuple | None:
    """The scalar arguments of the branch-free quantizer
    (:func:`fxp.kernels.elementwise.fast_quantize_floats`) for these modes, or None where it
    does not apply (stochastic rounding, saturate-to-zero, ``frac_bits`` outside 0..1000)."""
    rounding = RoundingMode.from_string(rounding)
    overflow = OverflowMode.from_string(overflow)
    if not (_fast_ok(rounding, overflow) and 0 <= fmt.frac_bits <= 1000):
        return None
    from fxp.kernels.elementwise import ROUND_MASKS

    lo, hi = _fmt_args(fmt, overflow)[:2]
    return (float(2.0**fmt.frac_bits), ROUND_MASKS[rounding.code], lo, hi,
            overflow is not OverflowMode.WRAP)


def run_fast_quantize(flat: np.ndarray, args: tuple) -> tuple[np.ndarray, int] | None:
    """``(codes, n_overflow)`` of the branch-free quantizer on the 1-D floats ``flat`` with
    :func:`fast_quantize_args`; None when an element needs the general kernel (|x * 2**F|
    >= 2**52, non-finite) or a wrapping format overflowed."""
    from fxp.kernels.elementwise import fast_quantize_floats

    out, n, unsafe = fast_quantize_floats(flat.size, flat, *args)
    if unsafe or (not args[4] and n):
        return None
    return out, int(n)


def _fast_quantize(flat, fmt, rounding, overflow):
    """Branch-free kernel when 0 <= frac_bits <= 1000 (exact scaling); None to fall back."""
    args = fast_quantize_args(fmt, rounding, overflow)
    return None if args is None else run_fast_quantize(flat, args)


def _fast_cast(flat, shift, rounding, overflow, fmt):
    """Branch-free kernel for right shifts 1..62 (None to fall back)."""
    if not (_fast_ok(rounding, overflow) and 1 <= shift <= 62):
        return None
    from fxp.kernels.elementwise import ROUND_MASKS, fast_cast_codes

    lo, hi = intmath._range_for(fmt, overflow)
    saturating = overflow is not OverflowMode.WRAP
    out, n = fast_cast_codes(flat.size, flat, int(shift), ROUND_MASKS[rounding.code], lo, hi,
                             saturating)
    if not saturating and n:
        return None
    return out, int(n)


def dequantize(codes, fmt: QFormat) -> np.ndarray:
    """Codes -> float64 values (exact while |code| < 2**53)."""
    return intmath.dequantize(codes, fmt)


def _cast_kernel(x: np.ndarray, shift: int, rounding, overflow, fmt, seed, offset):
    from fxp.kernels.elementwise import cast_codes

    lo, hi, bits, signed, ocode = _fmt_args(fmt, overflow)
    flat = np.ascontiguousarray(x).ravel()
    fast = _fast_cast(flat, shift, rounding, overflow, fmt)
    if fast is not None:
        return fast[0].reshape(x.shape), fast[1]
    out, n = cast_codes(flat.size, flat, int(shift), rounding.code, ocode,
                        lo, hi, bits, signed, _seed(rounding, seed), int(offset))
    return out.reshape(x.shape), int(n)


def cast(codes, src: QFormat, dst: QFormat, rounding="floor", overflow="wrap", *,
         seed: int | None = None, index_offset: int = 0, backend: str = "numba"):
    """Codes of ``src`` -> codes of ``dst``: round dropped bits, then overflow.

    Returns ``(codes, n_overflow)``.  Defaults follow ``ap_fixed`` (AP_TRN, AP_WRAP).
    """
    rounding = RoundingMode.from_string(rounding)
    overflow = OverflowMode.from_string(overflow)
    if _backend(backend) == "numpy":
        return intmath.cast(codes, src, dst, rounding, overflow, seed=seed, index_offset=index_offset)
    x = intmath._as_codes(codes)
    intmath._check_in_format(x, src)
    return _cast_kernel(x, src.frac_bits - dst.frac_bits, rounding, overflow, dst, seed, index_offset)


def requantize_pow2(acc, shift: int, out: QFormat, rounding="half_up", overflow="saturate", *,
                    seed: int | None = None, index_offset: int = 0, backend: str = "numba"):
    """FPGA Qm.n requantization: round ``acc / 2**shift`` (shift in 0..64), overflow into ``out``."""
    rounding = RoundingMode.from_string(rounding)
    overflow = OverflowMode.from_string(overflow)
    if _backend(backend) == "numpy":
        return intmath.requantize_pow2(acc, shift, out, rounding, overflow, seed=seed,
                                       index_offset=index_offset)
    x = intmath._as_codes(acc, "accumulator")
    shift = intmath._check_shift(shift, 64)
    return _cast_kernel(x, shift, rounding, overflow, out, seed, index_offset)


def requantize_multiplier(acc, multiplier: int, exponent: int, out: QFormat, *,
                          zero_point: int = 0, scheme: str = "double", overflow="saturate",
                          backend: str = "numba"):
    """MCU requantization ``sat(acc * M * 2**(exponent-31) + zp)``; see
    :func:`fxp.core.intmath.multiply_by_quantized_multiplier` for ``scheme``."""
    overflow = OverflowMode.from_string(overflow)
    if _backend(backend) == "numpy":
        return intmath.requantize_multiplier(acc, multiplier, exponent, out, zero_point=zero_point,
                                             scheme=scheme, overflow=overflow)
    if scheme not in ("double", "single"):
        raise FormatError(f"unknown multiplier scheme {scheme!r}; use 'double' or 'single'")
    x = intmath._as_codes(acc, "accumulator")
    intmath._check_int32(x)
    hi_exp = 30 if scheme == "single" else 31
    intmath._check_multiplier(multiplier, exponent, -31, hi_exp)
    zp = int(zero_point)
    if not out.contains_code(zp):
        raise FormatError(f"zero_point={zp} is outside {out} [{out.min_code}, {out.max_code}]")
    from fxp.kernels.requant_channel import requantize_multiplier_channels

    lo, hi, bits, signed, ocode = _fmt_args(out, overflow)
    flat = np.ascontiguousarray(x).ravel()
    # one channel covering every element: the per-channel kernel is the per-tensor one
    y, n = requantize_multiplier_channels(flat.size, flat, np.array([multiplier], np.int64),
                                          np.array([exponent], np.int64), max(1, flat.size),
                                          scheme == "single", zp, ocode, lo, hi, bits, signed)
    return y.reshape(x.shape), int(n)


def requantize_float32(acc, scale, out: QFormat, *, zero_point: int = 0, backend: str = "numba"):
    """onnxruntime-style float32 requantization (always saturating into ``out``)."""
    if _backend(backend) == "numpy":
        return intmath.requantize_float32(acc, scale, out, zero_point=zero_point)
    x = intmath._as_codes(acc, "accumulator")
    with np.errstate(over="ignore"):
        s32 = np.float32(scale)
    if not np.isfinite(s32) or s32 <= 0:
        raise FormatError(f"scale must be finite and > 0 in float32, got {scale!r}")
    from fxp.kernels.requant_channel import requantize_float32_channels

    flat = np.ascontiguousarray(x).ravel()
    y, n = requantize_float32_channels(flat.size, flat, np.array([s32], np.float32),
                                       max(1, flat.size), int(zero_point), out.min_code,
                                       out.max_code)
    return y.reshape(x.shape), int(n)


def accumulate(products, acc: QFormat, overflow="wrap", *, backend: str = "numba"):
    """Sum along the last axis in an ``acc``-wide accumulator, in index order.

    Returns ``(sums, n_events)``; see :func:`fxp.core.intmath.accumulate`.
    """
    overflow = OverflowMode.from_string(overflow)
    if _backend(backend) == "numpy":
        return intmath.accumulate(products, acc, overflow)
    p = intmath._as_codes(products, "products")
    if p.ndim == 0:
        raise FormatError("products must have at least one axis (the reduction axis)")
    from fxp.kernels.accumulate import accumulate_rows

    lo, hi, bits, signed, ocode = _fmt_args(acc, overflow)
    rows = np.ascontiguousarray(p.reshape(-1, p.shape[-1]))
    out, n = accumulate_rows(rows.size, rows, lo, hi, bits, signed, ocode)
    return out.reshape(p.shape[:-1]), int(n)


def dot(a, b, a_fmt: QFormat, b_fmt: QFormat, acc: QFormat, overflow="wrap", *,
        backend: str = "numba"):
    """Dot products along the last axis of codes ``a`` and ``b`` in an ``acc`` accumulator.

    Products are exact (the formats must prove that a product fits int64:
    ``a_fmt.bits + b_fmt.bits <= 64``), then accumulated in index order.
    """
    if a_fmt.bits + b_fmt.bits > 64:
        raise HeadroomError(
            f"a product of {a_fmt} and {b_fmt} needs up to {a_fmt.bits + b_fmt.bits} bits; "
            "int64 holds 64: narrow an operand"
        )
    x = intmath._as_codes(a)
    y = intmath._as_codes(b)
    intmath._check_in_format(x, a_fmt)
    intmath._check_in_format(y, b_fmt)
    try:
        prods = x * y
    except ValueError as exc:
        raise FormatError(f"operands do not broadcast: {x.shape} and {y.shape}") from exc
    return accumulate(prods, acc, overflow, backend=backend)
