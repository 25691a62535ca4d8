"""TFLite Micro's integer LOGISTIC, TANH and HARD_SWISH on codes: the validated entry points.

Convention followed: TFLM's reference kernels, restated in
:mod:`fxp.kernels.spec_tflite_act` (sources and commits cited there).  Each
function derives TFLM's Prepare-time integers from the float32 scales (also
available alone: :func:`tflite_act_params`, :func:`tflite_hard_swish_params`),
runs the Numba kernel of :mod:`fxp.kernels.tflite_act` (``backend="numba"``)
or the specification (``backend="numpy"``), and returns ``(codes, n_events)``.

Output codings are fixed by TFLite (:data:`OUTPUT_CODING`): LOGISTIC int8
writes scale 1/256, zero point -128; TANH int8 1/128, 0; both int16 2**-15, 0
(int16 inputs need zero point 0).  HARD_SWISH (int8 only: TFLM has no int16
kernel) takes any output scale and zero point.

>>> import numpy as np
>>> from fxp.core.format import QFormat
>>> tflite_logistic(np.array([-128, 0, 127]), x_scale=0.1, x_zero_point=0,
...                 fmt=QFormat.integer(8))
(array([-128,    0,  127]), 0)
"""

from __future__ import annotations

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FormatError
from fxp.kernels import spec_tflite_act as spec
from fxp.ops._checks import _backend
from fxp.ops.qlinear import _in_format, _scale, _zero_point
from fxp.ops.tflite import _scheme

__all__ = ["OUTPUT_CODING", "tflite_act_params", "tflite_hard_swish", "tflite_hard_swish_params",
           "tflite_logistic", "tflite_tanh"]

INT8, INT16 = QFormat.integer(8, True), QFormat.integer(16, True)
OUTPUT_CODING = {("logistic", 8): (1.0 / 256.0, -128), ("tanh", 8): (1.0 / 128.0, 0),
                 ("logistic", 16): (1.0 / 32768.0, 0), ("tanh", 16): (1.0 / 32768.0, 0)}
"""Output (scale, zero point) TFLite requires, by ``(function, code width)``."""


def _fmt(fmt, where: str, bits=(8, 16)) -> int:
    if not isinstance(fmt, QFormat) or fmt.bits not in bits \
            or fmt != QFormat.integer(fmt.bits, True):
        names = " or ".join(f"int{b}" for b in bits)
        raise FormatError(f"{where}: fmt must be {names}, got {fmt!r:.200}")
    return fmt.bits


def tflite_act_params(kind: str, x_scale, fmt: QFormat, *, scheme: str = "double") -> tuple:
    """TFLM's Prepare integers of LOGISTIC / TANH (``kind``).

    int8: ``(input_multiplier, input_left_shift, input_range_radius)``;
    int16: ``(input_multiplier, input_left_shift)`` (multiplier 0: the
    power-of-two case).

    Raises
    ------
    FormatError
        Unknown ``kind`` / ``scheme``, ``fmt`` not int8 / int16, a scale
        outside the range TFLM handles.
    """
    where = f"tflite_{kind}"
    if kind not in ("logistic", "tanh"):
        raise FormatError(f"tflite_act_params: kind must be 'logistic' or 'tanh', got "
                          f"{kind!r:.40}")
    single = _scheme(scheme, where)
    bits = _fmt(fmt, where)
    s = _scale(x_scale, "x_scale", where)
    try:
        if bits == 8:
            return spec.input_params_int8(s, single=single)
        return spec.input_params_int16(s, kind == "tanh")
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


def _lut_act(kind: str, x, x_scale, x_zero_point, fmt, scheme, backend):
    where = f"tflite_{kind}"
    bits = _fmt(fmt, where)
    backend = _backend(backend)
    x = _in_format(x, "x", fmt, where)
    zp = int(_zero_point(x_zero_point, "x_zero_point", fmt, where))
    params = tflite_act_params(kind, x_scale, fmt, scheme=scheme)
    tanh = kind == "tanh"
    if bits == 16:
        if zp:
            raise FormatError(f"{where}: TFLM's int16 kernel needs x_zero_point 0, got {zp}")
        m, ls = params
        if backend == "numpy":
            return spec.lut_int16(x, m, ls, tanh), 0
        from fxp.kernels.tflite_act import lut_int16_codes

        flat = np.ascontiguousarray(x).ravel()
        codes = lut_int16_codes(flat.size, flat, spec.SIGMOID_TABLE_UINT16, np.int64(m),
                                np.int64(ls), tanh)
        return codes.reshape(x.shape), 0
    m, ls, radius = params
    if backend == "numpy":
        return spec.logistic_tanh_int8(x, zp, radius, m, ls, scheme, tanh)
    from fxp.kernels.tflite_act import logistic_tanh_int8_codes

    flat = np.ascontiguousarray(x).ravel()
    codes, n = logistic_tanh_int8_codes(flat.size, flat, np.int64(zp), np.int64(radius),
                                        np.int64(m), np.int64(ls), scheme == "single", tanh)
    return codes.reshape(x.shape), int(n)


def tflite_logistic(x, *, x_scale, x_zero_point, fmt: QFormat, scheme: str = "double",
                    backend: str = "numba") -> tuple[np.ndarray, int]:
    """TFLM's integer LOGISTIC of int8 / int16 codes ``x`` (any shape).

    int8: gemmlowp ``logistic`` on a Q4.27 input, codes of scale 1/256 and
    zero point -128; int16 (zero point 0): the interpolated
    ``sigmoid_table_uint16``, codes of scale 2**-15.  Returns ``(codes,
    n_clamped)`` (an int8 1.0, code 128, is clamped to 127).

    Raises
    ------
    FormatError
        ``fmt`` not int8 / int16, codes or zero point outside it (int16:
        not 0), a scale TFLM cannot take, unknown ``scheme`` / ``backend``.
    """
    return _lut_act("logistic", x, x_scale, x_zero_point, fmt, scheme, backend)


def tflite_tanh(x, *, x_scale, x_zero_point, fmt: QFormat, scheme: str = "double",
                backend: str = "numba") -> tuple[np.ndarray, int]:
    """TFLM's integer TANH of int8 / int16 codes ``x``: int8 codes of scale 1/128 and zero
    point 0 (gemmlowp ``tanh``), int16 codes of scale 2**-15 (``2 sigmoid(2x) - 1`` from
    the same table).  Arguments, returns and errors as :func:`tflite_logistic`."""
    return _lut_act("tanh", x, x_scale, x_zero_point, fmt, scheme, backend)


def tflite_hard_swish_params(x_scale, y_scale, *, scheme: str = "double"
                             ) -> tuple[int, int, int, int]:
    """``(reluish_m16, reluish_exponent, output_m16, output_exponent)`` of TFLM's Prepare.

    Raises
    ------
    FormatError
        Bad scales, or exponents TFLM refuses (output exponent > 0) or the
        int16 kernel cannot shift (below -15).
    """
    where = "tflite_hard_swish"
    single = _scheme(scheme, where)
    try:
        return spec.hard_swish_params(_scale(x_scale, "x_scale", where),
                                      _scale(y_scale, "y_scale", where), single=single)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


def tflite_hard_swish(x, *, x_scale, x_zero_point, y_scale, y_zero_point, fmt: QFormat,
                      scheme: str = "double", backend: str = "numba"
                      ) -> tuple[np.ndarray, int]:
    """TFLM's int8 HARD_SWISH (``x * relu6(x + 3) / 6``) of int8 codes ``x``.

    Returns ``(codes, n_events)``: int16 wraps of the final ``+ y_zero_point``
    and elements the int8 clamp changed.

    Raises
    ------
    FormatError
        ``fmt`` not int8, codes or zero points outside it, scales as in
        :func:`tflite_hard_swish_params`, unknown ``scheme`` / ``backend``.
    """
    where = "tflite_hard_swish"
    _fmt(fmt, where, bits=(8,))
    backend = _backend(backend)
    x = _in_format(x, "x", fmt, where)
    zi = int(_zero_point(x_zero_point, "x_zero_point", fmt, where))
    zo = int(_zero_point(y_zero_point, "y_zero_point", fmt, where))
    params = tflite_hard_swish_params(x_scale, y_scale, scheme=scheme)
    if backend == "numpy":
        return spec.hard_swish_int8(x, zi, zo, params)
    from fxp.kernels.tflite_act import hard_swish_int8_codes

    flat = np.ascontiguousarray(x).ravel()
    codes, n = hard_swish_int8_codes(flat.size, flat, np.int64(zi), np.int64(zo),
                                     *(np.int64(p) for p in params))
    return codes.reshape(x.shape), int(n)
