"""LiteRT's kernels where they differ from TFLite Micro: SOFTMAX, the optimized ADD and MEAN.

Convention followed: LiteRT (``ai-edge-litert``, google-ai-edge/LiteRT
f674577) on x86-64.  SOFTMAX: :mod:`fxp.kernels.spec_litert_softmax` (int8:
the optimized kernels' float32 table, the reference kernels' gemmlowp steps
as TFLite Micro; int16: TFLite Micro's steps with tables built in double).
MEAN: the optimized int8 kernel LiteRT takes for ``keep_dims`` means over H
and W of a 4-D tensor (:func:`litert_mean_hw_keepdims`); the other MEANs are
TFLite Micro's (:func:`fxp.ops.tflite.tflite_mean_hw`).

>>> import numpy as np
>>> from fxp.core.format import QFormat
>>> litert_softmax(np.array([[0, 0]]), x_scale=0.1, fmt=QFormat.integer(8), kernels="opt")
(array([[0, 0]]), 0)
"""

from __future__ import annotations

import functools

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import FormatError
from fxp.kernels import spec_litert_softmax as spec
from fxp.ops._checks import _backend, _codes

__all__ = ["KERNELS", "compile_runtime_softmax", "litert_add", "litert_mean_hw_keepdims",
           "litert_neon_mask", "litert_softmax", "litert_softmax_params_int16"]

KERNELS = ("ref", "opt")
"""LiteRT's reference (``BUILTIN_REF``) and optimized (``BUILTIN``) kernel sets."""
_I8, _I16 = QFormat.integer(8, True), QFormat.integer(16, True)


@functools.cache
def _luts() -> tuple[np.ndarray, np.ndarray]:
    return spec.lut_int16_double("exp"), spec.lut_int16_double("recip")


def litert_softmax_params_int16(x_scale, beta: float = 1.0) -> tuple[int, int]:
    """``QuantizeMultiplier(f32(s_x * beta) / (10 / 65535))`` (LiteRT's int16 Prepare)."""
    real = float(np.float32(np.float32(x_scale) * np.float32(beta))) / (10.0 / 65535.0)
    return intmath.quantize_multiplier(real)


def litert_softmax(x, *, x_scale, fmt: QFormat, kernels: str = "opt", beta: float = 1.0,
                   backend: str = "numba") -> tuple[np.ndarray, int]:
    """LiteRT's integer softmax over the last axis of ``x [N, n]``; ``(codes, n_clamped)``.

    int8 codes give codes of scale 1/256 and zero point -128 (``kernels="opt"``:
    the float32 table; ``"ref"``: as TFLite Micro), int16 codes (zero point 0)
    codes of scale 1/32768 (either kernel set: the double-built tables).

    Raises
    ------
    FormatError
        ``fmt`` not int8 / int16, codes outside it, not 2-D, an unknown kernel set
        or a scale the runtime refuses.
    """
    from fxp.ops.tflite_softmax import OUTPUT_CODING, tflite_softmax

    where = "litert_softmax"
    if kernels not in KERNELS:
        raise FormatError(f"{where}: kernels must be one of {KERNELS}, got {kernels!r:.40}")
    if fmt not in (_I8, _I16):
        raise FormatError(f"{where}: fmt must be int8 or int16, got {fmt!r:.200}")
    backend = _backend(backend)
    if fmt == _I8 and kernels == "ref":
        return tflite_softmax(x, x_scale=x_scale, fmt=fmt, beta=beta, backend=backend)
    a = _codes(x, "x")
    if a.ndim != 2 or a.shape[1] < 1 or (a.size and (a.min() < fmt.min_code
                                                     or a.max() > fmt.max_code)):
        raise FormatError(f"{where}: x must be [N, n] codes of {fmt}, got shape {a.shape}")
    s = np.float32(x_scale)
    if not (np.isfinite(s) and s > 0):
        raise FormatError(f"{where}: x_scale must be finite and > 0, got {x_scale!r:.40}")
    if fmt == _I16:
        from fxp.kernels import spec_tflite_softmax as tspec

        if a.shape[1] > tspec.MAX_DEPTH_INT16:
            raise FormatError(f"{where}: at most {tspec.MAX_DEPTH_INT16} classes, got "
                              f"{a.shape[1]}")
        m, shift = litert_softmax_params_int16(s, beta)
        exp_lut, recip_lut = _luts()
        if backend == "numpy":
            return tspec.softmax_int16(a, m, shift, exp_lut, recip_lut)
        from fxp.kernels.tflite_softmax import softmax_int16_rows

        codes, n = softmax_int16_rows(a.size * 8, a, m, shift, exp_lut, recip_lut)
        return codes, int(n)
    table = spec.float_table(s, beta)
    y_scale, y_zp = OUTPUT_CODING[8]
    if backend == "numpy":
        return spec.softmax_float_table(a, table, y_scale, y_zp)
    from fxp.kernels.litert_softmax import softmax_float_table_rows

    codes, n = softmax_float_table_rows(a.size * 8, a, table, np.float32(y_scale),
                                        np.int64(y_zp))
    return codes, int(n)


def compile_runtime_softmax(graph, node, lp, src):
    """The engine's op for a final Softmax under requant ``"float64"`` (LiteRT reference),
    ``"ruy"`` / ``"xnnpack"`` (LiteRT's optimized kernels; XNNPACK takes no quantized
    SOFTMAX).

    Checks the input and output codings as :func:`fxp.ops.tflite_softmax.compile_tflite_softmax`
    (same errors); returns ``op(codes_list) -> (codes, n_clamped)``.
    """
    from fxp.ops.tflite_softmax import compile_tflite_softmax

    compile_tflite_softmax(graph, node, lp, src)  # validates
    kernels = "ref" if lp.requant.value == "float64" else "opt"
    fmt, x_scale = src.fmt, src.scales[0]

    def op(codes: list) -> tuple:
        return litert_softmax(codes[0], x_scale=x_scale, fmt=fmt, kernels=kernels)

    return op


def litert_mean_hw_keepdims(x, *, x_scale, x_zero_point: int, y_scale, y_zero_point: int,
                            backend: str = "numba") -> tuple[np.ndarray, int]:
    """LiteRT's optimized int8 MEAN over H and W with ``keep_dims`` (NCHW codes ->
    ``[N, C, 1, 1]``); ``(codes, n_clamped)``.

    ``optimized_integer_ops::Mean`` (``internal/optimized/integer_ops/mean.h``
    lines 200-220 and its ``MeanImpl``), all float arithmetic in float32::

        t    = f32(f32(float(z_x) * s_x) / s_y);  t = t > 0 ? t + 0.5f : t - 0.5f
        bias = z_y - int32(t)                               # truncation
        (M, shift) = QuantizeMultiplier(f32(s_x / f32(float(H*W) * s_y)))
        y    = clamp(MBQM(sum of the raw codes, M, shift) + bias, -128, 127)

    with the MBQM of ``optimized_integer_ops::MeanImpl``: whole blocks of 16
    channels take its NEON path (``MultiplyByQuantizedMultiplier4Rows``; on
    x86 through ``NEON_2_SSE``, measured equal to ``ruy``'s two ties-up
    roundings), the remaining ``C % 16`` channels the scalar gemmlowp double
    rounding (:func:`~fxp.kernels.spec_runtime_requant.litert_block_variants`).

    Raises
    ------
    FormatError
        Not int8 NCHW codes, bad scales or zero points, a multiplier out of range.
    """
    from fxp.kernels.spec_runtime_requant import litert_block_variants
    from fxp.ops.runtime_requant import requantize_runtime_per_channel

    where = "litert_mean_hw_keepdims"
    a = _codes(x, "x")
    if a.ndim != 4 or a.shape[2] * a.shape[3] == 0 or (a.size and (a.min() < -128
                                                                   or a.max() > 127)):
        raise FormatError(f"{where}: x must be int8 NCHW codes with H*W > 0, got shape "
                          f"{a.shape}")
    sx, sy = np.float32(x_scale), np.float32(y_scale)
    if not (np.isfinite(sx) and sx > 0 and np.isfinite(sy) and sy > 0):
        raise FormatError(f"{where}: scales must be finite and > 0, got {x_scale!r:.40}, "
                          f"{y_scale!r:.40}")
    for v, k in ((x_zero_point, "x_zero_point"), (y_zero_point, "y_zero_point")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not -128 <= v <= 127:
            raise FormatError(f"{where}: {k} must be an int8 code, got {v!r:.40}")
    f32 = np.float32
    t = f32(f32(f32(int(x_zero_point)) * sx) / sy)
    t = f32(t + f32(0.5)) if t > 0 else f32(t - f32(0.5))
    bias = int(y_zero_point) - int(np.trunc(np.float64(t)))
    real = f32(sx / f32(f32(a.shape[2] * a.shape[3]) * sy))
    m, shift = intmath.quantize_multiplier(float(real))
    if not -31 <= shift <= 31:
        raise FormatError(f"{where}: the scale {float(real)!r} gives the shift {shift}, outside "
                          f"[-31, 31]")
    sums = a.sum(axis=(2, 3), keepdims=True).reshape(a.shape[0], a.shape[1], 1, 1)
    c = a.shape[1]
    y, _ = requantize_runtime_per_channel(sums, litert_block_variants(c, 16), [m] * c,
                                          [shift] * c, axis=1, backend=backend)
    q = y + bias
    out = np.clip(q, -128, 127)
    return out, int(np.count_nonzero(out != q))


def litert_neon_mask(shape: tuple[int, ...], block: int = 16) -> np.ndarray:
    """Which elements of an engine tensor ``[N, C, H, W]`` (or ``[N, F]``) LiteRT's
    optimized elementwise kernels process in their NEON blocks: per sample (LiteRT runs
    batch 1), the TFLite-layout (NHWC) flat index below ``size - size % block``."""
    per = shape[1:]
    size = int(np.prod(per, dtype=np.int64))
    if len(per) == 3:  # NCHW -> the NHWC flat index of each element
        c, h, w = per
        idx = (np.arange(h)[None, :, None] * w + np.arange(w)[None, None, :]) * c \
            + np.arange(c)[:, None, None]
    else:
        idx = np.arange(size).reshape(per)
    return np.broadcast_to(idx < size - size % block, shape)


def litert_add(a, b, *, a_scale, a_zero_point: int, b_scale, b_zero_point: int, y_scale,
               y_zero_point: int, lo: int = -128, hi: int = 127, backend: str = "numba"
               ) -> tuple[np.ndarray, int]:
    """LiteRT's optimized int8 ADD (``optimized_integer_ops::AddElementwiseInt8``,
    ``optimized/integer_ops/add.h`` lines 36-165) of two tensors of one shape (engine layout,
    see :func:`litert_neon_mask`); ``(codes, n)``, ``n`` counting int32 / int16 wraps.

    With TFLite's ADD parameters (:func:`fxp.ops.tflite.tflite_add_params`:
    ``left_shift = 20``, ``(M_i, shift_i)``, ``(M_out, shift_out)``), elements in
    whole blocks of 16 take the ``USE_NEON`` path (compiled on x86 through
    ``NEON_2_SSE``), which folds the input shift into the left shift -- one
    rounding where TFLite Micro rounds twice -- and narrows to int16 before
    adding the output offset::

        neon:   y_i = SRDHM(int32((x_i - z_i) << (20 + shift_i)), M_i)
                      (a negative 20 + shift_i shifts right, truncating)
        scalar: y_i = RDBPOT(SRDHM(int32((x_i - z_i) << 20), M_i), -shift_i)
        r = RDBPOT(SRDHM(int32(y_1 + y_2), M_out), -shift_out)
        neon:   out = sat8(int16(int16(r) + z_y));   scalar: out = r + z_y

    then the activation clamp ``[lo, hi]``.  The remaining ``size % 16`` elements
    of each sample take the scalar loop (TFLite Micro's integers).

    Raises
    ------
    FormatError
        Codes or zero points outside int8, shapes that differ, bad scales.
    """
    from fxp.ops.runtime_requant import requantize_runtime_per_channel
    from fxp.ops.tflite import tflite_add_params

    where = "litert_add"
    x, y = _codes(a, "a"), _codes(b, "b")
    if x.shape != y.shape or x.ndim < 2:
        raise FormatError(f"{where}: a and b must have one shape [N, ...], got {x.shape} and "
                          f"{y.shape}")
    zs = []
    for v, k in ((a_zero_point, "a_zero_point"), (b_zero_point, "b_zero_point"),
                 (y_zero_point, "y_zero_point")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not -128 <= v <= 127:
            raise FormatError(f"{where}: {k} must be an int8 code, got {v!r:.40}")
        zs.append(int(v))
    for arr, k in ((x, "a"), (y, "b")):
        if arr.size and (arr.min() < -128 or arr.max() > 127):
            raise FormatError(f"{where}: {k} holds codes outside int8")
    m1, e1, m2, e2, mo, eo = tflite_add_params(a_scale, b_scale, y_scale)

    def mbqm(v, m, e):
        out, n = requantize_runtime_per_channel(v.reshape(1, -1), "double", [m], [e], axis=0,
                                                backend=backend)
        return out.reshape(v.shape), n

    def stage(codes, z, m, e):
        d = codes - z
        neon_left = 20 + e
        neon, n1 = mbqm(d << neon_left if neon_left >= 0 else d >> -neon_left, m, 0)
        scalar, n2 = mbqm(d << 20, m, e)
        return neon, scalar, n1 + n2

    neon1, scalar1, n1 = stage(x, zs[0], m1, e1)
    neon2, scalar2, n2 = stage(y, zs[1], m2, e2)
    mask = litert_neon_mask(x.shape)
    total = np.where(mask, neon1 + neon2, scalar1 + scalar2)
    wrapped = ((total + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    r, n3 = mbqm(wrapped, mo, eo)
    r16 = ((r + (1 << 15)) & 0xFFFF) - (1 << 15)
    s16 = ((r16 + zs[2] + (1 << 15)) & 0xFFFF) - (1 << 15)
    out = np.where(mask, np.clip(s16, -128, 127), r + zs[2])
    n4 = int(np.count_nonzero(mask & ((r16 != r) | (s16 != r16 + zs[2]))))
    return np.clip(out, int(lo), int(hi)), n1 + n2 + n3 + n4 + int(np.count_nonzero(wrapped
                                                                                    != total))
