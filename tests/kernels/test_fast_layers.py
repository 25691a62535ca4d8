"""The channels-last kernels of the proven float path equal their numpy statements
(:mod:`fxp.kernels.spec_fast_layers`) and the Fraction oracle, in both builds (issue 17).

Each kernel is called with a work size of 0 (the serial build) and of ``2**40`` (the
``prange`` build); inputs come in every integer dtype the engine stores, and as
channels-last views of NCHW arrays (strided), as the executor passes them.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.kernels import spec_fast_layers as spec
from fxp.kernels.fast_layers import (
    avgpool_rows,
    im2col_rows,
    im2col_runs,
    maxpool_rows,
    pow2_count,
    requant_rows,
    rounding_offsets,
)
from fxp.kernels.pool import maxpool2d_codes
from fxp.sim.fast import storage_dtype
from tests import oracles

MODES = ["floor", "ceil", "to_zero", "away", "half_up", "half_down", "half_to_zero",
         "half_away", "half_even"]
OVERFLOWS = ["wrap", "saturate", "saturate_symmetric", "saturate_zero"]
DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64]
BUILDS = [0, 1 << 40]  # work sizes that pick the serial / the parallel build


def _build_dtype(build: int, dtype):
    """The parallel build is the serial source under ``prange``: it is checked on the
    engine's commonest storage (uint8) only, which keeps numba's compilations few."""
    return dtype if build == 0 else np.uint8


def _codes(rng, shape, dtype):
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -5000), min(int(info.max), 5000)
    return rng.integers(lo, hi + 1, shape).astype(dtype)


def _window(h, w, k, s, d, pads):
    return ((h + pads[0] + pads[2] - ((k - 1) * d + 1)) // s + 1,
            (w + pads[1] + pads[3] - ((k - 1) * d + 1)) // s + 1)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 3), s=st.integers(1, 2),
       d=st.integers(1, 2), pads=st.tuples(*[st.integers(0, 2)] * 4),
       groups=st.sampled_from([1, 2, 4]), dtype=st.sampled_from(DTYPES),
       nchw=st.booleans(), build=st.sampled_from(BUILDS))
def test_im2col_rows_equals_its_numpy_statement(seed, k, s, d, pads, groups, dtype, nchw, build):
    dtype = _build_dtype(build, dtype)
    rng = np.random.default_rng(seed)
    n, h, w, c = 2, 6, 5, 4
    x = _codes(rng, (n, c, h, w), dtype).transpose(0, 2, 3, 1) if nchw \
        else _codes(rng, (n, h, w, c), dtype)
    ho, wo = _window(h, w, k, s, d, pads)
    if ho < 1 or wo < 1 or (w + pads[1] + pads[3] - k) // s + 1 < 1:
        return
    cols = np.full((n * ho * wo, k * k * c), np.nan, np.float32)
    im2col_rows(build, x, cols, np.float32(0), k, k, s, s, pads[0], pads[1], d, d, ho, wo, groups)
    want = spec.im2col_rows(x, k, k, (s, s), pads, (d, d), groups)
    assert np.array_equal(cols, want)
    if groups == 1 and not nchw:  # the contiguous-run kernel, its dilation along x set to 1
        ho1, wo1 = ho, (w + pads[1] + pads[3] - k) // s + 1
        runs = np.full((n * ho1 * wo1, k * k * c), np.nan, np.float32)
        im2col_runs(build, x.reshape(n * h, w * c), h, c, runs, np.float32(0), k, k, s, s, pads[0], pads[1], d,
                    ho1, wo1)
        assert np.array_equal(runs, spec.im2col_rows(x, k, k, (s, s), pads, (d, 1), 1))
    # one entry checked from the definition: row (n, oy, ox), column (g, ky, kx, c)
    b, oy, ox = n - 1, ho - 1, wo - 1
    cg = c // groups
    for g in range(groups):
        for ky in range(k):
            for kx in range(k):
                for ci in range(cg):
                    iy, ix = oy * s - pads[0] + ky * d, ox * s - pads[1] + kx * d
                    v = int(x[b, iy, ix, g * cg + ci]) if 0 <= iy < h and 0 <= ix < w else 0
                    col = ((g * k + ky) * k + kx) * cg + ci
                    assert cols[(b * ho + oy) * wo + ox, col] == v


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shift=st.integers(-3, 20), mode=st.sampled_from(MODES),
       ovf=st.sampled_from(OVERFLOWS), bits=st.integers(2, 17), signed=st.booleans(),
       relu=st.booleans(), groups=st.sampled_from([1, 3]), f64=st.booleans(),
       build=st.sampled_from(BUILDS))
def test_requant_rows_equals_the_oracle(seed, shift, mode, ovf, bits, signed, relu, groups, f64,
                                        build):
    rng = np.random.default_rng(seed)
    m, cog = 7, 2
    a = rng.integers(-(1 << 22), 1 << 22, (groups, m, cog)).astype(np.float64 if f64
                                                                     else np.float32)
    bias = rng.integers(-(1 << 20), 1 << 20, groups * cog)
    fmt = QFormat(bits, bits, signed) if build == 0 else QFormat(8, 8, False)
    lo_o, hi_o = oracles.bounds(fmt, ovf)
    lo = max(fmt.min_code, 0) if relu else -(1 << 63)
    offs = rounding_offsets(shift, MODES.index(mode)) if shift > 0 else (0, 0, 0)
    out = np.empty((m, groups * cog), storage_dtype(fmt))
    count = requant_rows(build, a, bias, out, shift, *offs, lo, (1 << 63) - 1, lo_o, hi_o,
                         fmt.bits, OVERFLOWS.index(ovf))
    want, changed = np.zeros((m, groups * cog), np.int64), 0
    for g in range(groups):
        for i in range(m):
            for j in range(cog):
                acc = int(a[g, i, j]) + int(bias[g * cog + j])
                v = max(oracles.round_fraction(Fraction(acc) * Fraction(2) ** -shift, mode), lo)
                want[i, g * cog + j], over = oracles.fit(v, fmt.bits, fmt.signed, lo_o, hi_o, ovf)
                changed += over
    assert np.array_equal(out, want) and count == changed
    codes, n_spec = spec.requant_rows(a, bias, shift, mode, lo, (1 << 63) - 1, fmt, ovf)
    assert np.array_equal(codes, want) and n_spec == changed


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       s=st.integers(1, 3), pads=st.tuples(*[st.integers(0, 2)] * 4),
       dtype=st.sampled_from(DTYPES), nchw=st.booleans(), build=st.sampled_from(BUILDS))
def test_maxpool_rows_equals_its_statement_and_the_nchw_kernel(seed, k, s, pads, dtype, nchw,
                                                                build):
    pads = tuple(min(p, k[i % 2] - 1) for i, p in enumerate(pads))  # pads < kernel
    dtype = _build_dtype(build, dtype)
    rng = np.random.default_rng(seed)
    n, h, w, c = 2, 6, 5, 3
    x = _codes(rng, (n, c, h, w), dtype).transpose(0, 2, 3, 1) if nchw \
        else _codes(rng, (n, h, w, c), dtype)
    ho = (h + pads[0] + pads[2] - k[0]) // s + 1
    wo = (w + pads[1] + pads[3] - k[1]) // s + 1
    if ho < 1 or wo < 1:
        return
    pad_code = int(np.iinfo(dtype).min)
    out = np.empty((n, ho, wo, c), dtype)
    maxpool_rows(build, x, out, pad_code, *k, s, s, pads[0], pads[1], 1, 1)
    assert np.array_equal(out, spec.maxpool_rows(x, pad_code, k, (s, s), pads, (1, 1)))
    # any pad code (it then wins where a padded tap is larger) and dilations
    pad_any = int(rng.integers(max(int(np.iinfo(dtype).min), -5000),
                               min(int(np.iinfo(dtype).max), 5000) + 1))
    d = int(rng.integers(1, 3))
    ho2 = (h + pads[0] + pads[2] - (k[0] - 1) * d - 1) // s + 1
    wo2 = (w + pads[1] + pads[3] - (k[1] - 1) * d - 1) // s + 1
    if ho2 >= 1 and wo2 >= 1:
        out2 = np.empty((n, ho2, wo2, c), dtype)
        maxpool_rows(build, x, out2, pad_any, *k, s, s, pads[0], pads[1], d, d)
        assert np.array_equal(out2, spec.maxpool_rows(x, pad_any, k, (s, s), pads, (d, d)))
    nchw_out = maxpool2d_codes(0, np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.int64),
                               pad_code, *k, s, s, pads[0], pads[1], 1, 1, ho, wo)
    assert np.array_equal(out.transpose(0, 3, 1, 2), nchw_out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_rows_converts_extreme_codes_exactly(dtype):
    """Every dtype's extreme codes (below 2**24 for int32 and int64) reach float32 unchanged."""
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -(1 << 24) + 1), min(int(info.max), (1 << 24) - 1)
    x = np.array([lo, hi, 0, 1], dtype).reshape(1, 2, 2, 1)
    cols = np.empty((4, 1), np.float32)
    im2col_rows(0, x, cols, np.float32(0), 1, 1, 1, 1, 0, 0, 1, 1, 2, 2, 1)
    assert [int(v) for v in cols[:, 0]] == [lo, hi, 0, 1]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       s=st.integers(1, 3), pads=st.tuples(*[st.integers(0, 2)] * 4),
       dtype=st.sampled_from(DTYPES), include=st.booleans(), mode=st.sampled_from(MODES),
       zp=st.integers(-3, 3), build=st.sampled_from(BUILDS))
def test_avgpool_rows_equals_its_statement_and_the_nchw_kernel(seed, k, s, pads, dtype,
                                                                include, mode, zp, build):
    from fxp.core.modes import RoundingMode
    from fxp.kernels.pool import avgpool2d_codes

    pads = tuple(min(p, k[i % 2] - 1) for i, p in enumerate(pads))
    dtype = _build_dtype(build, dtype)
    rng = np.random.default_rng(seed)
    n, h, w, c = 2, 6, 5, 3
    x = _codes(rng, (n, h, w, c), dtype)
    ho = (h + pads[0] + pads[2] - k[0]) // s + 1
    wo = (w + pads[1] + pads[3] - k[1]) // s + 1
    if ho < 1 or wo < 1:
        return
    code = RoundingMode.from_string(mode).code
    info = np.iinfo(x.dtype)  # the engine's narrow output: x's dtype, when zp fits it
    out = np.empty((n, ho, wo, c), x.dtype if info.min <= zp <= info.max else np.int64)
    avgpool_rows(build, x, out, zp, *k, s, s, pads[0], pads[1], include, code, -1, 0, 0, 0)
    want = spec.avgpool_rows(x, zp, k, (s, s), pads, include, RoundingMode.from_string(mode))
    assert np.array_equal(out, want)
    if include or not any(pads):  # every window counts k0*k1 codes: the shift where 2**k
        out2 = np.full_like(out, 99)
        avgpool_rows(build, x, out2, zp, *k, s, s, pads[0], pads[1], include, code,
                     *pow2_count(k[0] * k[1], code))
        assert np.array_equal(out2, want)
    nchw_out = avgpool2d_codes(0, np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.int64), zp,
                               *k, s, s, pads[0], pads[1], 1, 1, ho, wo, include, code)
    assert np.array_equal(out.transpose(0, 3, 1, 2), nchw_out)


@settings(max_examples=500, deadline=None)
@given(s=st.one_of(st.integers(-(1 << 53) + 1, (1 << 53) - 1), st.integers(-5000, 5000)),
       count=st.one_of(st.integers(1, 9), st.integers(1, 1 << 20)),
       mode=st.sampled_from(MODES))
def test_round_div_small_equals_the_fraction_oracle(s, count, mode):
    """The float64-quotient division the average pools use below 2**53 (and the int64 one)."""
    from fxp.kernels.pool import round_div, round_div_small

    want = oracles.round_fraction(Fraction(s, count), mode)
    code = MODES.index(mode)
    assert round_div_small(s, count, code) == want == round_div(s, count, code)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), fa=st.integers(0, 6), fb=st.integers(0, 6),
       fo=st.integers(-2, 9), bits=st.integers(2, 12), signed=st.booleans(),
       mode=st.sampled_from(MODES), ovf=st.sampled_from(OVERFLOWS),
       build=st.sampled_from(BUILDS))
def test_add_rows_equals_the_residual_add_and_the_oracle(seed, fa, fb, fo, bits, signed, mode,
                                                         ovf, build):
    """The engine's fused residual Add (any storage dtype in, narrow codes out) equals
    :func:`fxp.kernels.spec_layers.add_pow2` and, element by element, Fraction arithmetic."""
    from fxp.kernels.fast_layers import add_rows
    from fxp.kernels.spec_layers import add_pow2

    rng = np.random.default_rng(seed)
    fmt_a, fmt_b = QFormat.from_frac(8, fa), QFormat.from_frac(9, fb)
    a = rng.integers(fmt_a.min_code, fmt_a.max_code + 1, 37).astype(np.int8)
    b = rng.integers(fmt_b.min_code, fmt_b.max_code + 1, 37).astype(np.int16)
    out = QFormat.from_frac(bits, fo, signed)
    f = max(fa, fb)
    shift = f - out.frac_bits
    lo_o, hi_o = oracles.bounds(out, ovf)
    offs = rounding_offsets(shift, MODES.index(mode)) if shift > 0 else (0, 0, 0)
    got = np.empty(37, storage_dtype(out))
    n = add_rows(build, a, b, got, f - fa, f - fb, shift, *offs, lo_o, hi_o, out.bits,
                 OVERFLOWS.index(ovf))
    want, n_want = add_pow2(a.astype(np.int64), fa, b.astype(np.int64), fb, out, mode, ovf, None,
                            0)
    assert np.array_equal(got, want) and n == n_want
    for i in range(37):
        v = Fraction(int(a[i]), 2**fa) + Fraction(int(b[i]), 2**fb)
        code = oracles.round_fraction(v * Fraction(2) ** out.frac_bits, mode)
        assert oracles.fit(code, out.bits, out.signed, lo_o, hi_o, ovf)[0] == got[i]
