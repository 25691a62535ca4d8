"""Integer primitives on int64 codes: the readable numpy *specification*.

Every function here is the definition the Numba kernels in :mod:`fxp.kernels`
must equal bit for bit (tests pin them together and both to the Python-int /
``fractions.Fraction`` oracles in ``tests/oracles.py``).  Nothing here goes
through floating point except :func:`quantize` (whose float *input* is
decomposed exactly into an integer mantissa and exponent) and
:func:`requantize_float32`, whose mode *is* the float32 convention.

Conventions
-----------
* Codes are ``int64`` arrays; a format is a :class:`~fxp.core.format.QFormat`.
* A positive ``shift`` divides by ``2**shift`` (right shift with rounding).
* Rounding happens first, overflow handling second, as in ``ap_fixed``.
* Every function that can overflow returns ``(codes, n_overflow)`` where
  ``n_overflow`` counts the elements whose value was changed by the overflow
  mode (wrapped, clamped or zeroed).

Stochastic rounding draws one 64-bit number per element from
``splitmix64(seed + (i + 1) * 0x9E3779B97F4A7C15)`` where ``i`` is the
element's flat C-order index plus ``index_offset``.  The result depends only
on (seed, index, value): the same on every run, batch split and thread count.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import FormatError, HeadroomError

__all__ = [
    "accumulate",
    "apply_overflow",
    "cast",
    "dequantize",
    "multiply_by_quantized_multiplier",
    "quantize",
    "quantize_multiplier",
    "random_bits",
    "requantize_float32",
    "requantize_multiplier",
    "requantize_pow2",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
    "shift_right_round",
]

U64 = np.uint64
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_RIGHT_SHIFT = 127
"""Right shifts beyond 127 behave exactly like 127 on int64 inputs (all modes)."""

_GOLDEN = U64(0x9E3779B97F4A7C15)
_MIX1 = U64(0xBF58476D1CE4E5B9)
_MIX2 = U64(0x94D049BB133111EB)

# remainder classes of x / 2**s relative to floor(x / 2**s)
EXACT, BELOW_HALF, TIE, ABOVE_HALF = 0, 1, 2, 3


def random_bits(seed: int, n: int, index_offset: int = 0) -> np.ndarray:
    """``n`` uint64 draws of splitmix64 at flat indices ``index_offset .. index_offset+n-1``."""
    idx = np.arange(n, dtype=U64) + U64(index_offset % (1 << 64))
    with np.errstate(over="ignore"):
        z = U64(seed % (1 << 64)) + (idx + U64(1)) * _GOLDEN
        z = (z ^ (z >> U64(30))) * _MIX1
        z = (z ^ (z >> U64(27))) * _MIX2
    return z ^ (z >> U64(31))


def _as_codes(x: object, what: str = "codes") -> np.ndarray:
    """Integer input as an int64 array; refuses floats and values beyond int64."""
    try:
        a = np.asarray(x)
    except OverflowError as exc:  # pragma: no cover - numpy raises only for odd inputs
        raise HeadroomError(f"{what} hold a value beyond int64: {exc}") from exc
    if a.dtype == object:
        try:
            a = np.asarray(x, dtype=np.int64)
        except (OverflowError, TypeError, ValueError) as exc:
            raise HeadroomError(f"{what} must be integers within int64: {exc}") from exc
    if a.dtype.kind not in "iu":
        raise FormatError(f"{what} must be an integer array, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise HeadroomError(f"{what} holds a value above int64 max: {int(a.max())}")
    return a.astype(np.int64, copy=False)


def _check_shift(shift: int, limit: int | None = None) -> int:
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)):
        raise FormatError(f"shift must be an integer, got {shift!r}")
    shift = int(shift)
    if shift < 0:
        raise FormatError(f"shift={shift} must be >= 0 (a positive shift divides by 2**shift)")
    if limit is not None and shift > limit:
        raise FormatError(f"shift={shift} is beyond the word: the limit is {limit}")
    return shift


def _classify(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """floor(x / 2**s), the remainder class, and the stochastic threshold (uint64).

    ``s`` (broadcastable int64) must lie in [1, 127].
    """
    s = np.broadcast_to(np.asarray(s, np.int64), x.shape)
    small = s < 64
    s_lo = np.where(small, s, 63)
    q = np.where(small, x >> s_lo, np.where(x < 0, -1, 0)).astype(np.int64)
    ux = x.view(U64)
    mask = np.where(small, (U64(1) << s_lo.astype(U64)) - U64(1), ~U64(0))
    r = ux & mask
    half = np.where(s <= 64, U64(1) << (np.minimum(s, 64) - 1).astype(U64), U64(0))
    cls = np.where(r == 0, EXACT, np.where(r < half, BELOW_HALF, np.where(r == half, TIE, ABOVE_HALF)))
    big = s > 64  # r > 2**63 >= |x|: no ties; x > 0 below half, x < 0 above half
    cls = np.where(big, np.where(x == 0, EXACT, np.where(x > 0, BELOW_HALF, ABOVE_HALF)), cls)
    thr_small = r << (U64(64) - np.where(small, s, 64).astype(U64))
    thr_big = (x >> np.clip(s - 64, 0, 63)).view(U64)
    thr = np.where(small, thr_small, thr_big)
    return q, cls.astype(np.int8), thr


def _round_increment(x, q, cls, thr, mode: RoundingMode, u) -> np.ndarray:
    R = RoundingMode
    nz = cls != EXACT
    if mode is R.FLOOR:
        return np.zeros(x.shape, bool)
    if mode is R.CEIL:
        return nz
    if mode is R.TO_ZERO:
        return nz & (x < 0)
    if mode is R.AWAY:
        return nz & (x > 0)
    if mode is R.HALF_UP:
        return cls >= TIE
    if mode is R.HALF_DOWN:
        return cls == ABOVE_HALF
    if mode is R.HALF_TO_ZERO:
        return (cls == ABOVE_HALF) | ((cls == TIE) & (x < 0))
    if mode is R.HALF_AWAY:
        return (cls == ABOVE_HALF) | ((cls == TIE) & (x > 0))
    if mode is R.HALF_EVEN:
        return (cls == ABOVE_HALF) | ((cls == TIE) & ((q & 1) == 1))
    if mode is R.STOCHASTIC:
        return u < thr
    raise FormatError(f"unknown rounding mode {mode!r}")  # pragma: no cover


def _stochastic_bits(mode: RoundingMode, seed: int | None, shape, index_offset: int):
    if mode is not RoundingMode.STOCHASTIC:
        return None
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise FormatError(
            f"stochastic rounding needs an explicit integer seed (got {seed!r}): "
            "without one the result could not be reproduced"
        )
    return random_bits(int(seed), int(np.prod(shape, dtype=np.int64)), index_offset).reshape(shape)


def _shift_right_round_array(x, s, mode, u) -> np.ndarray:
    """Core of rounding right shifts; ``s`` int64 array/scalar >= 0 (clamped to 127)."""
    s = np.minimum(np.asarray(s, np.int64), MAX_RIGHT_SHIFT)
    s_safe = np.maximum(s, 1)
    q, cls, thr = _classify(x, s_safe)
    inc = _round_increment(x, q, cls, thr, mode, u)
    out = q + inc.astype(np.int64)
    return np.where(s == 0, x, out)


def shift_right_round(x, shift: int, mode, *, seed: int | None = None, index_offset: int = 0):
    """Round ``x / 2**shift`` to an integer with ``mode`` (no overflow is possible).

    Parameters
    ----------
    x : array of int
        Integer codes (held as int64).
    shift : int
        Right shift in bits, >= 0 (a positive shift divides).
    mode : RoundingMode or str
        Rounding mode; ``"stochastic"`` needs ``seed``.

    >>> shift_right_round([5, -5, 3, -3, 7], 1, "half_even").tolist()
    [2, -2, 2, -2, 4]
    >>> shift_right_round([5, -5], 1, "floor").tolist()
    [2, -3]
    """
    mode = RoundingMode.from_string(mode)
    x = _as_codes(x)
    shift = _check_shift(shift)
    u = _stochastic_bits(mode, seed, x.shape, index_offset)
    return _shift_right_round_array(x, shift, mode, u)


def _range_for(fmt: QFormat, mode: OverflowMode) -> tuple[int, int]:
    """Code range under ``mode``: ``[-max, max]`` for a signed ``saturate_symmetric``
    target of 2 bits or more; a signed 1-bit target keeps ``[-1, 0]``, as
    ``ap_fixed<1,I,Q,AP_SAT_SYM>`` does (its symmetric range would be the single code 0).
    """
    lo, hi = fmt.min_code, fmt.max_code
    if mode is OverflowMode.SATURATE_SYMMETRIC and fmt.signed and fmt.bits > 1:
        lo = -hi
    return lo, hi


def _wrap_bits(v_u64: np.ndarray, fmt: QFormat) -> np.ndarray:
    """Two's-complement reduction of a uint64 bit pattern to ``fmt.bits`` bits."""
    if fmt.bits == 64:
        return v_u64.view(np.int64)
    low = v_u64 & U64((1 << fmt.bits) - 1)
    out = low.astype(np.int64)
    if fmt.signed:
        sign = np.int64(1 << (fmt.bits - 1))
        out = (out ^ sign) - sign  # sign-extend bit bits-1
    return out


def _overflow_masked(v: np.ndarray, fmt: QFormat, mode: OverflowMode):
    """(codes, overflow mask) for int64 values ``v`` brought into ``fmt``."""
    lo, hi = _range_for(fmt, mode)
    over = (v > hi) | (v < lo)
    if mode is OverflowMode.WRAP:
        out = _wrap_bits(v.view(U64), fmt)
    elif mode is OverflowMode.SATURATE_ZERO:
        out = np.where(over, 0, v)
    else:
        out = np.clip(v, lo, hi)
    return out.astype(np.int64), over


def apply_overflow(v, fmt: QFormat, mode) -> tuple[np.ndarray, int]:
    """Bring int64 values into ``fmt``'s code range with overflow ``mode``.

    Returns ``(codes, n_overflow)``: ``n_overflow`` counts elements outside the
    range (for ``saturate_symmetric`` the range is ``[-max_code, max_code]``).

    >>> apply_overflow([19, -19, 31], QFormat.integer(4), "wrap")
    (array([ 3, -3, -1]), 3)
    >>> apply_overflow([19, -19], QFormat.integer(4), "saturate_symmetric")[0].tolist()
    [7, -7]
    """
    out, over = _overflow_masked(_as_codes(v), fmt, OverflowMode.from_string(mode))
    return out, int(np.count_nonzero(over))


def _shift_left_overflow(x: np.ndarray, k, fmt: QFormat, mode: OverflowMode):
    """(codes, overflow mask) for ``x * 2**k`` brought into ``fmt``; ``k >= 0``.

    Overflow is decided on ``x`` against ``floor(hi / 2**k)`` and
    ``ceil(lo / 2**k)`` so the exact product is never formed when it cannot fit.
    """
    k = np.broadcast_to(np.minimum(np.asarray(k, np.int64), 64), x.shape)
    lo, hi = _range_for(fmt, mode)
    k63 = np.minimum(k, 63)
    hi_k = np.where(k >= 64, 0, np.int64(hi) >> k63)
    lo_k = np.where(k >= 64, 0, -((U64(-lo) >> k63.astype(U64)).astype(np.int64)))
    over = (x > hi_k) | (x < lo_k)
    if mode is OverflowMode.WRAP:
        shifted = np.where(k >= 64, U64(0), x.view(U64) << k63.astype(U64))
        return _wrap_bits(shifted, fmt), over
    out = np.where(over, 0, x) << k63
    if mode is not OverflowMode.SATURATE_ZERO:
        out = np.where(x > hi_k, hi, np.where(x < lo_k, lo, out))
    return out.astype(np.int64), over


def cast(codes, src: QFormat, dst: QFormat, rounding="floor", overflow="wrap", *,
         seed: int | None = None, index_offset: int = 0) -> tuple[np.ndarray, int]:
    """Convert codes of ``src`` into ``dst``: round the dropped bits, then overflow.

    This is the one lossy operation.  Defaults are ``ap_fixed``'s (AP_TRN, AP_WRAP).

    >>> cast([0b01101], QFormat(5, 2), QFormat(3, 2), "half_even", "saturate")  # 1.625 -> 1.5
    (array([3]), 0)
    """
    rounding = RoundingMode.from_string(rounding)
    overflow = OverflowMode.from_string(overflow)
    x = _as_codes(codes)
    _check_in_format(x, src)
    k = dst.frac_bits - src.frac_bits
    if k >= 0:
        out, over = _shift_left_overflow(x, k, dst, overflow)
        return out, int(np.count_nonzero(over))
    u = _stochastic_bits(rounding, seed, x.shape, index_offset)
    return apply_overflow(_shift_right_round_array(x, -k, rounding, u), dst, overflow)


def _check_in_format(x: np.ndarray, fmt: QFormat) -> None:
    if x.size and (x.min() < fmt.min_code or x.max() > fmt.max_code):
        bad = np.flatnonzero((x < fmt.min_code) | (x > fmt.max_code))[0]
        raise FormatError(
            f"code {int(x.flat[bad])} at flat index {bad} is outside {fmt} "
            f"[{fmt.min_code}, {fmt.max_code}]"
        )


def requantize_pow2(acc, shift: int, out: QFormat, rounding="half_up", overflow="saturate", *,
                    seed: int | None = None, index_offset: int = 0) -> tuple[np.ndarray, int]:
    """FPGA Qm.n requantization: round ``acc / 2**shift`` then overflow into ``out``."""
    rounding = RoundingMode.from_string(rounding)
    x = _as_codes(acc, "accumulator")
    shift = _check_shift(shift, 64)
    u = _stochastic_bits(rounding, seed, x.shape, index_offset)
    return apply_overflow(_shift_right_round_array(x, shift, rounding, u), out, overflow)


def quantize(x, fmt: QFormat, rounding="half_even", overflow="saturate", *,
             seed: int | None = None, index_offset: int = 0) -> tuple[np.ndarray, int]:
    """Real values (float) -> codes of ``fmt``, exactly (no float rounding on the way).

    Each float is split into an integer mantissa and a power of two, so the
    rounding decision is taken on exact integers.  NaN or Inf raise FormatError
    naming the first bad index.

    >>> quantize([0.3, -1.25, 2.5], QFormat(8, 4), "half_even")[0].tolist()
    [5, -20, 40]
    """
    rounding = RoundingMode.from_string(rounding)
    overflow = OverflowMode.from_string(overflow)
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise FormatError(f"cannot quantize non-finite value {float(a.flat[bad])!r} at flat index {bad}")
    m, e = np.frexp(a)
    mant = np.ldexp(m, 53).astype(np.int64)
    t = e.astype(np.int64) - 53 + fmt.frac_bits  # value = mant * 2**t, exactly
    u = _stochastic_bits(rounding, seed, a.shape, index_offset)
    right = _shift_right_round_array(mant, np.maximum(-t, 0), rounding, u)
    codes_r, over_r = _overflow_masked(right, fmt, overflow)
    codes_l, over_l = _shift_left_overflow(np.where(t > 0, mant, 0), np.maximum(t, 0), fmt, overflow)
    codes = np.where(t > 0, codes_l, codes_r)
    return codes.astype(np.int64), int(np.count_nonzero(np.where(t > 0, over_l, over_r)))


def dequantize(codes, fmt: QFormat) -> np.ndarray:
    """Codes -> float64 real values ``code * 2**-frac_bits`` (exact while |code| < 2**53)."""
    return np.ldexp(_as_codes(codes).astype(np.float64), -fmt.frac_bits)


# --------------------------------------------------------------------------- multiplier + shift
def quantize_multiplier(scale: float, *, single_rounding: bool = False) -> tuple[int, int]:
    """Real scale -> ``(multiplier, exponent)`` as TFLite's ``QuantizeMultiplier``.

    ``scale ~= multiplier * 2**(exponent - 31)`` with ``multiplier`` in
    ``[2**30, 2**31)``: ``frexp`` of the float64 scale, the fraction times 2**31
    rounded half away from zero (``std::round``); 2**31 is halved with the
    exponent incremented; an exponent below -31 flushes to (0, 0); with
    ``single_rounding`` an exponent above 30 is clamped to 30 with multiplier
    2**31 - 1.  ``exponent`` > 0 means a left shift (TFLite's ``shift``).

    >>> quantize_multiplier(0.5)
    (1073741824, 0)
    >>> quantize_multiplier(0.0003)
    (1319413953, -11)
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise FormatError(f"scale must be a real number, got {scale!r}")
    s = float(scale)
    if not np.isfinite(s) or s <= 0.0:
        raise FormatError(f"scale must be finite and > 0, got {s!r}")
    frac, exponent = np.frexp(s)
    q = Fraction(float(frac)) * (1 << 31)  # exact: a power-of-two scaling of a double
    q_fixed = int(q.numerator // q.denominator)
    rem = q - q_fixed
    if rem >= Fraction(1, 2):  # ties away from zero; q > 0
        q_fixed += 1
    exponent = int(exponent)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        exponent += 1
    if exponent < -31:
        return 0, 0
    if single_rounding and exponent > 30:
        return (1 << 31) - 1, 30
    return q_fixed, exponent


def _check_multiplier(multiplier: int, exponent: int, lo_exp: int, hi_exp: int) -> None:
    if not 0 <= int(multiplier) <= INT32_MAX:
        raise FormatError(f"multiplier={multiplier} must lie in [0, 2**31 - 1]")
    if not lo_exp <= int(exponent) <= hi_exp:
        raise FormatError(f"exponent={exponent} must lie in [{lo_exp}, {hi_exp}]")


def _check_int32(x: np.ndarray, what: str = "accumulator") -> None:
    if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        bad = int(np.flatnonzero((x < INT32_MIN) | (x > INT32_MAX))[0])
        raise HeadroomError(f"{what} value {int(x.flat[bad])} at flat index {bad} does not fit int32")


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp SRDHM: ``round(a * b / 2**31)`` with ties toward +inf, int32 in and out.

    Saturates only for ``a == b == -2**31`` (result ``2**31 - 1``).  Same as
    ARM NEON ``VQRDMULH``.
    """
    a = _as_codes(a)
    b = _as_codes(b)
    _check_int32(a, "a")
    _check_int32(b, "b")
    ab = a * b
    t = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    r = np.where(t >= 0, t >> 31, -((-t) >> 31))  # C division: truncation toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, r).astype(np.int64)


def rounding_divide_by_pot(x, exponent: int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: ``round(x / 2**exponent)``, ties away from zero."""
    x = _as_codes(x)
    e = _check_shift(exponent, 31)
    mask = (1 << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > threshold)


def multiply_by_quantized_multiplier(x, multiplier: int, exponent: int, scheme: str = "double"
                                     ) -> tuple[np.ndarray, int]:
    """``x * multiplier * 2**(exponent - 31)`` rounded as a runtime does it.

    ``scheme="double"`` (gemmlowp / TFLite reference without TFLITE_SINGLE_ROUNDING):
    ``RDBPOT(SRDHM(x * 2**max(exponent, 0), multiplier), max(-exponent, 0))``;
    the left shift is an int32 multiply, modelled as two's-complement wrap
    and counted as an overflow.  ``exponent`` in [-31, 31].

    ``scheme="single"`` (TFLITE_SINGLE_ROUNDING, CMSIS-NN single rounding):
    ``(x * multiplier + 2**(30 - exponent)) >> (31 - exponent)`` in int64,
    ties toward +inf; ``exponent`` in [-31, 30].  Results outside int32 break
    TFLite's contract and are counted.

    ``x`` must fit int32.  Returns ``(values, n_overflow)``.
    """
    x = _as_codes(x, "accumulator")
    _check_int32(x)
    if scheme == "double":
        _check_multiplier(multiplier, exponent, -31, 31)
        left, right = max(int(exponent), 0), max(-int(exponent), 0)
        shifted = x << left
        wrapped = ((shifted + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        n = int(np.count_nonzero(wrapped != shifted))
        high = saturating_rounding_doubling_high_mul(wrapped, np.int64(multiplier))
        return rounding_divide_by_pot(high, right), n
    if scheme == "single":
        _check_multiplier(multiplier, exponent, -31, 30)
        total = 31 - int(exponent)
        out = (x * np.int64(multiplier) + (1 << (total - 1))) >> total
        n = int(np.count_nonzero((out < INT32_MIN) | (out > INT32_MAX)))
        return out, n
    raise FormatError(f"unknown multiplier scheme {scheme!r}; use 'double' or 'single'")


def requantize_multiplier(acc, multiplier: int, exponent: int, out: QFormat, *,
                          zero_point: int = 0, scheme: str = "double", overflow="saturate"
                          ) -> tuple[np.ndarray, int]:
    """Integer requantization (MCU runtimes): ``sat(MBQM(acc) + zero_point)`` into ``out``.

    Returns ``(codes, n_overflow)`` counting both the multiplier stage and the
    final overflow.
    """
    y, n1 = multiply_by_quantized_multiplier(acc, multiplier, exponent, scheme)
    codes, n2 = apply_overflow(y + int(zero_point), out, overflow)
    return codes, n1 + n2


def requantize_float32(acc, scale, out: QFormat, *, zero_point: int = 0
                       ) -> tuple[np.ndarray, int]:
    """onnxruntime MLAS / XNNPACK fp32 requantization, saturating into ``out``.

    ``y = rint_half_even(float32(acc) * float32(scale)) + zero_point``, every step
    in float32 (``float32(acc)`` is itself rounded half-to-even above 2**24),
    then clamped to ``out``'s range.  Returns ``(codes, n_saturated)``.
    """
    a = _as_codes(acc, "accumulator")
    with np.errstate(over="ignore"):
        s32 = np.float32(scale)
    if not np.isfinite(s32) or s32 <= 0:
        raise FormatError(f"scale must be finite and > 0 in float32, got {scale!r}")
    prod = a.astype(np.float32) * s32  # float32 * float32 -> float32, round to nearest even
    r = np.rint(prod)
    lo = float(out.min_code - int(zero_point))
    hi = float(out.max_code - int(zero_point))
    over = (r < lo) | (r > hi)
    y = np.clip(r, lo, hi).astype(np.int64) + int(zero_point)
    return y, int(np.count_nonzero(over))


# --------------------------------------------------------------------------- accumulation
def accumulate(products, acc: QFormat, overflow="wrap") -> tuple[np.ndarray, int]:
    """Sum ``products`` along the last axis in a ``acc.bits``-bit accumulator.

    The order is fixed: index 0, 1, ..., K-1 of the last axis, starting from 0;
    after *each* addition the partial sum is brought into ``acc`` with
    ``overflow`` (order does not matter for wrap, it does for saturation).
    Returns ``(sums, n_events)``: the number of additions whose partial sum
    left the accumulator range.

    >>> accumulate([[3, 3, -3], [-3, 3, 3]], QFormat.integer(3), "saturate")
    (array([0, 3]), 1)
    """
    overflow = OverflowMode.from_string(overflow)
    p = _as_codes(products, "products")
    if p.ndim == 0:
        raise FormatError("products must have at least one axis (the reduction axis)")
    lo, hi = _range_for(acc, overflow)
    total = np.zeros(p.shape[:-1], np.int64)
    events = 0
    for i in range(p.shape[-1]):
        term = p[..., i]
        s = (total.view(U64) + term.view(U64)).view(np.int64)  # wraps mod 2**64
        big = ((total >= 0) == (term >= 0)) & ((s >= 0) != (total >= 0))  # int64 overflow
        over = big | (s > hi) | (s < lo)
        events += int(np.count_nonzero(over))
        if overflow is OverflowMode.WRAP:
            total = _wrap_bits(s.view(U64), acc)
        elif overflow is OverflowMode.SATURATE_ZERO:
            total = np.where(over, 0, s)
        else:
            clipped = np.clip(s, lo, hi)
            total = np.where(big, np.where(term > 0, hi, lo), clipped).astype(np.int64)
    return total, events
