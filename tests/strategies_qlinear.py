"""Hypothesis strategies for the onnxruntime QLinear / TFLite integer op tests.

Each strategy draws the *shape* of a case (format, geometry, scales, zero
points) before the codes, and biases every part toward what breaks rounding
code: scale ratios that are powers of two or small fractions (so many results
land exactly on .5 ties), equal scales, extreme codes (min, min+1, max-1, max,
the zero point), extreme zero points, and windows that overlap padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fxp.core.format import QFormat

INT8, UINT8 = QFormat.integer(8), QFormat.integer(8, signed=False)


def qformats():
    """int8 or uint8."""
    return st.sampled_from([INT8, UINT8])


def zero_points(fmt: QFormat):
    """A zero point of ``fmt``, often an extreme or the middle."""
    mid = (fmt.min_code + fmt.max_code + 1) // 2
    return st.one_of(st.sampled_from([fmt.min_code, fmt.min_code + 1, 0, mid, fmt.max_code - 1,
                                      fmt.max_code]), st.integers(fmt.min_code, fmt.max_code))


def _elements(fmt: QFormat, zp: int | None = None):
    special = [fmt.min_code, fmt.min_code + 1, fmt.max_code - 1, fmt.max_code]
    if zp is not None:
        special += [zp, min(zp + 1, fmt.max_code), max(zp - 1, fmt.min_code)]
    return st.one_of(st.sampled_from(special), st.integers(fmt.min_code, fmt.max_code))


def code_arrays(fmt: QFormat, shape, zp: int | None = None):
    """int64 codes of ``fmt`` with extremes (and the zero point) over-represented."""
    return hnp.arrays(np.int64, shape, elements=_elements(fmt, zp))


@st.composite
def scales(draw, lo_exp: int = -14, hi_exp: int = 2) -> np.float32:
    """A float32 scale: a dyadic ``m / 16 * 2**e`` (ties likely) or any float32 in range."""
    if draw(st.booleans()):
        return np.float32(draw(st.integers(1, 31)) / 16 * 2.0 ** draw(st.integers(lo_exp, hi_exp)))
    e = draw(st.floats(lo_exp, hi_exp))
    return np.float32(draw(st.floats(1.0, 2.0, exclude_max=True)) * 2.0 ** e)


@st.composite
def related_scale(draw, base: np.float32) -> np.float32:
    """A scale tied to ``base``: equal, ``base * 2**k``, ``base * m/8``, or unrelated."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return np.float32(base)
    if kind == 1:
        return np.float32(base * 2.0 ** draw(st.integers(-3, 3)))
    if kind == 2:
        return np.float32(base * draw(st.integers(1, 24)) / 8)
    return draw(scales())


@dataclass(frozen=True)
class BinaryCase:
    """Two code tensors (same shape, or one of a single element) with their ``(scale, zero
    point)`` and the output's."""

    fmt: QFormat
    a: np.ndarray
    b: np.ndarray
    sa: np.float32
    za: int
    sb: np.float32
    zb: int
    sy: np.float32
    zy: int

    def kwargs(self) -> dict:
        return {"a_scale": self.sa, "a_zero_point": self.za, "b_scale": self.sb,
                "b_zero_point": self.zb, "y_scale": self.sy, "y_zero_point": self.zy,
                "fmt": self.fmt}


@st.composite
def binary_cases(draw, max_size: int = 24) -> BinaryCase:
    """A residual-add case; the output scale often makes ``sa/sy``, ``sb/sy`` dyadic; one
    operand is sometimes a single element (broadcast)."""
    fmt = draw(qformats())
    sy = draw(scales(-12, 0))
    sa, sb = draw(related_scale(sy)), draw(related_scale(sy))
    za, zb, zy = draw(zero_points(fmt)), draw(zero_points(fmt)), draw(zero_points(fmt))
    shape = (draw(st.integers(1, max_size)),)
    kind = draw(st.integers(0, 5))  # 1 in 6: a one-element a; 1 in 6: a one-element b
    a_shape, b_shape = {0: ((1,), shape), 1: (shape, (1,))}.get(kind, (shape, shape))
    return BinaryCase(fmt, draw(code_arrays(fmt, a_shape, za)),
                      draw(code_arrays(fmt, b_shape, zb)), sa, za, sb, zb, sy, zy)


@dataclass(frozen=True)
class TableCase:
    """A lookup-table op case: codes, input / output quantization, LeakyRelu's alpha."""

    fmt: QFormat
    x: np.ndarray
    sx: np.float32
    zx: int
    sy: np.float32
    zy: int
    alpha: float

    def kwargs(self) -> dict:
        return {"x_scale": self.sx, "x_zero_point": self.zx, "y_scale": self.sy,
                "y_zero_point": self.zy, "fmt": self.fmt}


@st.composite
def table_cases(draw, max_size: int = 16) -> TableCase:
    """Sigmoid outputs sit in [0, 1]: ``y_scale`` is often 1/256 or 1/128 (the quantizer's
    choice), giving exact ties in the table; inputs reach the logistic's +-18 clamp."""
    fmt = draw(qformats())
    sx = draw(scales(-8, 0))
    sy = draw(st.one_of(st.sampled_from([np.float32(1 / 256), np.float32(1 / 128)]),
                        related_scale(sx)))
    alpha = draw(st.one_of(st.sampled_from([0.01, 0.1, 0.2, 0.5, 0.0, 1.0]),
                           st.floats(-2.0, 2.0, width=32)))
    zx = draw(zero_points(fmt))
    x = draw(code_arrays(fmt, (draw(st.integers(1, max_size)),), zx))
    return TableCase(fmt, x, sx, zx, sy, draw(zero_points(fmt)), float(alpha))


@dataclass(frozen=True)
class PoolCase:
    """An NCHW pooling case with its window geometry and quantization."""

    fmt: QFormat
    x: np.ndarray
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    include_pad: bool
    sx: np.float32
    zx: int
    sy: np.float32
    zy: int

    def quant(self) -> dict:
        return {"x_scale": self.sx, "x_zero_point": self.zx, "y_scale": self.sy,
                "y_zero_point": self.zy, "fmt": self.fmt}


@st.composite
def pool_cases(draw, pad_below_kernel: bool = True, whole_image: bool = True) -> PoolCase:
    """Windows up to 3x3, strides 1..3, pads (each below the kernel when
    ``pad_below_kernel``, onnxruntime's rule); sometimes the kernel covers the whole
    unpadded image (onnxruntime's global fallback).  ``y_scale`` is tied to
    ``x_scale`` so the window means hit .5 and .25 ties."""
    fmt = draw(qformats())
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    cap = (kh - 1, kw - 1) if pad_below_kernel else (kh, kw)
    pads = (draw(st.integers(0, cap[0])), draw(st.integers(0, cap[1])),
            draw(st.integers(0, cap[0])), draw(st.integers(0, cap[1])))
    h = draw(st.integers(max(1, kh - pads[0] - pads[2]), kh + 3))
    w = draw(st.integers(max(1, kw - pads[1] - pads[3]), kw + 3))
    if whole_image and draw(st.integers(0, 5)) == 0:
        kh, kw, pads = h, w, (0, 0, 0, 0)
    sx = draw(scales(-10, 0))
    zx = draw(zero_points(fmt))
    x = draw(code_arrays(fmt, (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w), zx))
    return PoolCase(fmt, x, (kh, kw), strides, pads, draw(st.booleans()), sx, zx,
                    draw(related_scale(sx)), draw(zero_points(fmt)))


def activations():
    """A TFLite fused activation."""
    return st.sampled_from(["none", "relu", "relu6", "relu_n1_to_1"])


def schemes():
    """TFLite's requantization rounding: default (double) or TFLITE_SINGLE_ROUNDING."""
    return st.sampled_from(["double", "single"])
