"""onnxruntime's quantized element-wise ops on int8/uint8 codes: the validated entry points.

Convention followed: onnxruntime 1.32's CPU execution provider on x86-64
(MLAS with AVX2/FMA3), as documented operation by operation in
:mod:`fxp.kernels.spec_qlinear` (sources cited there) -- ``QLinearAdd``
(also what a ``DequantizeLinear -> Add -> QuantizeLinear`` pattern becomes at
onnxruntime's default graph optimization level), the unfused QDQ Add (levels
below ``ORT_ENABLE_EXTENDED``), ``QLinearMul`` (and its unfused QDQ form),
``QLinearSigmoid``, ``QLinearLeakyRelu`` and ``QLinearConcat``.  Average pools are in :mod:`fxp.ops.qlinear_pool`.

Every function checks its arguments (8-bit integer format, codes inside it,
finite positive float32 scales, zero points inside the format), then runs the
Numba kernel of :mod:`fxp.kernels.qlinear` (``backend="numba"``) or the numpy
specification (``backend="numpy"``); both give the same integers.  Each
returns ``(codes, n_saturated)``: the number of output elements the clamp to
the format changed.

>>> import numpy as np
>>> from fxp.core.format import QFormat
>>> qlinear_add([10, -3], [5, 7], a_scale=0.02, a_zero_point=0, b_scale=0.02,
...             b_zero_point=0, y_scale=0.04, y_zero_point=0, fmt=QFormat.integer(8))
(array([8, 2]), 0)
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError
from fxp.kernels import spec_qlinear as spec
from fxp.ops._checks import _backend, _codes

__all__ = [
    "TABLE_OPS", "qdq_add", "qdq_mul", "qlinear_add", "qlinear_concat", "qlinear_leaky_relu",
    "qlinear_lookup", "qlinear_mul", "qlinear_sigmoid", "qlinear_table",
]

TABLE_OPS = ("requant", "sigmoid", "leaky_relu")
"""Lookup tables :func:`qlinear_table` builds: identity (Concat rescaling), Sigmoid, LeakyRelu."""


# --------------------------------------------------------------------------- argument checks
def _qtype(fmt, where: str) -> tuple[bool, int, int]:
    """``(signed, lo, hi)`` of an int8 / uint8 format."""
    if not isinstance(fmt, QFormat) or fmt.bits != 8 or fmt.frac_bits != 0:
        raise FormatError(f"{where}: onnxruntime QLinear ops take int8 or uint8 codes; fmt must "
                          f"be QFormat.integer(8) or QFormat.integer(8, signed=False), got "
                          f"{fmt!r:.200}")
    return fmt.signed, fmt.min_code, fmt.max_code


def _scale(v, name: str, where: str) -> np.float32:
    """A scalar scale as onnxruntime reads it: one float32, finite and > 0."""
    a = np.asarray(v)
    if a.size != 1 or a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise FormatError(f"{where}: {name} must be one real number, got {v!r:.200}")
    with np.errstate(over="ignore"):
        s = np.float32(a.reshape(()))
    if not np.isfinite(s) or s <= 0:
        raise FormatError(f"{where}: {name} must be finite and > 0 in float32, got {v!r:.200}")
    return s


def _zero_point(v, name: str, fmt: QFormat, where: str) -> np.int64:
    a = np.asarray(v)
    if a.size != 1 or a.dtype.kind not in "iu":
        raise FormatError(f"{where}: {name} must be one integer, got {v!r:.200}")
    z = int(a.reshape(()))
    if not fmt.contains_code(z):
        raise FormatError(f"{where}: {name}={z} is outside {fmt} [{fmt.min_code}, "
                          f"{fmt.max_code}]")
    return np.int64(z)


def _in_format(x, name: str, fmt: QFormat, where: str) -> np.ndarray:
    try:
        a = _codes(x, name)
    except (FormatError, HeadroomError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    try:
        intmath._check_in_format(a, fmt)
    except FormatError as exc:
        raise FormatError(f"{where}: {name}: {exc}") from None
    return a


def _binary(a, b, fmt, where, scales_zps, broadcast: bool = False):
    _, lo, hi = _qtype(fmt, where)
    a = _in_format(a, "a", fmt, where)
    b = _in_format(b, "b", fmt, where)
    if broadcast:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise FormatError(f"{where}: shapes {a.shape} and {b.shape} do not broadcast "
                              f"(numpy rules)") from None
    elif a.shape != b.shape and a.size != 1 and b.size != 1:
        raise FormatError(f"{where}: a and b must have the same shape or one of them a single "
                          f"element (other broadcasts are not reproduced), got {a.shape} and "
                          f"{b.shape}")
    shape = np.broadcast_shapes(a.shape, b.shape)
    (sa, za), (sb, zb), (sy, zy) = [
        (_scale(s, f"{n}_scale", where), _zero_point(z, f"{n}_zero_point", fmt, where))
        for n, (s, z) in zip("aby", scales_zps, strict=True)]
    return a, b, shape, sa, za, sb, zb, sy, zy, lo, hi


def _flat(x: np.ndarray, shape) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(x, shape)).ravel()


# --------------------------------------------------------------------------- residual add
def qlinear_add(a, b, *, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point,
                fmt: QFormat, backend: str = "numba") -> tuple[np.ndarray, int]:
    """onnxruntime ``QLinearAdd`` (com.microsoft) of two same-shape code tensors (or one of
    them a single element, broadcast).

    ``rA = sA/sC``, ``rB = sB/sC`` and ``fixed = zC - fma(rA, zA, rB*zB)`` in
    float32; per element ``cvt(fma(a, rA, fma(b, rB, fixed)))`` rounded half to
    even, saturated to ``fmt`` (:mod:`fxp.kernels.spec_qlinear`, steps 1-5: a
    one-element ``a`` swaps the roles of the operands, as onnxruntime does).

    Raises
    ------
    FormatError
        ``fmt`` not int8/uint8, codes or zero points outside it, shapes that
        differ with neither operand a single element, a scale that is not a
        finite positive float32, or scale ratios that overflow float32.
    """
    where = "qlinear_add"
    a, b, shape, sa, za, sb, zb, sy, zy, lo, hi = _binary(
        a, b, fmt, where, ((a_scale, a_zero_point), (b_scale, b_zero_point),
                           (y_scale, y_zero_point)))
    ra, rb, fixed = spec.qlinear_add_fixed(sa, int(za), sb, int(zb), sy, int(zy))
    if not (np.isfinite(ra) and np.isfinite(rb) and np.isfinite(fixed)):
        raise FormatError(f"{where}: the scale ratios a_scale/y_scale={ra!r} and "
                          f"b_scale/y_scale={rb!r} must be finite in float32")
    if _backend(backend) == "numpy":
        return spec.qlinear_add(a, b, sa, int(za), sb, int(zb), sy, int(zy), lo, hi)
    from fxp.kernels.qlinear import add_fixed, qlinear_add_codes

    if a.size == 1:  # onnxruntime swaps the operands when input A is a scalar
        a, b, sa, za, sb, zb = b, a, sb, zb, sa, za
    ra, rb, fixed = add_fixed(sa, za, sb, zb, sy, zy)
    codes, n = qlinear_add_codes(int(np.prod(shape)), _flat(a, shape), _flat(b, shape), ra, rb,
                                 fixed, lo, hi)
    return codes.reshape(shape), int(n)


def qdq_add(a, b, *, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point,
            fmt: QFormat, backend: str = "numba") -> tuple[np.ndarray, int]:
    """Unfused ``DequantizeLinear`` x2 -> float ``Add`` -> ``QuantizeLinear`` (onnxruntime
    with graph optimizations below ``ORT_ENABLE_EXTENDED``; the default level fuses the
    pattern into :func:`qlinear_add`).

    ``quantize(float32(float32(a - zA) * sA + float32(b - zB) * sB))`` with MLAS
    QuantizeLinear (float32 divide, half to even, saturate).  Raises as
    :func:`qlinear_add`.
    """
    where = "qdq_add"
    a, b, shape, sa, za, sb, zb, sy, zy, lo, hi = _binary(
        a, b, fmt, where, ((a_scale, a_zero_point), (b_scale, b_zero_point),
                           (y_scale, y_zero_point)))
    if _backend(backend) == "numpy":
        return spec.qdq_add(a, b, sa, int(za), sb, int(zb), sy, int(zy), lo, hi)
    from fxp.kernels.qlinear import qdq_binary_codes

    codes, n = qdq_binary_codes(int(np.prod(shape)), _flat(a, shape), _flat(b, shape), False, sa,
                                za, sb, zb, sy, zy, lo, hi)
    return codes.reshape(shape), int(n)


# --------------------------------------------------------------------------- multiply
def qlinear_mul(a, b, *, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point,
                fmt: QFormat, backend: str = "numba") -> tuple[np.ndarray, int]:
    """onnxruntime ``QLinearMul`` (com.microsoft), numpy broadcasting.

    ``ratio = float32(float32(sA*sB) / sC)``; per element the exact product
    ``(a - zA) * (b - zB)`` converted to float32, ``float32(p * ratio)``,
    ``float32(. + zC)``, rounded half to even and saturated to ``fmt``
    (:mod:`fxp.kernels.spec_qlinear`; the formula is symmetric, so onnxruntime's
    operand swap for a one-element ``a`` changes nothing).

    Raises
    ------
    FormatError
        ``fmt`` not int8/uint8, codes or zero points outside it, shapes that do
        not broadcast, a scale that is not a finite positive float32, or a ratio
        ``sA*sB/sC`` that is not finite and > 0 in float32.
    """
    where = "qlinear_mul"
    a, b, shape, sa, za, sb, zb, sy, zy, lo, hi = _binary(
        a, b, fmt, where, ((a_scale, a_zero_point), (b_scale, b_zero_point),
                           (y_scale, y_zero_point)), broadcast=True)
    ratio = spec.qlinear_mul_ratio(sa, sb, sy)
    if not (np.isfinite(ratio) and ratio > 0):
        raise FormatError(f"{where}: the scale ratio a_scale*b_scale/y_scale={ratio!r} must be "
                          f"finite and > 0 in float32")
    if _backend(backend) == "numpy":
        return spec.qlinear_mul(a, b, sa, int(za), sb, int(zb), sy, int(zy), lo, hi)
    from fxp.kernels.qlinear import qlinear_mul_codes

    codes, n = qlinear_mul_codes(int(np.prod(shape)), _flat(a, shape), _flat(b, shape), za, zb,
                                 ratio, zy, lo, hi)
    return codes.reshape(shape), int(n)


def qdq_mul(a, b, *, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point,
            fmt: QFormat, backend: str = "numba") -> tuple[np.ndarray, int]:
    """Unfused ``DequantizeLinear`` x2 -> float ``Mul`` -> ``QuantizeLinear`` (levels below
    ``ORT_ENABLE_EXTENDED``; the default level fuses it into :func:`qlinear_mul`), numpy
    broadcasting.  Raises as :func:`qlinear_mul` (a non-finite ratio is allowed: the float
    island saturates)."""
    where = "qdq_mul"
    a, b, shape, sa, za, sb, zb, sy, zy, lo, hi = _binary(
        a, b, fmt, where, ((a_scale, a_zero_point), (b_scale, b_zero_point),
                           (y_scale, y_zero_point)), broadcast=True)
    if _backend(backend) == "numpy":
        return spec.qdq_mul(a, b, sa, int(za), sb, int(zb), sy, int(zy), lo, hi)
    from fxp.kernels.qlinear import qdq_binary_codes

    codes, n = qdq_binary_codes(int(np.prod(shape)), _flat(a, shape), _flat(b, shape), True, sa,
                                za, sb, zb, sy, zy, lo, hi)
    return codes.reshape(shape), int(n)


# --------------------------------------------------------------------------- lookup tables
def qlinear_table(op: str, *, x_scale, x_zero_point, y_scale, y_zero_point, fmt: QFormat,
                  alpha: float | None = None, backend: str = "numba"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The 256-entry table onnxruntime builds (``QlinearBuildLookupTable``).

    ``op``: ``"sigmoid"`` (MLAS FMA3 logistic), ``"leaky_relu"`` (needs
    ``alpha``) or ``"requant"`` (identity: QLinearConcat's input rescaling).
    Returns ``(codes int64[256], saturated bool[256])`` indexed by the input
    code's byte (two's complement for int8); precompute it once per layer and
    apply it with :func:`qlinear_lookup`.

    Raises
    ------
    FormatError
        Unknown ``op``, ``alpha`` missing / not finite for ``leaky_relu`` (or
        given for another op), bad format, scale or zero point.
    """
    where = f"qlinear_table({op!r:.40})"
    if op not in TABLE_OPS:
        raise FormatError(f"qlinear_table: unknown op {op!r:.40}; use one of {TABLE_OPS}")
    signed, lo, hi = _qtype(fmt, where)
    sx = _scale(x_scale, "x_scale", where)
    zx = _zero_point(x_zero_point, "x_zero_point", fmt, where)
    sy = _scale(y_scale, "y_scale", where)
    zy = _zero_point(y_zero_point, "y_zero_point", fmt, where)
    if (op == "leaky_relu") != (alpha is not None):
        raise FormatError(f"{where}: alpha is required for leaky_relu and only for it, got "
                          f"alpha={alpha!r:.40}")
    a32 = np.float32(0.0)
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
            raise FormatError(f"{where}: alpha must be a real number, got {alpha!r:.40}")
        with np.errstate(over="ignore"):
            a32 = np.float32(alpha)
        if not np.isfinite(a32):
            raise FormatError(f"{where}: alpha must be finite in float32, got {alpha!r:.40}")
    if _backend(backend) == "numpy":
        args = (sx, int(zx), sy, int(zy), signed, lo, hi)
        if op == "sigmoid":
            return spec.sigmoid_table(*args)
        if op == "leaky_relu":
            return spec.leaky_relu_table(a32, *args)
        return spec.requant_table(*args)
    from fxp.kernels.qlinear import build_table

    return build_table(TABLE_OPS.index(op), a32, sx, zx, sy, zy, signed, lo, hi)


def qlinear_lookup(x, table, saturated, fmt: QFormat, *, backend: str = "numba"
                   ) -> tuple[np.ndarray, int]:
    """``table[byte(x)]`` for codes ``x`` of ``fmt``; ``(codes, n_saturated)``.

    Raises
    ------
    FormatError
        ``table`` / ``saturated`` not 256 entries, table codes outside ``fmt``,
        or ``x`` outside ``fmt``.
    """
    where = "qlinear_lookup"
    _qtype(fmt, where)
    x = _in_format(x, "x", fmt, where)
    t = _in_format(table, "table", fmt, where).ravel()
    s = np.ascontiguousarray(np.asarray(saturated)).ravel()
    if t.shape != (256,) or s.shape != (256,) or s.dtype != np.bool_:
        raise FormatError(f"{where}: table must hold 256 codes and saturated 256 booleans, got "
                          f"shapes {np.shape(table)} and {np.shape(saturated)} "
                          f"(dtype {s.dtype})")
    if _backend(backend) == "numpy":
        return spec.lookup(x, t, s)
    from fxp.kernels.qlinear import lookup_codes

    codes, n = lookup_codes(x.size, x.ravel(), t, s)
    return codes.reshape(x.shape), int(n)


def qlinear_sigmoid(x, *, x_scale, x_zero_point, y_scale, y_zero_point, fmt: QFormat,
                    backend: str = "numba") -> tuple[np.ndarray, int]:
    """onnxruntime ``QLinearSigmoid``: the ``"sigmoid"`` :func:`qlinear_table`, looked up."""
    table = qlinear_table("sigmoid", x_scale=x_scale, x_zero_point=x_zero_point,
                          y_scale=y_scale, y_zero_point=y_zero_point, fmt=fmt, backend=backend)
    return qlinear_lookup(x, *table, fmt, backend=backend)


def qlinear_leaky_relu(x, *, alpha: float = 0.01, x_scale, x_zero_point, y_scale, y_zero_point,
                       fmt: QFormat, backend: str = "numba") -> tuple[np.ndarray, int]:
    """onnxruntime ``QLinearLeakyRelu`` (``alpha`` default 0.01 as the op's attribute)."""
    table = qlinear_table("leaky_relu", alpha=alpha, x_scale=x_scale, x_zero_point=x_zero_point,
                          y_scale=y_scale, y_zero_point=y_zero_point, fmt=fmt, backend=backend)
    return qlinear_lookup(x, *table, fmt, backend=backend)


def qlinear_concat(xs, *, scales, zero_points, y_scale, y_zero_point, axis: int,
                   fmt: QFormat, backend: str = "numba") -> tuple[np.ndarray, int]:
    """onnxruntime ``QLinearConcat``: inputs with their own ``(scale, zero_point)``.

    An input whose float32 scale and zero point equal the output's is copied;
    any other is mapped through its ``"requant"`` table.  Shapes must agree
    except along ``axis`` (negative counts from the end).

    Raises
    ------
    FormatError
        No inputs, list lengths that differ, ranks or shapes that do not
        concatenate, ``axis`` out of range, or a bad format / scale / zero point.
    """
    where = "qlinear_concat"
    signed, lo, hi = _qtype(fmt, where)
    xs = [_in_format(x, f"xs[{i}]", fmt, where) for i, x in enumerate(xs)]
    scales, zero_points = list(scales), list(zero_points)
    if not xs or len(scales) != len(xs) or len(zero_points) != len(xs):
        raise FormatError(f"{where}: need >= 1 input and one scale and zero point each, got "
                          f"{len(xs)} inputs, {len(scales)} scales, {len(zero_points)} zero points")
    ndim = xs[0].ndim
    if not -ndim <= int(axis) < ndim:
        raise FormatError(f"{where}: axis={axis} is out of range for rank {ndim}")
    ax = int(axis) % ndim
    for i, x in enumerate(xs):
        if x.ndim != ndim or x.shape[:ax] + x.shape[ax + 1:] != xs[0].shape[:ax] + \
                xs[0].shape[ax + 1:]:
            raise FormatError(f"{where}: xs[{i}] has shape {x.shape}, which does not "
                              f"concatenate with {xs[0].shape} along axis {ax}")
    sy = _scale(y_scale, "y_scale", where)
    zy = _zero_point(y_zero_point, "y_zero_point", fmt, where)
    ss = [_scale(s, f"scales[{i}]", where) for i, s in enumerate(scales)]
    zs = [_zero_point(z, f"zero_points[{i}]", fmt, where) for i, z in enumerate(zero_points)]
    if _backend(backend) == "numpy":
        return spec.qlinear_concat(xs, ss, [int(z) for z in zs], sy, int(zy), ax, signed, lo, hi)
    from fxp.kernels.qlinear import TABLE_REQUANT, build_table, lookup_codes

    parts, n = [], 0
    for x, si, zi in zip(xs, ss, zs, strict=True):
        if si == sy and zi == zy:  # onnxruntime's LOOKUP_TABLE_IS_COPY
            parts.append(x)
            continue
        table, sat = build_table(TABLE_REQUANT, np.float32(0), si, zi, sy, zy, signed, lo, hi)
        codes, k = lookup_codes(x.size, x.ravel(), table, sat)
        parts.append(codes.reshape(x.shape))
        n += int(k)
    return np.concatenate(parts, axis=ax), n
