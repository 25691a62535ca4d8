"""TFLite Micro's integer SOFTMAX on codes (int8 -> int8, int16 -> int16): the validated entry point.

Convention followed: TFLM's reference kernel (``micro/kernels/softmax_common.cc``
Prepare, ``kernels/internal/reference/softmax.h`` Eval), restated in
:mod:`fxp.kernels.spec_tflite_softmax` (gemmlowp fixed point: a Q5.26 scaled
difference, ``exp_on_negative_values``, a Q12.19 sum, Newton-Raphson
reciprocal, gemmlowp double rounding) and ``SoftmaxInt16`` (two 513-entry LUTs
with linear interpolation).  The output coding is fixed by TFLite: scale
1/256, zero point -128 (int16: 1/32768, 0).

>>> import numpy as np
>>> from fxp.core.format import QFormat
>>> tflite_softmax(np.array([[0, 0]]), x_scale=0.1, fmt=QFormat.integer(8))
(array([[0, 0]]), 0)
"""

from __future__ import annotations

import functools

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FormatError
from fxp.kernels import spec_tflite_softmax as spec
from fxp.ops._checks import _backend
from fxp.ops.qlinear import _in_format, _scale

__all__ = ["OUTPUT_CODING", "compile_tflite_softmax", "tflite_softmax", "tflite_softmax_params",
           "tflite_softmax_params_int16"]

OUTPUT_CODING = {8: (1.0 / 256.0, -128), 16: (1.0 / 32768.0, 0)}
"""Output (scale, zero point) TFLite requires, by code width."""


def _checked(x_scale, beta, where: str) -> float:
    s = _scale(x_scale, "x_scale", where)
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating)) \
            or not np.isfinite(beta) or beta <= 0:
        raise FormatError(f"{where}: beta must be a finite number > 0, got {beta!r:.40}")
    return s


def tflite_softmax_params_int16(x_scale, beta: float = 1.0) -> tuple[int, int]:
    """``(input_multiplier, input_shift)`` of TFLM's int16 Prepare."""
    where = "tflite_softmax"
    s = _checked(x_scale, beta, where)
    try:
        return spec.softmax_params_int16(beta, float(s))
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


def tflite_softmax_params(x_scale, beta: float = 1.0) -> tuple[int, int, int]:
    """``(input_multiplier, input_left_shift, diff_min)`` of TFLM's int8 Prepare."""
    where = "tflite_softmax"
    s = _checked(x_scale, beta, where)
    try:
        return spec.softmax_params(beta, float(np.asarray(s).ravel()[0]))
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


@functools.cache
def _luts() -> tuple[np.ndarray, np.ndarray]:
    return spec.gen_lut_int16("exp"), spec.gen_lut_int16("recip")


def tflite_softmax(x, *, x_scale, fmt: QFormat, beta: float = 1.0, backend: str = "numba"
                   ) -> tuple[np.ndarray, int]:
    """TFLM's integer softmax over the last axis of ``x`` ``[N, n]`` (int8 or int16 codes).

    int8: the gemmlowp kernel; codes of scale 1/256, zero point -128.  int16
    (int16x8 models, input zero point 0): ``SoftmaxInt16`` with its exp and
    ``1/(1+x)`` LUTs; codes of scale 1/32768, zero point 0.  Returns
    ``(codes, n_clamped)``: the number of outputs the final clamp changed (an
    int8 output of exactly 1.0, code 128, becomes 127 as in TFLM).  The int8
    input zero point does not matter (only differences to the row maximum enter).

    Raises
    ------
    FormatError
        ``fmt`` not int8 / int16, codes outside it, not 2-D, too many classes,
        or (int8) ``beta * x_scale * 2**26 < 1`` (TFLM refuses it too).
    """
    where = "tflite_softmax"
    if not isinstance(fmt, QFormat) or fmt.frac_bits != 0 or fmt.bits not in (8, 16) \
            or not fmt.signed:
        raise FormatError(f"{where}: fmt must be int8 or int16 (TFLM's integer softmax), got "
                          f"{fmt!r:.200}")
    backend = _backend(backend)
    x = np.ascontiguousarray(_in_format(x, "x", fmt, where))
    depth = spec.MAX_DEPTH if fmt.bits == 8 else spec.MAX_DEPTH_INT16
    if x.ndim != 2 or not 1 <= x.shape[1] <= depth:
        raise FormatError(f"{where}: x must be [N, n] with 1 <= n <= {depth}, got "
                          f"shape {x.shape}")
    if fmt.bits == 16:
        m, shift = tflite_softmax_params_int16(x_scale, beta)
        exp_lut, recip_lut = _luts()
        if backend == "numpy":
            return spec.softmax_int16(x, m, shift, exp_lut, recip_lut)
        from fxp.kernels.tflite_softmax import softmax_int16_rows

        codes, n = softmax_int16_rows(x.size * 8, x, m, shift, exp_lut, recip_lut)
        return codes, int(n)
    m, shift, diff_min = tflite_softmax_params(x_scale, beta)
    if backend == "numpy":
        return spec.softmax_int8(x, m, shift, diff_min)
    from fxp.kernels.tflite_softmax import softmax_int8_rows

    codes, n = softmax_int8_rows(x.size * 8, x, m, shift, diff_min)
    return codes, int(n)


def compile_tflite_softmax(graph, node, lp, src):
    """The engine's op for a final Softmax run as TFLM's int8 kernel (:mod:`fxp.sim.compile`).

    The plan entry ``lp`` has ``requant="double"`` and an affine int8 (int16)
    ``output`` of scale 1/256 and zero point -128 (1/32768 and 0), as TFLite
    requires; the input must be affine codes of the same width (int16: zero
    point 0) of ``[N, n]`` logits, softmax over the last axis (beta 1).
    Returns ``op(codes_list) -> (codes, n_clamped)``.

    Raises
    ------
    PlanError
        The input or output coding is not as above.
    UnsupportedOpError
        Not ``[N, n]`` logits over the last axis.
    """
    from fxp.errors import PlanError, UnsupportedOpError

    where = f"Softmax {node.name!r}"
    out = lp.output
    bits = out.fmt.bits
    fmt = QFormat.integer(bits, True)
    o_scale, o_zp = OUTPUT_CODING.get(bits, (None, None))
    if out.fmt != fmt or out.zero_point != o_zp or out.scales is None \
            or len(out.scales) != 1 or np.float32(out.scales[0]) != np.float32(o_scale):
        raise PlanError(f"{where}: a TFLite softmax writes int8 codes of scale 1/256 and zero "
                        f"point -128 (int16: 1/32768, 0); the plan's output is {out}"[:300])
    if src is None or src.is_pow2 or src.fmt != fmt or src.kind != "fixed" \
            or len(src.scales) != 1 or (bits == 16 and src.zero_point != 0):
        raise PlanError(f"{where}: a TFLite int{bits} softmax needs affine int{bits} input codes "
                        f"with one scale{' and zero point 0' if bits == 16 else ''}, got "
                        f"{'float' if src is None else src}"[:300])
    depth = spec.MAX_DEPTH if bits == 8 else spec.MAX_DEPTH_INT16
    shape = graph.shapes.get(node.inputs[0])
    if shape is None or len(shape) != 2 or node.axis % 2 != 1 or not isinstance(shape[1], int) \
            or not 1 <= shape[1] <= depth:
        raise UnsupportedOpError(f"{where}: a TFLite softmax runs over the last axis of [N, n] "
                                 f"logits (n <= {depth}); got shape {shape}, axis {node.axis}")
    x_scale = src.scales[0]
    try:  # refuse a scale TFLM refuses, at compile time
        (tflite_softmax_params if bits == 8 else tflite_softmax_params_int16)(x_scale)
    except FormatError as exc:
        raise PlanError(f"{where}: {exc}") from None

    def op(codes: list) -> tuple:
        return tflite_softmax(codes[0], x_scale=x_scale, fmt=fmt)

    return op
