"""TFLite Micro's integer SOFTMAX (int8 and int16) on codes: the numpy *specification*.

The Numba kernel in :mod:`fxp.kernels.tflite_softmax` must equal this module
bit for bit; both are pinned to the Python-int oracle in
``tests/oracles_tflite_softmax.py``.  Sources (github.com/tensorflow/tflite-micro):

Prepare (``micro/kernels/softmax_common.cc`` ``CalculateSoftmaxParams``,
``kernels/internal/quantization_util.cc``), :func:`softmax_params`:

* ``real = min(double(beta) * double(s_in) * 2**(31 - 5), 2**31 - 1)``
  (``PreprocessSoftmaxScaling``, ``kScaledDiffIntegerBits = 5``; float32 beta
  and scale);
* ``(M, left_shift) = QuantizeMultiplierGreaterThanOne(real)`` (``left_shift >= 0``);
* ``diff_min = -floor((2**5 - 1) * 2**26 / 2**left_shift)`` (``CalculateInputRadius``).

Eval (``kernels/internal/reference/softmax.h``, int8 template), per row:

* ``d = x - max(row)``; an element with ``d < diff_min`` outputs -128;
* ``z = SRDHM(d * 2**left_shift, M)``: a Q5.26 value (``FixedPoint<int32, 5>``);
* ``e = exp_on_negative_values(z)``: Q0.31 (gemmlowp ``fixedpoint.h``, :func:`exp_on_negative`);
* ``sum = sum(RoundingDivideByPOT(e, 12))`` (Q12.19 accumulator, int32);
* ``GetReciprocal``: ``h = clz(sum)``, ``nbou = 12 - h``,
  ``r = one_over_one_plus_x_for_x_in_0_1((sum << h) - 2**31)``;
* ``out = RoundingDivideByPOT(SRDHM(r, e), nbou + 31 - 8) - 128``, clamped to
  ``[-128, 127]``.

Every value is an int32 held in int64; additions of two FixedPoint values
wrap as C int32 does (none can for int8 input and at most ``MAX_DEPTH`` classes).

int16 (``softmax_common.cc`` with ``gen_lut<float, int16_t, int16_t>``,
``reference/softmax.h`` ``SoftmaxInt16``; zero points 0, output scale
1/32768): ``(M, shift) = QuantizeMultiplier(s_in * beta / (10 / 65535))``;
``e = LUT_exp(clamp16(MBQM(x - max, M, shift) + 32767))``;
``h = clz(sum e)``, ``r = LUT_recip(clamp16((((sum << (h-1)) + 2**13) >> 14)
- 2**15 - 2**16))``; ``out = clamp((e * r + 2**(30-h)) >> (31-h), 0, 32767)``.
The LUTs (:func:`gen_lut_int16`) are 513 entries built in float32 and
interpolated by :func:`lut_lookup` (``generic_int16_table_lookup``).
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.errors import FormatError

__all__ = [
    "ACCUM_INT_BITS",
    "SCALED_DIFF_INT_BITS",
    "exp_on_negative",
    "gen_lut_int16",
    "lut_lookup",
    "one_over_one_plus_x",
    "softmax_int8",
    "softmax_int16",
    "softmax_params",
    "softmax_params_int16",
]

SCALED_DIFF_INT_BITS = 5
ACCUM_INT_BITS = 12
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_DEPTH = 511
"""Most classes: the sum of exps stays below 2**28, so the final shift is at most 31 (C-defined)."""
MAX_DEPTH_INT16 = 1 << 16
"""Most int16 classes: the sum of Q0.15 exps stays below 2**31."""
# gemmlowp exp_on_negative_values barrel shifter: exp(-2**k) in Q0.31, k = -2 .. 4
EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
              (2, 39332535), (3, 720401), (4, 242))


def softmax_params(beta, input_scale) -> tuple[int, int, int]:
    """``(input_multiplier, input_left_shift, diff_min)`` of TFLM's int8 Prepare.

    >>> softmax_params(1.0, 1 / 16)  # 2**22: M = 2**30, left shift 23
    (1073741824, 23, -248)
    """
    real = min(float(np.float32(beta)) * float(np.float32(input_scale))
               * float(1 << (31 - SCALED_DIFF_INT_BITS)), float((1 << 31) - 1))
    if not real > 0.0:
        raise FormatError(f"TFLite SOFTMAX: beta {beta!r} * input scale {input_scale!r} "
                          "must be > 0")
    m, shift = intmath.quantize_multiplier(real)
    if shift < 0:
        raise FormatError(f"TFLite SOFTMAX: beta {beta!r} * input scale {input_scale!r} * 2**26 "
                          f"is below 1 (left shift {shift}); QuantizeMultiplierGreaterThanOne "
                          "refuses it")
    radius = ((1 << SCALED_DIFF_INT_BITS) - 1) * (1 << (31 - SCALED_DIFF_INT_BITS)) >> shift
    return m, shift, -radius


# --------------------------------------------------------------------------- gemmlowp, vectorized
def _wrap32(v):
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 arrays (int64)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    t = np.where(ab >= 0, ab + (1 << 30), ab + 1 - (1 << 30))
    q = np.where(t >= 0, t >> 31, -((-t) >> 31))
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def rdbpot(x, e):
    """gemmlowp RoundingDivideByPOT: ``x / 2**e`` rounded half away from zero (e may be an array)."""
    x, e = np.asarray(x, np.int64), np.asarray(e, np.int64)
    mask = (np.int64(1) << e) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + ((x & mask) > threshold)


def sat_shl(x, e: int):
    """gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent."""
    threshold = (1 << (31 - e)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << e))


def _exp_quarter(a):
    """exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31 in and out."""
    const_term, third = 1895147668, 715827883
    x = _wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_4 = rdbpot(x4, 2)
    poly = rdbpot(_wrap32(srdhm(_wrap32(x4_4 + x3), third) + x2), 1)
    return _wrap32(const_term + srdhm(const_term, _wrap32(x + poly)))


def exp_on_negative(a, int_bits: int = SCALED_DIFF_INT_BITS):
    """gemmlowp ``exp_on_negative_values`` of Q(int_bits) raw values ``a <= 0``; Q0.31 result."""
    a = np.asarray(a, np.int64)
    frac = 31 - int_bits
    quarter = 1 << (frac - 2)
    mod = (a & (quarter - 1)) - quarter
    result = _exp_quarter(sat_shl(mod, int_bits))
    remainder = _wrap32(mod - a)
    for k, mult in EXP_BARREL:
        if int_bits > k:
            hit = (remainder & (1 << (frac + k))) != 0
            result = np.where(hit, srdhm(result, mult), result)
    if int_bits > 5:
        result = np.where(a < -(1 << (36 - int_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x(a):
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``: Q0.31 in, Q0.31 out."""
    a = np.asarray(a, np.int64)
    s = a + INT32_MAX
    half = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))  # (s + sign) / 2, C division
    x = _wrap32(1515870810 + srdhm(half, -1010580540))
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - srdhm(half, x))
        x = _wrap32(x + sat_shl(srdhm(x, one_minus), 2))
    return sat_shl(x, 1)


def _clz32(v):
    """Leading zeros of positive int32 values (``frexp`` is exact below 2**53)."""
    return 32 - np.frexp(np.asarray(v, np.float64))[1].astype(np.int64)


def softmax_int8(x, multiplier: int, left_shift: int, diff_min: int) -> tuple[np.ndarray, int]:
    """TFLM's int8 softmax over the last axis of int8 codes ``x`` ``[N, n]``.

    Returns ``(codes, n_clamped)``: int8 codes and the elements the final clamp changed.
    """
    x = np.asarray(x, np.int64)
    if x.ndim != 2 or not 1 <= x.shape[1] <= MAX_DEPTH:
        raise FormatError(f"TFLite SOFTMAX: expected codes [N, n] with 1 <= n <= {MAX_DEPTH}, "
                          f"got shape {x.shape}")
    d = x - x.max(axis=1, keepdims=True)
    live = d >= diff_min
    z = srdhm(np.where(live, d, 0) << left_shift, multiplier)
    e = exp_on_negative(z)
    total = _wrap32(np.where(live, rdbpot(e, ACCUM_INT_BITS), 0).sum(axis=1, keepdims=True))
    h = _clz32(total)
    nbou = ACCUM_INT_BITS - h
    r = one_over_one_plus_x(_wrap32((total << h) - (1 << 31)))
    out = rdbpot(srdhm(r, e), nbou + 31 - 8) - 128
    clamped = int(np.count_nonzero(live & ((out > 127) | (out < -128))))
    return np.where(live, np.clip(out, -128, 127), -128), clamped


# --------------------------------------------------------------------------- int16 (LUTs)
LUT_SIZE = 513


def gen_lut_int16(kind: str) -> np.ndarray:
    """TFLM's ``gen_lut<float, int16_t, int16_t>`` of ``exp`` on [-10, 0] (``kind="exp"``) or
    ``1 / (1 + x)`` on [0, 1] (``"recip"``), output range [-1, 1]; 513 int16 entries.

    All arithmetic in float32 as the C++ (``FloatT = float``), ``TfLiteRound`` = half away
    from zero; ``expf`` is taken as the correctly rounded float32 exp (float64 exp rounded).
    """
    f32 = np.float32
    if kind == "exp":
        lo, hi = f32(-10.0), f32(0.0)

        def func(v):
            return f32(np.exp(np.float64(v)))
    elif kind == "recip":
        lo, hi = f32(0.0), f32(1.0)

        def func(v):
            return f32(f32(1.0) / f32(f32(1.0) + f32(v)))
    else:
        raise FormatError(f"TFLite LUT kind must be 'exp' or 'recip', got {kind!r:.40}")

    def rnd(v):
        return f32(np.sign(v) * np.floor(np.abs(np.float64(v)) + 0.5))

    steps = LUT_SIZE - 1
    step = f32((hi - lo) / f32(steps))
    half = f32(step / f32(2))
    inv = f32(f32(65536.0) / f32(2.0))
    lut = np.empty(LUT_SIZE, np.int64)
    for i in range(steps):
        x = f32(lo + f32(f32(i) * step))
        val, mid = func(x), func(f32(x + half))
        nxt = func(f32(lo + f32(f32(i + 1) * step)))
        sample = rnd(f32(val * inv))
        interp = rnd(f32(f32(f32(nxt * inv) + rnd(f32(val * inv))) / f32(2)))
        bias = rnd(f32(f32(interp - rnd(f32(mid * inv))) / f32(2)))
        lut[i] = int(min(max(f32(sample - bias), -32768.0), 32767.0))
    lut[steps] = int(min(max(rnd(f32(func(hi) * inv)), -32768.0), 32767.0))
    return lut


def lut_lookup(value, lut: np.ndarray):
    """``generic_int16_table_lookup``: linear interpolation between 512 base entries."""
    value = np.asarray(value, np.int64)
    index = 256 + (value >> 7)
    offset = value & 0x7F
    base = lut[index]
    slope = lut[index + 1] - base
    return base + ((slope * offset + 64) >> 7)


def softmax_params_int16(beta, input_scale) -> tuple[int, int]:
    """``(input_multiplier, input_shift)``: ``QuantizeMultiplier(double(s_in) * double(beta)
    / (10 / 65535))`` (the difference range [-65535, 0] mapped onto [-10, 0])."""
    real = float(np.float32(input_scale)) * float(np.float32(beta)) / (10.0 / 65535.0)
    return intmath.quantize_multiplier(real)


def softmax_int16(x, multiplier: int, shift: int, exp_lut: np.ndarray, recip_lut: np.ndarray
                  ) -> tuple[np.ndarray, int]:
    """TFLM's ``SoftmaxInt16`` over the last axis of int16 codes ``x [N, n]`` (zero point 0);
    int16 codes of scale 1/32768, zero point 0, and the number of clamped outputs."""
    x = np.asarray(x, np.int64)
    if x.ndim != 2 or not 1 <= x.shape[1] <= MAX_DEPTH_INT16:
        raise FormatError(f"TFLite SOFTMAX int16: expected codes [N, n] with 1 <= n <= "
                          f"{MAX_DEPTH_INT16}, got shape {x.shape}")
    d = x - x.max(axis=1, keepdims=True)
    left, right = max(shift, 0), max(-shift, 0)
    scaled = rdbpot(srdhm(_wrap32(d << left), multiplier), right)
    e = lut_lookup(np.clip(scaled + 32767, -32768, 32767), exp_lut)
    total = e.sum(axis=1, keepdims=True)  # below 2**31: n <= MAX_DEPTH_INT16
    h = _clz32(total)
    shifted = ((total << (h - 1)) + (1 << 13)) >> 14
    r = lut_lookup(np.clip(shifted - ((1 << 15) + (1 << 16)), -32768, 32767), recip_lut)
    rs = 31 - h
    out = (e * r + (np.int64(1) << (rs - 1))) >> rs
    clamped = int(np.count_nonzero((out < 0) | (out > 32767)))
    return np.clip(out, 0, 32767), clamped
