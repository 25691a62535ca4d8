"""onnxruntime's quantized element-wise ops on int8/uint8 codes: the numpy *specification*.

Every function reproduces the integers onnxruntime's CPU execution provider
(MLAS) computes on x86-64 with AVX2/FMA3 (AVX-512F for ``QuantizeLinear``);
the float32 arithmetic is restated operation by operation, each one rounded to
float32 (round to nearest, ties to even), and each *fused* multiply-add
rounded once (:func:`fma_f32`).  The Numba kernels in
:mod:`fxp.kernels.qlinear` must equal these functions bit for bit; both are
pinned to the Python ``Fraction`` oracle in ``tests/oracles_qlinear.py`` and to
onnxruntime itself in ``tests/kernels/test_qlinear_ort.py``.  Inputs are int64
codes validated by :mod:`fxp.ops.qlinear`; scales are ``np.float32``.

Sources read: github.com/microsoft/onnxruntime (main-branch snapshots); every
rule was then measured against the installed onnxruntime 1.32.0 CPU provider
on an x86-64 machine with AVX-512 (0 differing elements; the runtime tests
re-check it).  Where the source leaves the arithmetic to the compiler (FMA
contraction of C++ expressions), the measured behaviour is stated.

``QLinearAdd`` -- ``contrib_ops/cpu/quantization/qlinear_binary_op.cc`` calls
    ``MlasQLinearAdd``; on AMD64 with AVX2 the platform table
    (``core/mlas/lib/platform.cpp``) selects ``MlasQLinearAddS8/U8KernelAvx2``
    (``core/mlas/lib/intrinsics/avx2/qladd_avx2.cpp``):

    1. ``rA = float32(sA / sC)``, ``rB = float32(sB / sC)``;
    2. ``fixed = float32(zC) - fma(rA, zA, float32(rB * zB))`` (the C++
       expression ``zC - (rA*zA + rB*zB)`` contracted by the compiler into one
       FMA; measured: the unfused and the other contraction disagree with
       onnxruntime, this one has 0 differing elements);
    3. per element ``t = fma(b, rB, fixed)``, ``r = fma(a, rA, t)``;
    4. ``_mm256_cvtps_epi32`` (half to even; out of int32 range gives
       ``INT32_MIN``), then saturating packs to the output type;
    5. a one-element operand is broadcast; when it is ``A`` (input 0),
       ``qlinear_binary_op.cc`` passes the operands swapped (``B`` as the
       span, ``A`` as the scalar), so steps 1-3 run with the roles of
       ``(a, sA, zA)`` and ``(b, sB, zB)`` exchanged -- measured: a one-element
       ``a`` (alone or against a span) follows the swapped formula, a
       one-element ``b`` the plain one.  Other broadcasts are not reproduced.

    The scalar C++ fallback in ``qladd.cpp`` (``(vA + vB) / sC``, ``nearbyintf``)
    is *not* what x86 runs.

``QLinearMul`` -- ``qlinear_binary_op.cc`` calls ``MlasQLinearMul``
    (``core/mlas/lib/qlmul.cpp``), which has no runtime dispatch: x86-64 builds
    compile its ``MLAS_SSE2_INTRINSICS`` kernel (no FMA):

    1. ``ratio = float32(float32(sA * sB) / sC)`` (the C++ ``ScaleA * ScaleB /
       ScaleC`` in float);
    2. per element the int32 product ``p = (a - zA) * (b - zB)`` (exact,
       ``_mm_mullo/mulhi_epi16``), ``cvtepi32_ps(p)`` (exact: ``|p| <= 65025``),
       ``float32(p * ratio)``, then ``float32(. + float32(zC))`` -- two roundings;
    3. ``_mm_cvtps_epi32`` (half to even), saturating packs to int16 then to
       the output type (together: a clamp to ``[lo, hi]``).

    A one-element ``A`` is passed swapped, as for QLinearAdd, but the formula
    is symmetric in ``(a, sA, zA)`` and ``(b, sB, zB)`` (``sA*sB == sB*sA`` in
    float32), so every numpy broadcast gives the element-wise formula.
    Measured against onnxruntime 1.32.0 on all 65,536 code pairs for int8 and
    uint8 with scale sets chosen so that the candidate formulas disagree: this
    one 0 differing, the FMA-contracted ``fma(p, ratio, zC)`` and the ratios
    ``sA * (sB / sC)`` or float64 ``sA*sB/sC`` differ.

Lookup tables (``QLinearSigmoid``, ``QLinearLeakyRelu``, rescaled
``QLinearConcat`` inputs) -- ``qlinear_lookup_table.cc``
    ``QlinearBuildLookupTable``: for each byte ``i`` the code ``x = T(i)`` is
    dequantized ``float32(x_scale * (x - x_zp))``, transformed in float32, and
    quantized by ``MlasQuantizeLinear`` (:func:`quantize_linear`); the op is then
    ``y = table[byte(x)]``.  Sigmoid uses ``MlasComputeLogistic``, dispatched to
    the FMA3 assembly ``MlasComputeLogisticF32KernelFma3``
    (``core/mlas/lib/x86_64/LogisticKernelFma3.S``, constants in
    ``core/mlas/lib/logistic.cpp``), restated in :func:`logistic`.  LeakyRelu
    (``qlinear_activations.cc``) is ``v >= 0 ? v : float32(alpha * v)``.
    Concat (``qlinear_concat.cc``) copies an input whose float32 scale and zero
    point equal the output's, else looks it up in the identity table.

``QuantizeLinear`` (MLAS, ``core/mlas/lib/quantize.cpp`` and
    ``intrinsics/avx512/quantize_avx512f.cpp``): ``float32(v / scale)``, clamped
    to ``[lo - zp, hi - zp]`` (NaN gives ``lo - zp``: ``maxps`` returns its
    second operand), rounded half to even, plus ``zp``.

``DequantizeLinear -> Add -> QuantizeLinear`` run in float (graph optimizations
    below ``ORT_ENABLE_EXTENDED``; at the default level onnxruntime fuses the
    pattern into ``QLinearAdd``): ``float32(float32(x - zp) * s)``
    (``core/mlas/lib/dequantize.cpp``), one float32 add, :func:`quantize_linear`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LOGISTIC_CONSTANTS",
    "byte_codes",
    "cvtps_epi32",
    "dequantize_table",
    "fma_f32",
    "leaky_relu_table",
    "logistic",
    "lookup",
    "qdq_add",
    "qdq_mul",
    "qlinear_add",
    "qlinear_add_fixed",
    "qlinear_concat",
    "qlinear_mul",
    "qlinear_mul_ratio",
    "quantize_linear",
    "requant_table",
    "sigmoid_table",
]

F32 = np.float32
INT32_MIN = -(1 << 31)

# MlasLogisticConstants (logistic.cpp): the float32 values of the C literals
# (e.g. ``4.37031012579801e-11f``), given as IEEE bit patterns; a test rounds
# each decimal literal with Fractions and checks the bits.
LOGISTIC_BITS = {
    "lower": 0xC1900000, "upper": 0x41900000,
    "alpha_9": 0x2E403551, "alpha_7": 0x33F84ECB, "alpha_5": 0x387F413B,
    "alpha_3": 0x3C0B7D58, "alpha_1": 0x3E7E3F32,
    "beta_10": 0x2B2BC4F5, "beta_8": 0x31C5F27B, "beta_6": 0x36D317DD,
    "beta_4": 0x3ADF153F, "beta_2": 0x3DEF3E18, "beta_0": 0x3F7E3F34,
}
LOGISTIC_CONSTANTS = {k: np.array(v, np.uint32).view(np.float32)[()]
                      for k, v in LOGISTIC_BITS.items()}


# --------------------------------------------------------------------------- float32 primitives
def fma_f32(a, b, c) -> np.ndarray:
    """``a * b + c`` for float32 operands, rounded once to float32 (x86 ``vfmadd``).

    ``a*b`` is exact in float64 (24 + 24 significant bits); ``s = a*b + c`` is
    rounded to float64 and its error ``e`` recovered exactly (Knuth's
    TwoSum); when ``e != 0`` and ``s`` has an even last bit, ``s`` moves one
    float64 ulp toward the exact value (round to odd).  Rounding that
    round-to-odd value to float32 equals rounding the exact value, since
    53 >= 24 + 2 (Boldo & Melquiond, "Emulation of FMA and correctly rounded
    sums", IEEE TC 2008).
    """
    p = np.asarray(a, F32).astype(np.float64) * np.asarray(b, F32).astype(np.float64)
    c64 = np.asarray(c, F32).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        s = p + c64
        bb = s - p
        e = (p - (s - bb)) + (c64 - bb)
        even = (np.asarray(s).view(np.uint64) & np.uint64(1)) == 0
        odd = np.where((e != 0) & even & np.isfinite(s),
                       np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)
        return np.asarray(odd).astype(F32)


def cvtps_epi32(v) -> np.ndarray:
    """x86 ``cvtps2dq``: float32 -> int32 rounded half to even; NaN and values outside
    int32 give the "integer indefinite" ``INT32_MIN`` (as int64)."""
    v64 = np.asarray(v, F32).astype(np.float64)
    with np.errstate(invalid="ignore"):
        r = np.rint(v64)
        ok = (r >= INT32_MIN) & (r < (1 << 31))
    return np.where(ok, np.where(ok, r, 0).astype(np.int64), INT32_MIN)


def quantize_linear(v, scale: np.float32, zero_point: int, lo: int, hi: int):
    """MLAS ``MlasQuantizeLinear``: ``clamp(float32(v / scale), lo-zp, hi-zp)``, rint, ``+ zp``.

    Returns ``(codes, saturated)``: ``saturated`` marks the elements the clamp
    changed (``rint(v / scale) + zp`` outside ``[lo, hi]``, or NaN).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        q = np.asarray(v, F32) / F32(scale)
    r = np.rint(q.astype(np.float64))
    with np.errstate(invalid="ignore"):
        sat = ~((r >= lo - zero_point) & (r <= hi - zero_point))
    r = np.where(np.isnan(r), lo - zero_point, np.clip(r, lo - zero_point, hi - zero_point))
    return r.astype(np.int64) + zero_point, sat


def byte_codes(signed: bool) -> np.ndarray:
    """The code each byte value 0..255 stands for (two's complement when ``signed``)."""
    i = np.arange(256, dtype=np.int64)
    return np.where(i >= 128, i - 256, i) if signed else i


def dequantize_table(scale: np.float32, zero_point: int, signed: bool) -> np.ndarray:
    """``float32(scale * float32(code - zp))`` for each byte (``QlinearBuildLookupTable``)."""
    with np.errstate(over="ignore"):
        return F32(scale) * (byte_codes(signed) - zero_point).astype(F32)


def lookup(x, table, saturated=None):
    """``table[byte(x)]`` (int8 codes index by their two's-complement byte).

    Returns ``(codes, n_saturated)`` counting the elements whose table entry
    was clamped (``saturated``: the table builder's mask; None counts 0).
    """
    byte = np.asarray(x, np.int64) & 255
    n = 0 if saturated is None else int(np.count_nonzero(np.asarray(saturated)[byte]))
    return np.asarray(table, np.int64)[byte], n


# --------------------------------------------------------------------------- lookup-table ops
def logistic(v) -> np.ndarray:
    """``MlasComputeLogisticF32KernelFma3`` on float32 ``v`` (Eigen's rational polynomial).

    ``x = min(18, max(-18, v))``, ``x2 = x*x``; ``p`` by FMAs
    ``x2*a9 + a7``, ``x2*p + a5``, ``x2*p + a3``, ``x2*p + a1``, then ``p = x*p``;
    ``q`` by FMAs ``x2*b10 + b8``, then ``x2*q + b6, b4, b2, b0``;
    ``max(0, float32(p/q) + 0.5)`` (no upper clamp in the assembly).  NaN stays NaN.
    """
    k = LOGISTIC_CONSTANTS
    v = np.asarray(v, F32)
    x = np.where(np.isnan(v), v, np.minimum(k["upper"], np.maximum(k["lower"], v))).astype(F32)
    x2 = x * x
    p = fma_f32(x2, k["alpha_9"], k["alpha_7"])
    for c in ("alpha_5", "alpha_3", "alpha_1"):
        p = fma_f32(x2, p, k[c])
    p = x * p
    q = fma_f32(x2, k["beta_10"], k["beta_8"])
    for c in ("beta_6", "beta_4", "beta_2", "beta_0"):
        q = fma_f32(x2, q, k[c])
    with np.errstate(invalid="ignore"):
        r = (p / q) + F32(0.5)
    return np.where(np.isnan(r), r, np.maximum(F32(0), r)).astype(F32)


def sigmoid_table(x_scale, x_zp: int, y_scale, y_zp: int, signed: bool, lo: int, hi: int):
    """``QLinearSigmoid``'s table: ``(codes int64[256], saturated bool[256])`` by byte."""
    return quantize_linear(logistic(dequantize_table(x_scale, x_zp, signed)), y_scale, y_zp,
                           lo, hi)


def leaky_relu_table(alpha, x_scale, x_zp: int, y_scale, y_zp: int, signed: bool, lo: int,
                     hi: int):
    """``QLinearLeakyRelu``'s table: ``v >= 0 ? v : float32(alpha * v)`` of the dequantized
    code, quantized; ``(codes, saturated)`` as :func:`sigmoid_table`."""
    v = dequantize_table(x_scale, x_zp, signed)
    with np.errstate(over="ignore", invalid="ignore"):
        w = np.where(v >= F32(0), v, F32(alpha) * v).astype(F32)
    return quantize_linear(w, y_scale, y_zp, lo, hi)


def requant_table(x_scale, x_zp: int, y_scale, y_zp: int, signed: bool, lo: int, hi: int):
    """Identity table (``QLinearConcat`` input rescaling): the dequantized code, quantized;
    ``(codes, saturated)`` as :func:`sigmoid_table`."""
    return quantize_linear(dequantize_table(x_scale, x_zp, signed), y_scale, y_zp, lo, hi)


def qlinear_concat(xs, scales, zero_points, y_scale, y_zp: int, axis: int, signed: bool,
                   lo: int, hi: int):
    """``QLinearConcat``: copy inputs already in ``(y_scale, y_zp)``, table-map the others.

    Returns ``(codes, n_saturated)``.
    """
    parts, n = [], 0
    for x, s, z in zip(xs, scales, zero_points, strict=True):
        if F32(s) == F32(y_scale) and int(z) == int(y_zp):
            parts.append(np.asarray(x, np.int64))
        else:
            codes, k = lookup(x, *requant_table(s, int(z), y_scale, y_zp, signed, lo, hi))
            parts.append(codes)
            n += k
    return np.concatenate(parts, axis=axis), n


# --------------------------------------------------------------------------- residual add
def qlinear_add_fixed(a_scale, a_zp: int, b_scale, b_zp: int, y_scale, y_zp: int):
    """``(rA, rB, fixed)`` of ``MlasQLinearAddKernelAvx2Helper`` (steps 1-2 of the module doc)."""
    with np.errstate(over="ignore", invalid="ignore"):
        ra = F32(a_scale) / F32(y_scale)
        rb = F32(b_scale) / F32(y_scale)
        fixed = F32(y_zp) - fma_f32(ra, F32(a_zp), rb * F32(b_zp))[()]
    return F32(ra), F32(rb), F32(fixed)


def qlinear_add(a, b, a_scale, a_zp: int, b_scale, b_zp: int, y_scale, y_zp: int, lo: int,
                hi: int):
    """``QLinearAdd`` (AVX2 kernel, steps 1-5 of the module doc) of same-shape codes, or with
    a one-element operand broadcast; ``a`` of one element swaps the operands (step 5).

    Returns ``(codes, n_saturated)``: elements whose converted int32 lay outside ``[lo, hi]``.
    """
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    shape = np.broadcast_shapes(a.shape, b.shape)
    if a.size == 1:
        a, b, a_scale, a_zp, b_scale, b_zp = b, a, b_scale, b_zp, a_scale, a_zp
    ra, rb, fixed = qlinear_add_fixed(a_scale, a_zp, b_scale, b_zp, y_scale, y_zp)
    t = fma_f32(np.broadcast_to(b, shape).astype(F32), rb, fixed)
    r = cvtps_epi32(fma_f32(np.broadcast_to(a, shape).astype(F32), ra, t))
    return np.clip(r, lo, hi), int(np.count_nonzero((r < lo) | (r > hi)))


def qdq_add(a, b, a_scale, a_zp: int, b_scale, b_zp: int, y_scale, y_zp: int, lo: int,
            hi: int):
    """Unfused ``DequantizeLinear`` x2 -> float ``Add`` -> ``QuantizeLinear`` (numpy
    broadcasting); ``(codes, n_saturated)``."""
    shape = np.broadcast_shapes(np.shape(a), np.shape(b))
    with np.errstate(over="ignore", invalid="ignore"):
        da = (np.broadcast_to(np.asarray(a, np.int64), shape) - a_zp).astype(F32) * F32(a_scale)
        db = (np.broadcast_to(np.asarray(b, np.int64), shape) - b_zp).astype(F32) * F32(b_scale)
        s = (da + db).astype(F32)
    codes, sat = quantize_linear(s, y_scale, y_zp, lo, hi)
    return codes, int(np.count_nonzero(sat))


# --------------------------------------------------------------------------- multiply
def qlinear_mul_ratio(a_scale, b_scale, y_scale) -> np.float32:
    """``float32(float32(sA * sB) / sC)`` (``MlasQLinearMulKernel``'s ``VectorScaleRatio``)."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        return F32(F32(F32(a_scale) * F32(b_scale)) / F32(y_scale))


def qlinear_mul(a, b, a_scale, a_zp: int, b_scale, b_zp: int, y_scale, y_zp: int, lo: int,
                hi: int):
    """``QLinearMul`` (SSE2 kernel, steps 1-3 of the module doc), numpy broadcasting.

    Returns ``(codes, n_saturated)``: elements whose converted int32 lay outside ``[lo, hi]``.
    """
    ratio = qlinear_mul_ratio(a_scale, b_scale, y_scale)
    p = (np.asarray(a, np.int64) - a_zp) * (np.asarray(b, np.int64) - b_zp)
    with np.errstate(over="ignore", invalid="ignore"):
        v = (p.astype(F32) * ratio).astype(F32) + F32(y_zp)
    r = cvtps_epi32(v)
    return np.clip(r, lo, hi), int(np.count_nonzero((r < lo) | (r > hi)))


def qdq_mul(a, b, a_scale, a_zp: int, b_scale, b_zp: int, y_scale, y_zp: int, lo: int,
            hi: int):
    """Unfused ``DequantizeLinear`` x2 -> float ``Mul`` -> ``QuantizeLinear`` (numpy
    broadcasting); ``(codes, n_saturated)``."""
    with np.errstate(over="ignore", invalid="ignore"):
        da = (np.asarray(a, np.int64) - a_zp).astype(F32) * F32(a_scale)
        db = (np.asarray(b, np.int64) - b_zp).astype(F32) * F32(b_scale)
        s = (da * db).astype(F32)
    codes, sat = quantize_linear(s, y_scale, y_zp, lo, hi)
    return codes, int(np.count_nonzero(sat))
