"""The AVX-512 VNNI kernels (``fxp.kernels.vnni``) equal Python's integers and their numpy
statements (issue 17).

* the GEMM's int32 sums equal exact Python-int dot products, at the extremes of uint8 x int8
  and at every shape remainder (rows past a multiple of 4, columns past 16/32, ``K`` past a
  multiple of 4), in both builds;
* the fused convolutions (:mod:`fxp.kernels.vnni_conv`: im2col rows, implicit GEMM;
  :mod:`fxp.kernels.vnni_runs`: implicit GEMM on a padded copy) equal the statement chain
  ``im2col(x + offset, pad=offset) -> gemm_u8s8 -> requant_rows`` with the bias ``bias -
  offset * sum_k w``, on int64 and (where ``narrow_ok``) int32 requantization lanes; the
  bias identity is checked against Python ints on the unshifted codes;
* the int32 requantization equals the int64 statement up to the edge of its proof, and
  the padded copy equals ``numpy.pad``.

Skipped where the CPU lacks AVX-512 VNNI (the engine then keeps the float32 path).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.kernels import spec_fast_layers as spec
from fxp.kernels import vnni, vnni_conv, vnni_runs
from fxp.kernels.fast_layers import rounding_offsets
from tests import oracles

pytestmark = pytest.mark.skipif(not vnni.available(), reason="the CPU has no AVX-512 VNNI")

MODES = ["floor", "ceil", "to_zero", "away", "half_up", "half_down", "half_to_zero",
         "half_away", "half_even"]
OVERFLOWS = ["wrap", "saturate", "saturate_symmetric", "saturate_zero"]
BUILDS = [0, 1 << 40]  # work sizes that pick the serial / the parallel build


def _gemm(a: np.ndarray, b: np.ndarray, build: int) -> np.ndarray:
    """``a @ b`` through :func:`vnni.gemm_u8s8` on the padded layout (junk in the padding)."""
    m, k = a.shape
    nv = vnni.panel_width(b.shape[1])
    bp = vnni.pack_weights(b, nv)
    rows = -(-m // vnni.MR) * vnni.MR
    ap = np.full((rows, 4 * bp.shape[1]), 0xA5, np.uint8)  # junk past K and past M
    ap[:m, :k] = a
    c = np.empty((rows, bp.shape[0] * bp.shape[2]), np.int32)
    vnni.gemm_u8s8(build, ap, bp, c)
    return c[:m, :b.shape[1]]


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 13), k=st.integers(1, 40),
       n=st.integers(1, 40), extreme=st.booleans(), build=st.sampled_from(BUILDS))
def test_gemm_equals_python_integer_dot_products(seed, m, k, n, extreme, build):
    rng = np.random.default_rng(seed)
    if extreme:  # the largest |products|: 255 * -128 everywhere
        a = rng.choice(np.array([0, 255], np.uint8), (m, k))
        b = rng.choice(np.array([-128, 127], np.int8), (k, n))
    else:
        a = rng.integers(0, 256, (m, k)).astype(np.uint8)
        b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    got = _gemm(a, b, build)
    for i in range(m):
        for j in range(n):
            assert int(got[i, j]) == sum(int(a[i, q]) * int(b[q, j]) for q in range(k))
    assert np.array_equal(got, spec.gemm_u8s8(a, b))


def test_gemm_holds_the_largest_sums_that_fit_int32():
    """Long sums of the extreme products: 4,096 x 255 * 127 and 4,096 x 255 * -128."""
    k = 4096
    a = np.full((4, k), 255, np.uint8)
    b = np.stack([np.full(k, 127, np.int8), np.full(k, -128, np.int8)], axis=1)
    assert _gemm(a, b, 0).tolist() == [[255 * 127 * k, -255 * 128 * k]] * 4


def test_pack_weights_places_each_weight():
    b = np.arange(-60, 60, dtype=np.int8).reshape(6, 20)
    bp = vnni.pack_weights(b, 2)
    assert bp.shape == (1, 2, 32, 4)
    for q in range(6):
        for j in range(32):
            want = int(b[q, j]) if j < 20 else 0
            assert int(bp[0, q // 4, j, q % 4]) == want
    assert not bp[0, 1, :, 2:].any()  # rows past K are zero


@st.composite
def convs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = draw(st.sampled_from([1, 3, 4, 8]))
    co = draw(st.sampled_from([1, 5, 16, 17, 33]))
    k = draw(st.integers(1, 3))
    s, d = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    h, w = draw(st.integers(k * d, 7)), draw(st.integers(k * d, 6))
    n = draw(st.integers(1, 3))
    offset = draw(st.sampled_from([0, 128]))
    x = rng.integers(-offset, 256 - offset, (n, h, w, c))  # the layer's codes
    wt = rng.integers(-128, 128, (k * k * c, co))  # rows in (ky, kx, c) order
    bias = rng.integers(-(1 << 18), 1 << 18, co)
    return x, wt, bias, offset, (k, k, s, s, *pads, d, d)


def _out_hw(x, geo):
    kh, kw, sh, sw, t, left, dh, dw = geo
    return ((x.shape[1] + 2 * t - ((kh - 1) * dh + 1)) // sh + 1,
            (x.shape[2] + 2 * left - ((kw - 1) * dw + 1)) // sw + 1)


@settings(max_examples=200, deadline=None)
@given(cv=convs(), shift=st.integers(0, 14), mode=st.sampled_from(MODES),
       ovf=st.sampled_from(OVERFLOWS), bits=st.integers(2, 9), relu=st.booleans(),
       narrow=st.booleans(), build=st.sampled_from(BUILDS))
def test_fused_convolutions_equal_the_statement_chain(cv, shift, mode, ovf, bits, relu, narrow,
                                                      build):
    x, wt, bias, offset, geo = cv
    kh, kw, sh, sw, t, left, dh, dw = geo
    ho, wo = _out_hw(x, geo)
    n, h, w, c = x.shape
    co = wt.shape[1]
    stored = (x + offset).astype(np.uint8)
    cols = spec.im2col_rows(stored, kh, kw, (sh, sw), (t, left, t, left), (dh, dw), 1,
                            pad=offset, dtype=np.uint8)
    sums = spec.gemm_u8s8(cols, wt.astype(np.int8))
    eff = bias - offset * wt.sum(axis=0)
    # the offset identity on Python ints, for the first pixel's outputs
    for j in range(co):
        direct = sum(int(x[0, iy, ix, ci]) * int(wt[(ky * kw + kx) * c + ci, j])
                     for ky in range(kh) for kx in range(kw) for ci in range(c)
                     for iy, ix in [(ky * dh - t, kx * dw - left)]
                     if 0 <= iy < h and 0 <= ix < w)
        assert int(sums[0, j]) + int(eff[j]) == direct + int(bias[j])
    fmt = QFormat(bits, bits, True)
    lo = 0 if relu else -(1 << 63)
    want, changed = spec.requant_rows(sums[None], eff, shift, mode, lo, (1 << 63) - 1, fmt, ovf)
    lo_o, hi_o = oracles.bounds(fmt, ovf)
    top = int(np.abs(sums.astype(np.int64) + eff).max())  # the int32 lanes' proof, on the data
    narrow = narrow and vnni_conv.narrow_ok(top, eff, shift, bits)
    rq = (shift, *(rounding_offsets(shift, MODES.index(mode)) if shift > 0 else (0, 0, 0)), lo,
          (1 << 63) - 1, lo_o, hi_o, bits, OVERFLOWS.index(ovf), narrow, 3)  # 3 workers
    bp = vnni.pack_weights(wt.astype(np.int8), vnni.panel_width(co))
    y = np.empty((n * ho * wo, co), np.int16)
    got = vnni_conv.conv_rows_vnni(build, x.reshape(n * h, w * c).astype(np.int16), h, c, bp, eff,
                              y, offset, *geo, ho, wo, *rq)  # the layer's codes, unshifted
    assert np.array_equal(y, want) and got == changed
    if dw == 1:  # the runs of a padded copy
        hp, wp = h + 2 * t, w + 2 * left
        xp = np.full(n * hp * wp * c + vnni_runs.SLACK, 77, np.uint8)
        bpr = vnni.pack_weights(vnni_runs.run_weights(wt, kh).astype(np.int8),
                                vnni.panel_width(co))
        y3 = np.full_like(y, 99)
        got3 = vnni_runs.conv_runs_vnni(build, x.astype(np.int16), xp, np.zeros(4, np.uint8),
                                        offset, hp, wp, t, left, bpr, eff, y3, kh, sh, sw, dh, ho,
                                        wo, *rq)
        assert np.array_equal(y3, want) and got3 == changed
    if c % 4 == 0:
        y2 = np.full_like(y, 99)
        got2 = vnni_conv.conv_taps_vnni(build, stored.reshape(-1), np.full(c, offset, np.uint8),
                                        h, w, bp, eff, y2, *geo, ho, wo, *rq)
        assert np.array_equal(y2, want) and got2 == changed


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=st.tuples(*[st.integers(1, 5)] * 4),
       pads=st.tuples(*[st.integers(0, 2)] * 4), offset=st.sampled_from([0, 128]),
       transposed=st.booleans(), build=st.sampled_from(BUILDS))
def test_pad_stored_equals_numpy_pad(seed, shape, pads, offset, transposed, build):
    rng = np.random.default_rng(seed)
    x = rng.integers(-offset, 256 - offset, shape)  # the layer's codes, int64
    if transposed:  # an NCHW array's channels-last view, as the executor passes it
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    t, left, b, r = pads
    n, h, w, c = shape
    hp, wp = h + t + b, w + left + r
    xp = np.full(n * hp * wp * c + vnni_runs.SLACK, 55, np.uint8)
    vnni_runs.pad_stored(build, x, xp, offset, hp, wp, t, left)
    want = np.pad(x + offset, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=offset)
    assert np.array_equal(xp[:-vnni_runs.SLACK].reshape(want.shape), want)
    assert not xp[-vnni_runs.SLACK:].any()


I32_MAX = (1 << 31) - 1


@settings(max_examples=300, deadline=None)
@given(data=st.data(), shift=st.integers(0, 30), mode=st.sampled_from(MODES),
       ovf=st.sampled_from(OVERFLOWS), bits=st.integers(2, 16),
       bounds=st.tuples(st.integers(-(1 << 40), 0), st.integers(0, 1 << 40)))
def test_int32_requantization_is_exact_to_the_edge_of_its_proof(data, shift, mode, ovf, bits,
                                                                 bounds):
    """``_requant_run32`` against the int64 statement at accumulators up to ``2**31 - 1 -
    2**shift`` in magnitude, split into int32 sums and biases that themselves reach the
    int32 limits (their int32 sum wraps back onto the accumulator)."""
    top = I32_MAX - (1 << shift)
    accs = data.draw(st.lists(st.integers(-top, top), min_size=1, max_size=40))
    src, bias = [], []
    for a in accs:  # a = src + bias, both int32
        v = data.draw(st.integers(max(-(1 << 31), a - I32_MAX), min(I32_MAX, a + (1 << 31))))
        src.append(v)
        bias.append(a - v)
    assert vnni_conv.narrow_ok(top, bias, shift, bits)
    lo, hi = bounds
    fmt = QFormat(bits, bits, True)
    want, changed = spec.requant_rows(np.array(accs, np.int64)[None, None, :].reshape(1, -1, 1),
                                      np.zeros(1, np.int64), shift, mode, lo, hi, fmt, ovf)
    lo_o, hi_o = oracles.bounds(fmt, ovf)
    offs = rounding_offsets(shift, MODES.index(mode)) if shift > 0 else (0, 0, 0)
    dst = np.empty(len(accs), np.int16)
    got = vnni_conv._requant_run32(np.array(src, np.int32), np.array(bias, np.int32), dst,
                                   shift, offs[0], offs[1] - offs[0], offs[2], lo, hi, lo_o,
                                   hi_o, (1 << bits) - 1, OVERFLOWS.index(ovf))
    assert dst.tolist() == want[:, 0].tolist() and got == changed


def test_narrow_ok_refuses_what_int32_cannot_hold():
    assert vnni_conv.narrow_ok(I32_MAX - 16, [0], 4, 8)
    assert not vnni_conv.narrow_ok(I32_MAX - 15, [0], 4, 8)  # + 2**4 leaves int32
    assert not vnni_conv.narrow_ok(100, [1 << 31], 4, 8)  # a bias past int32
    assert not vnni_conv.narrow_ok(100, [0], 31, 8) and not vnni_conv.narrow_ok(100, [0], -1, 8)
    assert not vnni_conv.narrow_ok(100, [0], 4, 17)
