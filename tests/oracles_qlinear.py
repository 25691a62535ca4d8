"""Independent references for the onnxruntime QLinear and TFLite integer ops, one element at a time.

Nothing here imports fxp's kernels, ops or specifications.  Every float32
operation a runtime performs is restated as exact rational arithmetic
(:class:`fractions.Fraction`) followed by one explicit rounding to float32
(:func:`r32`: nearest, ties to even, subnormals included); a fused
multiply-add is the exact ``a*b + c`` rounded once.  Values are Fractions that
are exactly float32 numbers.  The operation order is the one read in the
runtime sources (cited in :mod:`fxp.kernels.spec_qlinear`,
:mod:`fxp.kernels.spec_qlinear_pool`, :mod:`fxp.kernels.spec_tflite`).  The
TFLite multiplier stages reuse the Python-int gemmlowp oracles of
``tests/oracles.py``; ``QuantizeMultiplier`` is restated with ``math.frexp``.
Slow and obviously right: keep the tensors small.
"""

from __future__ import annotations

import math
from fractions import Fraction

from tests.oracles import mbqm_double, mbqm_single

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
TWO = Fraction(2)


# --------------------------------------------------------------------------- float32 by hand
def r32(q) -> Fraction:
    """The float32 nearest to the rational ``q`` (ties to even); OverflowError beyond float32."""
    q = Fraction(q)
    if q == 0:
        return Fraction(0)
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while TWO ** e > a:
        e -= 1
    while TWO ** (e + 1) <= a:
        e += 1
    quantum = TWO ** (max(e, -126) - 23)
    m = round(a / quantum)  # Fraction.__round__: half to even
    v = m * quantum
    if v >= TWO ** 128:
        raise OverflowError(f"{float(q)!r} overflows float32: the oracle does not model inf")
    return v if q > 0 else -v


def f32(x) -> Fraction:
    """A number (int, Fraction, float, numpy scalar) as the float32 the runtime holds."""
    if not isinstance(x, (int, Fraction)):
        x = float(x)
    return r32(Fraction(x))


def fma(a, b, c) -> Fraction:
    return r32(a * b + c)


def rne(q) -> int:
    """Round half to even (``nearbyintf``, ``cvtps2dq`` in the default rounding mode)."""
    return round(Fraction(q))


def cvt(q) -> int:
    """``cvtps2dq`` / ``(int32_t)``: out of int32 gives ``INT32_MIN``."""
    r = rne(q)
    return r if INT32_MIN <= r <= INT32_MAX else INT32_MIN


def fit(r: int, lo: int, hi: int) -> tuple[int, bool]:
    return min(max(r, lo), hi), not lo <= r <= hi


# --------------------------------------------------------------------------- onnxruntime
def quantize_linear(v, scale, zp: int, lo: int, hi: int) -> tuple[int, bool]:
    """MLAS QuantizeLinear: ``rne(float32(v / scale)) + zp``, saturated."""
    return fit(rne(r32(v / f32(scale))) + zp, lo, hi)


def dequantize(code: int, scale, zp: int) -> Fraction:
    return r32(f32(scale) * (code - zp))


_LOGISTIC = {k: f32(Fraction(v)) for k, v in {
    "a9": "4.37031012579801e-11", "a7": "1.15627324459942e-07", "a5": "6.08574864600143e-05",
    "a3": "8.51377133304701e-03", "a1": "2.48287947061529e-01", "b10": "6.10247389755681e-13",
    "b8": "5.76102136993427e-09", "b6": "6.29106785017040e-06", "b4": "1.70198817374094e-03",
    "b2": "1.16817656904453e-01", "b0": "9.93151921023180e-01"}.items()}


def logistic(v: Fraction) -> Fraction:
    """MLAS FMA3 logistic: clamp to [-18, 18], Eigen's polynomials, ``max(0, p/q + .5)``."""
    k = _LOGISTIC
    x = min(Fraction(18), max(Fraction(-18), v))
    x2 = r32(x * x)
    p = fma(x2, k["a9"], k["a7"])
    for c in ("a5", "a3", "a1"):
        p = fma(x2, p, k[c])
    p = r32(x * p)
    q = fma(x2, k["b10"], k["b8"])
    for c in ("b6", "b4", "b2", "b0"):
        q = fma(x2, q, k[c])
    return max(Fraction(0), r32(r32(p / q) + Fraction(1, 2)))


def table_op(op: str, code: int, x_scale, x_zp, y_scale, y_zp, lo, hi, alpha=None):
    """One entry of ``QlinearBuildLookupTable`` for ``op`` in requant / sigmoid / leaky_relu."""
    v = dequantize(code, x_scale, x_zp)
    if op == "sigmoid":
        v = logistic(v)
    elif op == "leaky_relu" and v < 0:
        v = r32(f32(alpha) * v)
    return quantize_linear(v, y_scale, y_zp, lo, hi)


def qlinear_add(a: int, b: int, sa, za, sb, zb, sy, zy, lo, hi, a_scalar: bool = False
                ) -> tuple[int, bool]:
    """MLAS AVX2 QLinearAdd: ``cvt(fma(a, rA, fma(b, rB, zC - fma(rA, zA, rB*zB))))``;
    a one-element input A (``a_scalar``) is passed to MLAS as operand B, so the roles swap."""
    if a_scalar:
        a, b, sa, za, sb, zb = b, a, sb, zb, sa, za
    ra, rb = r32(f32(sa) / f32(sy)), r32(f32(sb) / f32(sy))
    fixed = r32(zy - fma(ra, Fraction(za), r32(rb * zb)))
    return fit(cvt(fma(Fraction(a), ra, fma(Fraction(b), rb, fixed))), lo, hi)


def qdq_add(a: int, b: int, sa, za, sb, zb, sy, zy, lo, hi) -> tuple[int, bool]:
    """DequantizeLinear, float32 Add, QuantizeLinear."""
    s = r32(r32(Fraction(a - za) * f32(sa)) + r32(Fraction(b - zb) * f32(sb)))
    return quantize_linear(s, sy, zy, lo, hi)


def global_avgpool(plane: list[int], sx, zx, sy, zy, lo, hi) -> tuple[int, bool]:
    """MLAS QLinearGlobalAveragePool of one (n, c) plane (flat list of codes)."""
    n = len(plane)
    scale = r32(f32(sx) / r32(f32(sy) * n))
    v = r32(r32(sum(plane) - zx * n) * scale)
    return fit(rne(v) + zy, lo, hi)


def avgpool_window(vals: list[int], count: int, sx, zx, sy, zy, lo, hi) -> tuple[int, bool]:
    """QLinearAveragePool of one window: ``vals`` the real pixels in row-major order."""
    acc = Fraction(0)
    for v in vals:
        acc = r32(acc + dequantize(v, sx, zx))
    acc = r32(acc / count)
    return fit(cvt(r32(r32(acc / f32(sy)) + zy)), lo, hi)


def windows(h, w, kernel, strides, pads):
    """``(oy, ox, [(y, x) real pixels, row-major], padded count)`` for floor-mode windows."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, pads
    for oy in range((h + pt + pb - kh) // sh + 1):
        for ox in range((w + pl + pr - kw) // sw + 1):
            taps = [(oy * sh - pt + i, ox * sw - pl + j) for i in range(kh) for j in range(kw)]
            yield oy, ox, [(y, x) for y, x in taps if 0 <= y < h and 0 <= x < w], kh * kw


# --------------------------------------------------------------------------- TFLite
def quantize_multiplier(real: float, single: bool = False) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``frexp``, ``round`` half away, 2**31 folded, tiny -> 0."""
    frac, exp = math.frexp(real)
    scaled = Fraction(frac) * (1 << 31)
    q = math.floor(scaled + Fraction(1, 2))  # frac > 0: half away from zero
    if q == 1 << 31:
        q, exp = q // 2, exp + 1
    if exp < -31:
        return 0, 0
    if single and exp > 30:
        return (1 << 31) - 1, 30
    return q, exp


def wrap32(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def c_div_half_away(acc: int, n: int) -> int:
    """C ``acc > 0 ? (acc + n/2) / n : (acc - n/2) / n`` with truncating ``/``."""
    t = acc + n // 2 if acc > 0 else acc - n // 2
    return abs(t) // n * (1 if t >= 0 else -1)


def tflite_add(a, b, s1, z1, s2, z2, so, zo, act_lo, act_hi, single) -> tuple[int, int]:
    """TFLite AddFunc from the float32 scales; ``(code, 1 if clamped else 0)``."""
    f1, f2, fo = (float(f32(v)) for v in (s1, s2, so))
    twice = 2.0 * max(f1, f2)
    mult = mbqm_single if single else mbqm_double
    (m1, e1), (m2, e2), (mo, eo) = (quantize_multiplier(r, single) for r in (
        f1 / twice, f2 / twice, twice / (float(1 << 20) * fo)))
    y1, _ = mult((a - z1) * (1 << 20), m1, e1)
    y2, _ = mult((b - z2) * (1 << 20), m2, e2)
    y, _ = mult(y1 + y2, mo, eo)
    code, clamped = fit(y + zo, act_lo, act_hi)
    return code, int(clamped)


def tflite_activation(activation, scale, zp, qmin, qmax) -> tuple[int, int]:
    """CalculateActivationRangeQuantized with float32 ``f / scale`` and half-away rounding."""
    def q(f):
        v = r32(Fraction(f) / f32(scale))
        return zp + (math.floor(abs(v) + Fraction(1, 2)) * (1 if v >= 0 else -1))
    return {"none": (qmin, qmax), "relu": (max(qmin, q(0)), qmax),
            "relu6": (max(qmin, q(0)), min(qmax, q(6))),
            "relu_n1_to_1": (max(qmin, q(-1)), min(qmax, q(1)))}[activation]


def tflite_mean(plane: list[int], s_in, zp_in, s_out, zp_out, lo, hi, single
                ) -> tuple[int, int]:
    """TFLite Micro's QuantizedMeanOrSum of one (n, c) plane: ``(code, events)``, events =
    the centred sum's int32 wrap, the multiplier's int32 wrap / overflow, the clamp.

    ``1/n`` is folded into the multiplier: ``k = min(bit_length(n) - 1, 32, 31 + e)``,
    ``M' = floor(M * 2**k / n)``, exponent ``e - k``."""
    m, e = quantize_multiplier(float(f32(s_in)) / float(f32(s_out)), single)
    n = len(plane)
    k = min(n.bit_length() - 1, 32, 31 + e)
    m, e = (m * 2 ** k) // n, e - k
    t = sum(plane) - zp_in * n
    acc = wrap32(t)
    y, o1 = (mbqm_single if single else mbqm_double)(acc, m, e)
    code, o3 = fit(y + zp_out, lo, hi)
    return code, int(acc != t) + int(o1) + int(o3)