"""TFLite Micro's integer LOGISTIC, TANH and HARD_SWISH on codes: the numpy *specification*.

The Numba kernels in :mod:`fxp.kernels.tflite_act` must equal this module bit
for bit; both are pinned to the Python-int oracle ``tests/oracles_tflite_act.py``.
Sources: github.com/tensorflow/tflite-micro at ``90b983c`` (2026-08-20; the
installed ``tflite-micro`` 0.dev20261023182759 is git ``8f6596d``, a later
nightly with the same kernels, checked against its interpreter in
``tests/frontends/test_tflite_activations.py``) and gemmlowp
``fixedpoint/fixedpoint.h`` at ``16e8662``.

int8 LOGISTIC / TANH (Prepare: ``micro/kernels/logistic_common.cc``,
``tanh.cc``; Eval: ``kernels/internal/reference/integer_ops/logistic.h``,
``tanh.h``), :func:`input_params_int8` and :func:`logistic_tanh_int8`:

1. ``real = double(float32 s_in) * 2**27``; ``(q, left_shift) = frexp(real)``;
   ``M = TfLiteRound(q * 2**31)`` (exact: ``real`` has 24 significant bits);
   ``radius = floor(15 * 2**27 / 2**left_shift)`` (``CalculateInputRadius(4, .., 31)``);
2. ``d = x - zp_in``; ``d <= -radius`` gives -128, ``d >= radius`` gives 127;
3. else ``a = MultiplyByQuantizedMultiplier(d, M, left_shift)``, a Q4.27 value
   (``|d| < radius`` keeps the left shift inside int32);
4. gemmlowp ``logistic(a)`` / ``tanh(a)``, a Q0.31 value (:func:`gemmlowp_logistic`,
   :func:`gemmlowp_tanh`);
5. LOGISTIC: ``RoundingDivideByPOT(r, 23) - 128``; TANH: ``RoundingDivideByPOT(r, 24)``;
   clamped to int8.  The output coding is fixed: 1/256 and -128 (LOGISTIC),
   1/128 and 0 (TANH).

int16 LOGISTIC / TANH (zero points 0, output scale 2**-15), :func:`input_params_int16`
and :func:`lut_int16`: the input is brought to the scale 1/(3 * 4096)
(``x * M + round >> left_shift``, ``M < 2**15`` truncated from a double, or
``3 << left_shift`` when the input scale is a power of two TFLM recognises with
``CheckedLog2``), then the 256-entry ``sigmoid_table_uint16`` is interpolated
(9 fraction bits for LOGISTIC, 8 for TANH = ``2 * sigmoid(2x) - 1``) in uint32
and rounded back to 16 bits.

int8 HARD_SWISH (``micro/kernels/hard_swish_common.cc``,
``kernels/internal/reference/hard_swish.h``), :func:`hard_swish_params` and
:func:`hard_swish_int8`: two multipliers from float32 ratios
(``hires = s_in / 128``, ``hires / s_out`` and ``hires / (3 / 32768)``),
``QuantizeMultiplier`` then ``DownScaleInt32ToInt16Multiplier``; per element
int16 fixed point: ``SaturatingRoundingDoublingHighMul`` (rounding) for the
rescales, the saturating left shifts of the "relu-ish" value, and a
truncating ``SaturatingDoublingHighMul`` for the final product; the output
``+ zp_out`` wraps to int16 (C++ ``int16_t +=``) before the int8 clamp.
TFLM has no int16 HARD_SWISH.

Every value is held in int64; int32 (int16) operations wrap or saturate as
the C++ does.
"""

from __future__ import annotations

import math

import numpy as np

from fxp.core import intmath
from fxp.errors import FormatError
from fxp.kernels.spec_tflite_softmax import exp_on_negative, one_over_one_plus_x, rdbpot, srdhm

__all__ = [
    "INPUT_INT_BITS",
    "SIGMOID_TABLE_UINT16",
    "checked_log2",
    "gemmlowp_logistic",
    "gemmlowp_tanh",
    "hard_swish_int8",
    "hard_swish_params",
    "input_params_int8",
    "input_params_int16",
    "logistic_tanh_int8",
    "lut_int16",
    "one_minus_x_over_one_plus_x",
]

INPUT_INT_BITS = 4
"""int8 LOGISTIC / TANH: the rescaled input is ``FixedPoint<int32, 4>`` (Q4.27)."""
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

# tensorflow/lite/kernels/internal/common.h: sigmoid_table_uint16 (sigmoid(i / 24) * 65536,
# as TFLM ships it; not reproducible by one rounding rule, so copied verbatim).
SIGMOID_TABLE_UINT16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498,
    40149, 40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255,
    46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865,
    52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174,
    56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544, 58800, 59048, 59288,
    59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279, 61441,
    61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886,
    62990, 63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835,
    63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450,
    64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845,
    64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097,
    65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
    65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425,
    65429, 65433, 65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465,
    65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508,
    65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516, 65517, 65517, 65518,
    65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524, 65525,
    65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529,
    65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531,
    65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533,
    65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
    65534, 65534, 65535], np.int64)


def _wrap32(v):
    return ((np.asarray(v, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _sat_shl(x, e: int):
    """gemmlowp SaturatingRoundingMultiplyByPOT<e>, e > 0, on int32 values."""
    threshold = (1 << (31 - e)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << e))


# --------------------------------------------------------------------------- int8 (gemmlowp)
def input_params_int8(input_scale, *, single: bool = False) -> tuple[int, int, int]:
    """``(input_multiplier, input_left_shift, input_range_radius)`` of TFLM's int8 Prepare
    (LOGISTIC and TANH compute them alike).

    >>> input_params_int8(1 / 16)  # 2**23: q = 0.5, left shift 24, radius 15 * 2**3
    (1073741824, 24, 120)
    """
    real = float(np.float32(input_scale)) * float(1 << (31 - INPUT_INT_BITS))
    if not (np.isfinite(real) and real > 0):
        raise FormatError(f"TFLite LOGISTIC/TANH: input scale {input_scale!r} must be finite "
                          "and > 0")
    q, shift = math.frexp(real)
    if not 0 <= shift <= (30 if single else 31):
        raise FormatError(f"TFLite LOGISTIC/TANH: input scale {float(np.float32(input_scale))!r}"
                          f" gives the left shift {shift}, outside [0, {30 if single else 31}] "
                          "(scales in [2**-28, 16) are supported)")
    multiplier = math.floor(q * (1 << 31) + 0.5)  # TfLiteRound; exact (24 significant bits)
    radius = ((1 << INPUT_INT_BITS) - 1) * (1 << (31 - INPUT_INT_BITS)) >> shift
    return multiplier, shift, radius


def one_minus_x_over_one_plus_x(a):
    """gemmlowp ``one_minus_x_over_one_plus_x_for_x_in_0_1``: Q0.31 in and out."""
    a = np.asarray(a, np.int64)
    s = a + INT32_MAX
    half = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))  # RoundingHalfSum, C division
    x = _wrap32(1515870810 + srdhm(half, -1010580540))  # F2: 48/17 - 32/17 * half
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - srdhm(half, x))
        x = _wrap32(x + _sat_shl(srdhm(x, one_minus), 2))
    return _sat_shl(_wrap32(x - (1 << 29)), 2)  # Rescale<0>(x - F2::One())


def gemmlowp_logistic(a, int_bits: int = INPUT_INT_BITS):
    """gemmlowp ``logistic`` of ``FixedPoint<int32, int_bits>`` raw values; Q0.31 result."""
    a = np.asarray(a, np.int64)
    pos = a > 0
    r_pos = one_over_one_plus_x(exp_on_negative(-np.where(pos, a, -a), int_bits))
    r_neg = _wrap32(INT32_MAX - r_pos)  # ResultF::One() - result_if_positive
    return np.where(a == 0, 1 << 30, np.where(pos, r_pos, r_neg))


def gemmlowp_tanh(a, int_bits: int = INPUT_INT_BITS):
    """gemmlowp ``tanh`` of ``FixedPoint<int32, int_bits>`` raw values; Q0.31 result.

    ``neg_tanh_on_negative_values(n)`` reads ``n`` as ``ExactMulByPot<1>``:
    the same raw value with one more integer bit, so ``exp(2 n)``.
    """
    a = np.asarray(a, np.int64)
    neg = a < 0
    t = one_minus_x_over_one_plus_x(exp_on_negative(np.where(neg, a, -a), int_bits + 1))
    return np.where(a == 0, 0, np.where(neg, _wrap32(-t), t))


def logistic_tanh_int8(x, zero_point: int, radius: int, multiplier: int, left_shift: int,
                       scheme: str, tanh: bool) -> tuple[np.ndarray, int]:
    """TFLM's int8 LOGISTIC (``tanh=False``) or TANH on int8 codes ``x`` (any shape).

    Returns ``(codes, n_clamped)``: the elements the final int8 clamp changed
    (a LOGISTIC result of exactly 1.0, code 128, becomes 127).
    """
    x = np.asarray(x, np.int64)
    d = x - zero_point
    lo, hi = d <= -radius, d >= radius
    a, _ = intmath.multiply_by_quantized_multiplier(np.where(lo | hi, 0, d), multiplier,
                                                    left_shift, scheme)
    if tanh:
        y = rdbpot(gemmlowp_tanh(a), 31 - 7)
    else:
        y = rdbpot(gemmlowp_logistic(a), 31 - 8) - 128
    c = np.clip(y, -128, 127)
    n = int(np.count_nonzero((c != y) & ~(lo | hi)))
    return np.where(lo, -128, np.where(hi, 127, c)), n


# --------------------------------------------------------------------------- int16 (LUT)
def checked_log2(x) -> tuple[bool, int]:
    """TFLite ``CheckedLog2`` in float32: ``(|log2 x - round| < 1e-3, round(log2 x))``.

    ``std::log(float)`` is taken as the correctly rounded float32 logarithm.
    """
    f32 = np.float32
    inv_ln2 = f32(f32(1.0) / f32(np.log(np.float64(2.0))))
    x_log2 = f32(f32(np.log(np.float64(f32(x)))) * inv_ln2)
    rounded = f32(np.sign(x_log2) * np.floor(np.abs(np.float64(x_log2)) + 0.5))  # TfLiteRound
    return bool(abs(f32(x_log2 - rounded)) < f32(1e-3)), int(rounded)


def input_params_int16(input_scale, tanh: bool) -> tuple[int, int]:
    """``(input_multiplier, input_left_shift)`` of TFLM's int16 LOGISTIC / TANH Prepare.

    A power-of-two input scale with ``left_shift = 12 + log2(s)`` equal to 0
    (LOGISTIC) or 0 / 1 (TANH) gives multiplier 0 (Eval then uses ``3 << left_shift``).
    Otherwise ``M = s * 4096 * 3`` doubled with ``left_shift`` until above
    16383.5 (at most 31 times), truncated to an integer.
    """
    pot, log2 = checked_log2(input_scale)
    left_shift = (15 - 3) + log2
    if pot and left_shift in ((0, 1) if tanh else (0,)):
        return 0, left_shift
    mult = float(np.float32(input_scale)) * 4096.0 * 3.0
    left_shift = 0
    while mult <= 32767.0 / 2.0 and left_shift <= 30:
        left_shift += 1
        mult *= 2.0
    if not 0 < mult <= 32767.0:
        raise FormatError(f"TFLite int16 LOGISTIC/TANH: input scale {input_scale!r} gives the "
                          f"multiplier {mult!r}, outside (0, 32767] (scales below ~2.67 are "
                          "supported)")
    return int(mult), left_shift


def lut_int16(x, multiplier: int, left_shift: int, tanh: bool) -> np.ndarray:
    """TFLM's int16 LOGISTIC / TANH on int16 codes ``x`` (zero point 0): int16 codes of
    scale 2**-15, zero point 0 (always inside int16, nothing is clamped)."""
    x = np.asarray(x, np.int64)
    if multiplier == 0:  # power-of-two input scale
        multiplier, left_shift = 3 << left_shift, 0
    rnd = (1 << (left_shift - 1)) if left_shift > 0 else 0
    v = (x * multiplier + rnd) >> left_shift  # int32: |x * M| < 2**30
    a = np.abs(v)
    frac_bits = 8 if tanh else 9
    uh = a >> frac_bits
    idx = np.minimum(uh, 254)
    ua, ub = SIGMOID_TABLE_UINT16[idx], SIGMOID_TABLE_UINT16[idx + 1]
    ut = a & ((1 << frac_bits) - 1)
    if tanh:
        r = np.where(uh >= 255, 0xFFFF << 8, (ua << 8) + ut * (ub - ua))
        r = np.where(v >= 0, r - (1 << 23) + (1 << 7), -r + (1 << 23) + (1 << 7) - 1)
        return r >> 8
    r = np.where(uh >= 255, 0x7FFF << 10, (ua << 9) + ut * (ub - ua))
    r = np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1)
    return r >> 10


# --------------------------------------------------------------------------- HARD_SWISH
def _downscale16(m: int) -> int:
    """``DownScaleInt32ToInt16Multiplier``."""
    if m >= INT32_MAX - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16


def hard_swish_params(input_scale, output_scale, *, single: bool = False
                      ) -> tuple[int, int, int, int]:
    """``(reluish_m16, reluish_exponent, output_m16, output_exponent)`` of TFLM's Prepare.

    Ratios in float32 (``hires = s_in / 128``; ``hires / s_out``,
    ``hires / (3 / 32768)``), widened to double for ``QuantizeMultiplier``.
    """
    f32 = np.float32
    hires = f32(f32(1.0 / 128.0) * f32(input_scale))
    out_real = float(f32(hires / f32(output_scale)))
    reluish_real = float(f32(hires / f32(f32(3.0) / f32(32768.0))))
    for name, real in (("s_in / (128 s_out)", out_real), ("s_in / 128 / (3/32768)",
                                                           reluish_real)):
        if not (np.isfinite(real) and real > 0):
            raise FormatError(f"TFLite HARD_SWISH: the ratio {name} = {real!r} must be finite "
                              "and > 0 in float32")
    om, oe = intmath.quantize_multiplier(out_real, single_rounding=single)
    rm, re = intmath.quantize_multiplier(reluish_real, single_rounding=single)
    if oe > 0 or oe < -15:
        raise FormatError(f"TFLite HARD_SWISH: output multiplier exponent {oe} (ratio "
                          f"{out_real!r}); TFLM needs <= 0 and the int16 kernel >= -15")
    if not -15 <= re <= 31:
        raise FormatError(f"TFLite HARD_SWISH: relu-ish multiplier exponent {re} (ratio "
                          f"{reluish_real!r}) outside [-15, 31]")
    return _downscale16(rm), re, _downscale16(om), oe


def _srdhm16(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul<int16_t> (C division truncates)."""
    ab = a * b
    t = ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    q = np.where(t >= 0, t >> 15, -((-t) >> 15))
    return np.where((a == -32768) & (b == -32768), 32767, q)


def _sdhm16(a, b):
    """``SaturatingDoublingHighMul`` (hard_swish.h): ``a*b / 2**15`` truncated toward zero."""
    ab = a * b
    q = np.where(ab >= 0, ab >> 15, -((-ab) >> 15))
    return np.where((a == -32768) & (b == -32768), 32767, q)


def _sat_shl16(v, amount: int):
    return np.clip(v * (1 << amount), -32768, 32767)


def hard_swish_int8(x, input_zero_point: int, output_zero_point: int,
                    params: tuple[int, int, int, int]) -> tuple[np.ndarray, int]:
    """TFLM's int8 HARD_SWISH on codes ``x``: ``(codes, n_events)`` (int16 wraps of
    ``+ zp_out`` plus elements the int8 clamp changed)."""
    rm, re, om, oe = params
    hires = (np.asarray(x, np.int64) - input_zero_point) * 128  # |.| <= 32640: int16
    pre = _srdhm16(hires, om)
    r = hires
    if re > 0:
        r = _sat_shl16(r, re - 1)
    r = _srdhm16(r, rm)
    if re > 0:
        r = _sat_shl16(r, 1)
    if re < 0:
        r = rdbpot(r, -re)
    r = (r + (1 << 15)) >> 1  # [-1, 1] -> [0, 1]
    y = rdbpot(_sdhm16(r, pre), -oe) + output_zero_point
    w = ((y + (1 << 15)) & 0xFFFF) - (1 << 15)  # int16_t output_value += zero point
    c = np.clip(w, -128, 127)
    return c, int(np.count_nonzero(w != y)) + int(np.count_nonzero(c != w))
