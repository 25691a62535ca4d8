"""TFLite integer ADD (int8 / int16), AVERAGE_POOL_2D and MEAN on codes: the validated
entry points.

Convention followed: TensorFlow Lite's reference integer kernels, restated in
:mod:`fxp.kernels.spec_tflite` (sources cited there): multiplier + shift
requantization with gemmlowp rounding (``scheme="double"``, TFLite's default
build) or ``TFLITE_SINGLE_ROUNDING`` (``scheme="single"``), raw-code average
pooling rounded half away from zero, and TFLite Micro's HW ``MEAN`` (its
multiplier holds ``1/(H*W)``).  Codes are NCHW (fxp's layout; TFLite's NHWC changes no value).

Each function derives TFLite's Prepare-time integers from the float32 scales
(also available alone: :func:`tflite_add_params`,
:func:`fxp.kernels.spec_tflite.activation_range`), runs the Numba kernel of
:mod:`fxp.kernels.tflite` (``backend="numba"``) or the specification
(``backend="numpy"``), and returns ``(codes, n_events)``: int32 wraps plus
elements the final clamp changed.

>>> import numpy as np
>>> from fxp.core.format import QFormat
>>> tflite_avgpool(np.array([[[[1, 2], [3, 5]]]]), (2, 2), fmt=QFormat.integer(8))
(array([[[[3]]]]), 0)
"""

from __future__ import annotations

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError
from fxp.kernels import spec_tflite as spec
from fxp.ops._checks import _backend, _ints
from fxp.ops.qlinear import _in_format, _scale, _zero_point

__all__ = ["tflite_add", "tflite_add_params", "tflite_avgpool", "tflite_mean_hw"]

INT32_MAX = (1 << 31) - 1


def _scheme(scheme: str, where: str) -> bool:
    if scheme not in ("double", "single"):
        raise FormatError(f"{where}: unknown rounding scheme {scheme!r:.40}; use 'double' "
                          "(TFLite default) or 'single' (TFLITE_SINGLE_ROUNDING)")
    return scheme == "single"


def _int_format(fmt, where: str, bits=(8,)) -> None:
    if not isinstance(fmt, QFormat) or fmt.frac_bits != 0 or fmt.bits not in bits:
        raise FormatError(f"{where}: fmt must be an integer format of {bits} bits, got "
                          f"{fmt!r:.200}")


def _act_range(activation, scale, zero_point, fmt: QFormat, where: str) -> tuple[int, int]:
    if activation not in spec.ACTIVATIONS:
        raise FormatError(f"{where}: unknown fused activation {activation!r:.40}; use one of "
                          f"{spec.ACTIVATIONS}")
    if activation == "none":
        return fmt.min_code, fmt.max_code
    if scale is None:
        raise FormatError(f"{where}: activation {activation!r} needs the output scale")
    try:
        return spec.activation_range(activation, _scale(scale, "scale", where),
                                     int(_zero_point(zero_point, "zero_point", fmt, where)),
                                     fmt.min_code, fmt.max_code)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


def tflite_add_params(a_scale, b_scale, y_scale, *, scheme: str = "double", bits: int = 8
                      ) -> tuple[int, int, int, int, int, int]:
    """``(M1, shift1, M2, shift2, M_out, shift_out)`` of TFLite add.cc Prepare: left shift
    20 for ``bits=8``, 15 for ``bits=16`` (TFLM ``add_common.cc``).

    Raises
    ------
    FormatError
        ``bits`` not 8 or 16, a scale that is not a finite positive float32,
        or an output scale so small that
        ``2*max(s1, s2) / (2**left_shift * s_out) >= 1``.
    """
    where = "tflite_add_params"
    single = _scheme(scheme, where)
    if bits not in (8, 16):
        raise FormatError(f"{where}: bits must be 8 or 16, got {bits!r:.40}")
    s = [_scale(v, n, where) for v, n in ((a_scale, "a_scale"), (b_scale, "b_scale"),
                                          (y_scale, "y_scale"))]
    shift = spec.LEFT_SHIFT if bits == 8 else spec.LEFT_SHIFT_16
    try:
        return spec.add_params(*s, single=single, left_shift=shift)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None


def tflite_add(a, b, *, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point,
               fmt: QFormat, activation: str = "none", scheme: str = "double",
               backend: str = "numba") -> tuple[np.ndarray, int]:
    """TFLite int8 / uint8 ``ADD`` (left shift 20) or TFLite Micro int16 ``ADD`` (left shift
    15, the general-scale path) of two same-shape code tensors.

    Raises
    ------
    FormatError
        ``fmt`` not an 8-bit or signed 16-bit integer, codes or zero points
        outside it (int16: not 0), different shapes, bad scales (see
        :func:`tflite_add_params`), unknown ``activation`` or ``scheme``.
    """
    where = "tflite_add"
    _int_format(fmt, where, bits=(8, 16))
    if fmt.bits == 16 and not fmt.signed:
        raise FormatError(f"{where}: TFLite's 16-bit ADD takes int16 codes, got {fmt}")
    single = _scheme(scheme, where)
    a, b = _in_format(a, "a", fmt, where), _in_format(b, "b", fmt, where)
    if a.shape != b.shape:
        raise FormatError(f"{where}: a and b must have the same shape, got {a.shape} and "
                          f"{b.shape}")
    z1 = _zero_point(a_zero_point, "a_zero_point", fmt, where)
    z2 = _zero_point(b_zero_point, "b_zero_point", fmt, where)
    zo = _zero_point(y_zero_point, "y_zero_point", fmt, where)
    if fmt.bits == 16 and (z1 or z2 or zo):
        raise FormatError(f"{where}: TFLite requires zero points 0 for int16, got "
                          f"a_zero_point={int(z1)}, b_zero_point={int(z2)}, "
                          f"y_zero_point={int(zo)}")
    params = tflite_add_params(a_scale, b_scale, y_scale, scheme=scheme, bits=fmt.bits)
    shift = spec.LEFT_SHIFT if fmt.bits == 8 else spec.LEFT_SHIFT_16
    lo, hi = _act_range(activation, y_scale, zo, fmt, where)
    if _backend(backend) == "numpy":
        return spec.add(a, b, int(z1), int(z2), int(zo), params, lo, hi, scheme, shift)
    from fxp.kernels.tflite import add_codes

    codes, n = add_codes(a.size, a.ravel(), b.ravel(), z1, z2, zo, *params, shift, single,
                         lo, hi)
    return codes.reshape(a.shape), int(n)


def tflite_avgpool(x, kernel, *, strides=(1, 1), pads=(0, 0, 0, 0), fmt: QFormat,
                   activation: str = "none", scale=None, zero_point: int = 0,
                   backend: str = "numba") -> tuple[np.ndarray, int]:
    """TFLite integer ``AVERAGE_POOL_2D`` (NCHW int8 / uint8 / int16 codes; input and output
    share scale / zp; the int16 kernel is the int8 one with int16 codes).

    ``pads`` are ``(top, left, bottom, right)``: padding is skipped, the
    divisor is the number of real pixels.  ``scale`` (and ``zero_point``) are
    needed only to place a fused activation's bounds.

    Raises
    ------
    FormatError
        Not NCHW, ``fmt`` not 8-bit or int16, codes outside it, a window with no
        real pixel (TFLite's kernel returns an error), a window too large for
        int32 sums, or an activation without ``scale``.
    """
    where = "tflite_avgpool"
    _int_format(fmt, where, bits=(8, 16))
    if fmt.bits == 16 and not fmt.signed:
        raise FormatError(f"{where}: TFLite's 16-bit AveragePool takes int16 codes, got {fmt}")
    x = _in_format(x, "x", fmt, where)
    if x.ndim != 4:
        raise FormatError(f"{where}: x must be NCHW (4 dimensions), got shape {x.shape}")
    (kh, kw), (sh, sw) = _ints(kernel, 2, "kernel", 1), _ints(strides, 2, "strides", 1)
    p = _ints(pads, 4, "pads (top, left, bottom, right)", 0)
    h, w = x.shape[2:]
    if h + p[0] + p[2] < kh or w + p[1] + p[3] < kw:
        raise FormatError(f"{where}: kernel {(kh, kw)} does not fit the padded input "
                          f"{(h + p[0] + p[2], w + p[1] + p[3])}")
    ho, wo = (h + p[0] + p[2] - kh) // sh + 1, (w + p[1] + p[3] - kw) // sw + 1
    for oy, ox in ((0, 0), (ho - 1, wo - 1)):  # the extreme windows; the others overlap more
        if min(oy * sh - p[0] + kh, h) <= max(oy * sh - p[0], 0) or \
                min(ox * sw - p[1] + kw, w) <= max(ox * sw - p[1], 0):
            raise FormatError(f"{where}: output ({oy}, {ox}) covers only padding (TFLite "
                              f"refuses such a window), pads={p} kernel={(kh, kw)}")
    if kh * kw * (1 << fmt.bits) > INT32_MAX:
        raise HeadroomError(f"{where}: a {kh}x{kw} window sum can leave int32")
    lo, hi = _act_range(activation, scale, zero_point, fmt, where)
    if _backend(backend) == "numpy":
        return spec.avgpool(x, (kh, kw), (sh, sw), p, lo, hi)
    from fxp.kernels.tflite import avgpool_codes

    codes, n = avgpool_codes(x.size * kh * kw, x, kh, kw, sh, sw, p[0], p[1], ho, wo, lo, hi)
    return codes, int(n)


def tflite_mean_hw(x, *, x_scale, x_zero_point, y_scale, y_zero_point, fmt: QFormat,
                   scheme: str = "double", backend: str = "numba") -> tuple[np.ndarray, int]:
    """TFLite Micro ``MEAN`` over H and W (int8 / int16, ``QuantizedMeanOrSum``: the
    ``1/(H*W)`` folded into the multiplier): ``[N, C, H, W] -> [N, C, 1, 1]``.

    Raises
    ------
    FormatError
        ``fmt`` not a signed 8- or 16-bit integer (uint8 takes a float path in
        TFLite), not NCHW, codes / zero points outside ``fmt`` (int16: not 0),
        bad scales or a ratio ``x_scale / y_scale`` whose multiplier shift
        leaves [-31, 31].
    HeadroomError
        ``H*W`` so large that ``sum(x - zp)`` could leave int32.
    """
    where = "tflite_mean_hw"
    _int_format(fmt, where, bits=(8, 16))
    if not fmt.signed:
        raise FormatError(f"{where}: TFLite's integer MEAN kernel takes int8 or int16 codes, "
                          f"got {fmt}")
    single = _scheme(scheme, where)
    shape = np.shape(x)
    if len(shape) != 4:
        raise FormatError(f"{where}: x must be NCHW (4 dimensions), got shape {shape}")
    size = int(shape[2]) * int(shape[3])
    if size * (fmt.max_code - fmt.min_code) > INT32_MAX:
        raise HeadroomError(f"{where}: the sum over {size} pixels can leave int32")
    x = _in_format(x, "x", fmt, where)
    zi = _zero_point(x_zero_point, "x_zero_point", fmt, where)
    zo = _zero_point(y_zero_point, "y_zero_point", fmt, where)
    if fmt.bits == 16 and (zi or zo):
        raise FormatError(f"{where}: TFLite requires zero points 0 for int16, got "
                          f"x_zero_point={int(zi)}, y_zero_point={int(zo)}")
    try:
        m, e = spec.mean_params(_scale(x_scale, "x_scale", where),
                                _scale(y_scale, "y_scale", where), size, single)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    if not -31 <= e <= (30 if single else 31):
        raise FormatError(f"{where}: x_scale / y_scale gives the multiplier shift {e}, "
                          "outside TFLite's range")
    if _backend(backend) == "numpy":
        return spec.mean_hw(x, int(zi), int(zo), m, e, fmt.min_code, fmt.max_code, scheme)
    from fxp.kernels.tflite import mean_hw_codes

    codes, n = mean_hw_codes(x.size, x, zi, zo, np.int64(m), np.int64(e), single, fmt.min_code,
                             fmt.max_code)
    return codes, int(n)
