"""Pure-Python (``Fraction``) oracles of the elementwise Mul kernels (issue 14).

Independent of numpy and of :mod:`fxp`: every float32 operation is an exact
rational rounded by :func:`tests.oracles_qlinear.r32`.

* :func:`qlinear_mul` -- onnxruntime ``QLinearMul``, MLAS SSE2 kernel
  (``core/mlas/lib/qlmul.cpp``): ``ratio = f32(f32(sA*sB)/sC)``,
  ``cvt(f32(f32(p * ratio) + zC))`` with ``p = (a-zA)(b-zB)``, saturated;
* :func:`qdq_mul` -- DequantizeLinear x2, float32 Mul, QuantizeLinear;
* :func:`tflite_mul` -- TFLite Micro reference int8 MUL (``integer_ops/mul.h``):
  ``zC + MBQM((a-zA)(b-zB), QuantizeMultiplier(double(s1) * double(s2) / double(s_out)))``;
* :func:`pow2_mul` -- fxp's power-of-two Mul: the exact product rounded once
  into the output format (half up: ``floor(v + 1/2)``), saturated.
"""

from __future__ import annotations

import math
from fractions import Fraction

from tests.oracles import mbqm_double, mbqm_single
from tests.oracles_qlinear import cvt, f32, fit, quantize_linear, quantize_multiplier, r32


def ratio(sa, sb, sy) -> Fraction:
    return r32(r32(f32(sa) * f32(sb)) / f32(sy))


def qlinear_mul(a: int, b: int, sa, za, sb, zb, sy, zy, lo, hi) -> tuple[int, bool]:
    p = Fraction((a - za) * (b - zb))  # |p| <= 65025: exact in float32
    return fit(cvt(r32(r32(p * ratio(sa, sb, sy)) + zy)), lo, hi)


def qdq_mul(a: int, b: int, sa, za, sb, zb, sy, zy, lo, hi) -> tuple[int, bool]:
    v = r32(r32(Fraction(a - za) * f32(sa)) * r32(Fraction(b - zb) * f32(sb)))
    return quantize_linear(v, sy, zy, lo, hi)


def tflite_mul(a: int, b: int, sa, za, sb, zb, sy, zy, lo, hi, single: bool
               ) -> tuple[int, int]:
    real = float(f32(sa) * f32(sb) / f32(sy))  # exact product, one rounding to double
    m, e = quantize_multiplier(real, single)
    y, _ = (mbqm_single if single else mbqm_double)((a - za) * (b - zb), m, e)
    code, clamped = fit(y + zy, lo, hi)
    return code, int(clamped)


def pow2_mul(a: int, fa: int, b: int, fb: int, fy: int, lo: int, hi: int) -> tuple[int, bool]:
    v = Fraction(a * b, 1 << (fa + fb)) * (1 << fy) if fy >= 0 else \
        Fraction(a * b, (1 << (fa + fb)) * (1 << -fy))
    return fit(math.floor(v + Fraction(1, 2)), lo, hi)
