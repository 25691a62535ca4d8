"""Numba twins of :mod:`fxp.kernels.spec_qlinear` (onnxruntime QLinear element-wise ops).

The arithmetic, its order and its rounding are those of the specification
(read its module docstring for the onnxruntime sources); every float value
here is a numba ``float32`` and every float32 operation rounds to nearest
even, as x86 SSE/AVX does.  Numba's ``fastmath`` is off, so LLVM neither
contracts ``a*b + c`` into an FMA nor reassociates; the FMAs onnxruntime
executes are emulated explicitly by :func:`fma_f32`.

1. ``fma_f32``: exact product in float64, TwoSum error, round to odd, one
   rounding to float32 (same as ``vfmadd*ps``);
2. ``cvtps_epi32``: half-to-even conversion, ``INT32_MIN`` outside int32;
3. ``quantize_linear``: MLAS QuantizeLinear of one float32;
4. ``build_table``: the 256-entry lookup tables of QLinearSigmoid,
   QLinearLeakyRelu and QLinearConcat;
5. ``lookup_codes`` / ``qlinear_add_codes`` / ``qlinear_mul_codes`` /
   ``qdq_binary_codes``: the element loops, returning
   ``(codes, n_saturated)``.
"""

from __future__ import annotations

import math

import numpy as np

from fxp.kernels._jit import jit, kernel, prange
from fxp.kernels.spec_qlinear import LOGISTIC_CONSTANTS

TABLE_REQUANT, TABLE_SIGMOID, TABLE_LEAKY_RELU = 0, 1, 2

_K = np.array([LOGISTIC_CONSTANTS[k] for k in (
    "lower", "upper", "alpha_9", "alpha_7", "alpha_5", "alpha_3", "alpha_1",
    "beta_10", "beta_8", "beta_6", "beta_4", "beta_2", "beta_0")], np.float32)
_TWO53 = 9007199254740992.0


@jit
def fma_f32(a, b, c):
    """``float32(a*b + c)`` with one rounding (float32 operands)."""
    p = np.float64(a) * np.float64(b)
    c64 = np.float64(c)
    s = p + c64
    bb = s - p
    e = (p - (s - bb)) + (c64 - bb)
    if e != 0.0 and np.isfinite(s):
        m, _ = math.frexp(s)
        if (np.int64(m * _TWO53) & 1) == 0:  # even significand: step toward the exact value
            s = np.nextafter(s, np.inf if e > 0.0 else -np.inf)
    return np.float32(s)


@jit
def cvtps_epi32(v):
    """float32 -> int32 half to even; NaN / out of range -> INT32_MIN (int64 result)."""
    r = np.rint(np.float64(v))
    if r >= -2147483648.0 and r < 2147483648.0:
        return np.int64(r)
    return np.int64(-2147483648)


@jit
def quantize_linear(v, scale, zero_point, lo, hi):
    """(code, saturated) of MLAS QuantizeLinear for the float32 ``v``."""
    r = np.rint(np.float64(v / scale))
    if r >= lo - zero_point and r <= hi - zero_point:
        return np.int64(r) + zero_point, False
    if r > hi - zero_point:
        return np.int64(hi), True
    return np.int64(lo), True  # below the range, or NaN (maxps keeps the bound)


@jit
def logistic(v):
    """``MlasComputeLogisticF32KernelFma3`` for one float32 (spec :func:`logistic`)."""
    x = v
    if not np.isnan(v):
        x = min(_K[1], max(_K[0], v))
    x2 = x * x
    p = fma_f32(x2, _K[2], _K[3])
    p = fma_f32(x2, p, _K[4])
    p = fma_f32(x2, p, _K[5])
    p = fma_f32(x2, p, _K[6])
    p = x * p
    q = fma_f32(x2, _K[7], _K[8])
    q = fma_f32(x2, q, _K[9])
    q = fma_f32(x2, q, _K[10])
    q = fma_f32(x2, q, _K[11])
    q = fma_f32(x2, q, _K[12])
    r = (p / q) + np.float32(0.5)
    if np.isnan(r):
        return r
    return max(np.float32(0.0), r)


@jit
def build_table(kind, alpha, x_scale, x_zero_point, y_scale, y_zero_point, signed, lo, hi):
    """``(codes int64[256], saturated bool[256])`` indexed by the input byte."""
    codes = np.empty(256, np.int64)
    sat = np.empty(256, np.bool_)
    for i in range(256):
        code = i - 256 if signed and i >= 128 else i
        v = x_scale * np.float32(code - x_zero_point)
        if kind == TABLE_SIGMOID:
            v = logistic(v)
        elif kind == TABLE_LEAKY_RELU and not v >= np.float32(0.0):
            v = alpha * v
        codes[i], sat[i] = quantize_linear(v, y_scale, y_zero_point, lo, hi)
    return codes, sat


@kernel
def lookup_codes(x, table, saturated):
    """Flat x -> ``table[x & 255]``; counts elements whose entry saturated."""
    n = x.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        byte = x[i] & 255
        out[i] = table[byte]
        if saturated[byte]:
            count += 1
    return out, count


@jit
def add_fixed(a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point):
    """``(rA, rB, fixed)``: ``rA = sA/sC``, ``rB = sB/sC``, ``zC - fma(rA, zA, rB*zB)``."""
    ra = a_scale / y_scale
    rb = b_scale / y_scale
    fixed = np.float32(y_zero_point) - fma_f32(ra, np.float32(a_zero_point),
                                               rb * np.float32(b_zero_point))
    return ra, rb, fixed


@kernel
def qlinear_add_codes(a, b, ra, rb, fixed, lo, hi):
    """Flat a, b -> ``sat(cvt(fma(a, rA, fma(b, rB, fixed))))`` (MLAS AVX2 QLinearAdd)."""
    n = a.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        t = fma_f32(np.float32(b[i]), rb, fixed)
        r = cvtps_epi32(fma_f32(np.float32(a[i]), ra, t))
        if r < lo:
            r = np.int64(lo)
            count += 1
        elif r > hi:
            r = np.int64(hi)
            count += 1
        out[i] = r
    return out, count


@kernel
def qdq_binary_codes(a, b, multiply, a_scale, a_zero_point, b_scale, b_zero_point, y_scale,
                     y_zero_point, lo, hi):
    """Flat a, b -> QuantizeLinear(float32(DQ(a) + DQ(b))), or ``*`` when ``multiply``
    (the unfused QDQ Add / Mul float island)."""
    n = a.size
    out = np.empty(n, np.int64)
    count = 0
    for i in prange(n):
        da = np.float32(a[i] - a_zero_point) * a_scale
        db = np.float32(b[i] - b_zero_point) * b_scale
        code, sat = quantize_linear(da * db if multiply else da + db, y_scale, y_zero_point,
                                    lo, hi)
        out[i] = code
        if sat:
            count += 1
    return out, count


@kernel
def qlinear_mul_codes(a, b, a_zero_point, b_zero_point, ratio, y_zero_point, lo, hi):
    """Flat a, b -> ``sat(cvt(float32((a - zA) * (b - zB)) * ratio + float32(zC)))``, two
    float32 roundings (MLAS SSE2 QLinearMul)."""
    n = a.size
    out = np.empty(n, np.int64)
    zc = np.float32(y_zero_point)
    count = 0
    for i in prange(n):
        p = np.float32((a[i] - a_zero_point) * (b[i] - b_zero_point))
        r = cvtps_epi32(p * ratio + zc)
        if r < lo:
            r = np.int64(lo)
            count += 1
        elif r > hi:
            r = np.int64(hi)
            count += 1
        out[i] = r
    return out, count
