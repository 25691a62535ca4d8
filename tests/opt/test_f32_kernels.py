"""The fake-quant passes' float32 convolution (:func:`fxp.opt.f32_kernels.conv_f32`) against
the definition of :class:`fxp.ir.nodes.Conv2D`, summed here in float64."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.ir.nodes import Conv2D
from fxp.opt.f32_kernels import GROUPED_MAX_CHANNELS, conv_f32


def conv_definition(x, w, bias, strides, pads, dilations, groups):
    """``y[n, o, i, j] = bias[o] + sum_{c, p, q} w[o, c, p, q] xpad[n, g cg + c, i sh + p dh,
    j sw + q dw]`` (float64), and the same sum of absolute products (the rounding scale)."""
    top, left, bottom, right = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    cout, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((x.shape[0], cout, oh, ow))
    mag = np.zeros_like(y)
    per = cout // groups
    for o in range(cout):
        gi = o // per
        for c in range(cg):
            for p in range(kh):
                for q in range(kw):
                    v = xp[:, gi * cg + c, p * dh:p * dh + sh * (oh - 1) + 1:sh,
                           q * dw:q * dw + sw * (ow - 1) + 1:sw]
                    y[:, o] += float(w[o, c, p, q]) * v
                    mag[:, o] += abs(float(w[o, c, p, q])) * np.abs(v)
    if bias is not None:
        y += bias.astype(np.float64)[None, :, None, None]
        mag += np.abs(bias.astype(np.float64))[None, :, None, None]
    return y, mag


@st.composite
def convs(draw):
    groups = draw(st.sampled_from([1, 2, 3, 4]))
    cg = draw(st.integers(1, GROUPED_MAX_CHANNELS + 2))  # both sides of the grouped path
    per = draw(st.integers(1, 3))  # outputs per group (depthwise multiplier)
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers((kh - 1) * dilations[0] + 1, 9))
    wd = draw(st.integers((kw - 1) * dilations[1] + 1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.normal(size=(draw(st.integers(1, 3)), groups * cg, h, wd)).astype(np.float32)
    w = rng.normal(size=(groups * per, cg, kh, kw)).astype(np.float32)
    bias = rng.normal(size=groups * per).astype(np.float32) if draw(st.booleans()) else None
    return x, w, bias, strides, pads, dilations, groups


@settings(max_examples=150, deadline=None)
@given(convs())
def test_conv_f32_equals_the_definition(case):
    """Within float32 rounding of the sum of absolute products, for plain, grouped and
    depthwise convolutions (either kernel path), any stride, dilation and padding."""
    x, w, bias, strides, pads, dilations, groups = case
    node = Conv2D(name="c", inputs=("x",), outputs=("y",), weight=w, bias=bias,
                  strides=strides, pads=pads, dilations=dilations, groups=groups)
    got = conv_f32(node, x, w)
    want, mag = conv_definition(x, w, bias, strides, pads, dilations, groups)
    assert got.dtype == np.float32 and got.shape == want.shape
    terms = w.shape[1] * w.shape[2] * w.shape[3] + 1
    assert np.all(np.abs(got - want) <= 2 * terms * 2.0**-24 * mag + 1e-30)
