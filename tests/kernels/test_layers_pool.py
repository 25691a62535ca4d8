"""Pooling, clip/ReLU and residual add on codes: kernel == numpy spec == Python-int oracle.

Invariants: max pooling pads with the format's min code (never selected);
average pooling is an exact integer sum followed by a rounding divide in the
named mode (negative ties follow the mode, correctness-anchors P2), with and
without ``count_include_pad``; the power-of-two add equals the exact real sum
rounded once into the output format; the affine add equals TFLite's int8 Add
stage by stage.  Parallel builds equal serial builds.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError
from fxp.ops import layers
from tests import oracles, oracles_layers, strategies
from tests.strategies import DETERMINISTIC, OVERFLOW, ROUNDING, formats, window_geometry

BACKENDS = ("numpy", "numba")
codes = functools.lru_cache(maxsize=None)(strategies.codes)  # one strategy per format
N_EXAMPLES = 300


def _fresh_parallel(kern):
    """An uncached prange build of ``kern``.

    ``kern.parallel`` is cached with ``cache=True`` and numba's cache key ignores
    ``parallel=True``: after the serial build is cached, ``.parallel`` may load
    the serial machine code.  Compiling here without the cache tests real threads.
    """
    fn = getattr(kern.serial, "py_func", kern.serial)  # NUMBA_DISABLE_JIT: plain function
    return numba.njit(nogil=True, fastmath=False, parallel=True)(fn)


def _array(draw, fmt: QFormat, shape) -> np.ndarray:
    n = math.prod(shape)
    return np.array(draw(st.lists(codes(fmt), min_size=n, max_size=n)), np.int64).reshape(shape)


@st.composite
def pool_cases(draw):
    (kh, kw), strides, dil, pads, (h, w) = window_geometry(draw, 3)
    fmt = QFormat.integer(draw(st.integers(1, 32)), draw(st.booleans()))
    x = _array(draw, fmt, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w))
    return x, fmt, (kh, kw), dict(strides=strides, pads=pads, dilations=dil)


@settings(max_examples=N_EXAMPLES)
@given(pool_cases())
def test_maxpool_matches_oracle(case):
    """Max over the window; padding reads the min code, so it never wins a real pixel."""
    x, fmt, kernel, geo = case
    ref = oracles_layers.maxpool2d(x.tolist(), fmt.min_code, kernel, geo["strides"], geo["pads"],
                                   geo["dilations"])
    for backend in BACKENDS:
        got = layers.maxpool2d_int(x, fmt, kernel, **geo, backend=backend)
        assert got.tolist() == ref, backend


@settings(max_examples=N_EXAMPLES)
@given(pool_cases(), st.sampled_from(DETERMINISTIC), st.booleans(), st.data())
def test_avgpool_matches_oracle(case, mode, include_pad, data):
    """round(sum(x - zp) / count) + zp, exactly, in every deterministic rounding mode."""
    x, fmt, kernel, geo = case
    zp = data.draw(codes(fmt))
    ref = oracles_layers.avgpool2d(x.tolist(), zp, kernel, geo["strides"], geo["pads"],
                                   geo["dilations"], include_pad, mode)
    for backend in BACKENDS:
        got = layers.avgpool2d_int(x, kernel, mode, **geo, count_include_pad=include_pad,
                                   zero_point=zp, backend=backend)
        assert got.tolist() == ref, backend
        assert fmt.min_code <= got.min() and got.max() <= fmt.max_code  # no overflow possible


@settings(max_examples=N_EXAMPLES)
@given(pool_cases(), st.sampled_from(DETERMINISTIC), st.data())
def test_global_avgpool_matches_oracle(case, mode, data):
    """Global average = average pooling with the whole image as the window."""
    x, fmt, _, _ = case
    zp = data.draw(codes(fmt))
    one = dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1))
    ref = oracles_layers.avgpool2d(x.tolist(), zp, x.shape[2:], **one, include_pad=False, mode=mode)
    for backend in BACKENDS:
        got = layers.global_avgpool_int(x, mode, zero_point=zp, backend=backend)
        assert got.shape == (*x.shape[:2], 1, 1) and got.tolist() == ref, backend


# correctness-anchors P2: sum = -10, count = 4 (and +10) in every mode
TIES = {"floor": (-3, 2), "ceil": (-2, 3), "to_zero": (-2, 2), "away": (-3, 3),
        "half_up": (-2, 3), "half_down": (-3, 2), "half_to_zero": (-2, 2),
        "half_away": (-3, 3), "half_even": (-2, 2)}


@pytest.mark.parametrize(("mode", "expected"), TIES.items())
def test_avgpool_negative_tie_table(mode, expected):
    """A 2x2 window summing to -10 (and 10): -2.5 and 2.5 rounded by the mode."""
    x = np.array([[[[-1, -2], [-3, -4]], [[1, 2], [3, 4]]]])
    for backend in BACKENDS:
        got = layers.avgpool2d_int(x, (2, 2), mode, backend=backend)
        assert tuple(got.ravel().tolist()) == expected, backend


def test_avgpool_count_include_pad():
    """Corner window of a 3x3 pool with 1-pixel padding: count 4 (exclude) or 9 (include)."""
    x = np.full((1, 1, 2, 2), 9)
    for backend in BACKENDS:
        ex = layers.avgpool2d_int(x, (3, 3), "half_even", pads=(1, 1, 1, 1), backend=backend)
        inc = layers.avgpool2d_int(x, (3, 3), "half_even", pads=(1, 1, 1, 1),
                                   count_include_pad=True, backend=backend)
        assert ex.ravel().tolist() == [9, 9, 9, 9] and inc.ravel().tolist() == [4, 4, 4, 4]


@settings(max_examples=N_EXAMPLES)
@given(st.lists(codes(QFormat.integer(16)), min_size=1, max_size=20),
       st.integers(-(2**15), 2**15 - 1), st.integers(-(2**15), 2**15 - 1))
def test_clip_and_relu_match_oracle(vals, a, b):
    """clip = min(max(x, lo), hi); relu = max(x, zero_point)."""
    lo, hi = min(a, b), max(a, b)
    x = np.array(vals)
    for backend in BACKENDS:
        assert layers.clip_int(x, lo, hi, backend=backend).tolist() == \
            [min(max(v, lo), hi) for v in vals]
        assert layers.relu_int(x, a, backend=backend).tolist() == [max(v, a) for v in vals]
    assert layers.flatten_int(x.reshape(1, -1, 1)).shape == (1, len(vals))


@st.composite
def add_cases(draw):
    a_fmt = draw(formats(max_bits=40, frac_range=(-8, 24)))
    b_fmt = draw(formats(max_bits=40, frac_range=(-8, 24)))
    out = draw(formats(frac_range=(-12, 30)))
    n = draw(st.integers(1, 8))
    a = draw(st.lists(codes(a_fmt), min_size=n, max_size=n))
    b = draw(st.lists(codes(b_fmt), min_size=n, max_size=n))
    return a_fmt, b_fmt, out, a, b, draw(st.sampled_from(ROUNDING)), \
        draw(st.sampled_from(OVERFLOW)), draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 99))


@settings(max_examples=N_EXAMPLES)
@given(add_cases())
def test_add_pow2_matches_oracle(case):
    """Aligned add = the exact real sum a + b rounded once into ``out``, then overflow."""
    a_fmt, b_fmt, out, a, b, rmode, omode, seed, offset = case
    f = max(a_fmt.frac_bits, b_fmt.frac_bits)
    top = (1 << (a_fmt.bits + f - a_fmt.frac_bits)) + (1 << (b_fmt.bits + f - b_fmt.frac_bits))
    us = [oracles.splitmix64(seed, offset + i) if rmode == "stochastic" else None
          for i in range(len(a))]
    for backend in BACKENDS:
        if top > 2**63:  # maybe beyond int64: refused unless the formats prove otherwise
            try:
                layers.add_int(a, a_fmt, b, b_fmt, out, rmode, omode, seed=seed,
                               index_offset=offset, backend=backend)
            except HeadroomError:
                continue
        got, n = layers.add_int(a, a_fmt, b, b_fmt, out, rmode, omode, seed=seed,
                                index_offset=offset, backend=backend)
        assert (got.tolist(), n) == oracles_layers.add_pow2(a, a_fmt, b, b_fmt, out, rmode,
                                                            omode, us), backend


@st.composite
def affine_cases(draw):
    scheme = draw(st.sampled_from(["double", "single"]))
    hi_exp = 30 if scheme == "single" else 31
    mults = [draw(st.one_of(st.integers(2**30, 2**31 - 1), st.integers(0, 2**31 - 1)))
             for _ in range(3)]
    exps = [draw(st.integers(-20, 0)), draw(st.integers(-20, 0)), draw(st.integers(-31, hi_exp))]
    fmt = QFormat.integer(8, draw(st.booleans()))
    out = QFormat.integer(draw(st.integers(2, 16)), draw(st.booleans()))
    n = draw(st.integers(1, 10))
    a = draw(st.lists(codes(fmt), min_size=n, max_size=n))
    b = draw(st.lists(codes(fmt), min_size=n, max_size=n))
    zps = [draw(codes(fmt)), draw(codes(fmt)), draw(codes(out))]
    return a, b, mults, exps, zps, draw(st.integers(0, 22)), out, scheme, \
        draw(st.sampled_from(OVERFLOW))


@settings(max_examples=N_EXAMPLES)
@given(affine_cases())
def test_add_affine_matches_oracle(case):
    """TFLite Add: MBQM both inputs, int32 sum (wrap counted), MBQM + zp, saturate."""
    a, b, (am, bm, om), (ae, be, oe), (azp, bzp, ozp), ls, out, scheme, omode = case
    ref = oracles_layers.add_affine(a, b, azp, bzp, am, ae, bm, be, om, oe, ozp, ls, out, scheme,
                                    omode)
    for backend in BACKENDS:
        got, n = layers.add_int_affine(
            a, b, a_zero_point=azp, a_multiplier=am, a_exponent=ae, b_zero_point=bzp,
            b_multiplier=bm, b_exponent=be, out_multiplier=om, out_exponent=oe,
            out_zero_point=ozp, out=out, left_shift=ls, scheme=scheme, overflow=omode,
            backend=backend)
        assert (got.tolist(), n) == ref, backend


def test_add_pow2_golden():
    """fixed<8,4> 1.5 + fixed<8,6> 0.25 -> fixed<8,5>: 1.75 = code 56; saturating 7.9375 + 1."""
    a_fmt, b_fmt, out = QFormat(8, 4), QFormat(8, 2), QFormat(8, 3)
    for backend in BACKENDS:
        got, n = layers.add_int([24, 127], a_fmt, [16, 64], b_fmt, out, "half_even", "saturate",
                                backend=backend)
        assert got.tolist() == [56, 127] and n == 1


def test_pool_parallel_build_equals_serial():
    """Large inputs: prange builds of the avg-pool and affine-add kernels equal serial builds."""
    from fxp.kernels import pool, requant_channel

    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (4, 16, 33, 31))
    flat = x.ravel()
    calls = [  # one compile each (~2 s): the kernels with reductions or a divide
        (pool.avgpool2d_codes, (x, 3, 3, 3, 2, 2, 1, 1, 1, 1, 17, 16, False, 8)),
        (requant_channel.add_affine_codes, (flat, flat[::-1].copy(), 3, -4, 1 << 30, -1,
                                            1518500250, -2, 1 << 30, -18, 1, 20, False, 1,
                                            -128, 127, 8, True)),
    ]
    saved = numba.get_num_threads()
    try:
        for kern, args in calls:
            want, parallel = kern.serial(*args), _fresh_parallel(kern)
            for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
                numba.set_num_threads(threads)
                got = parallel(*args)
                for g, r in zip(got if isinstance(got, tuple) else (got,),
                                want if isinstance(want, tuple) else (want,), strict=True):
                    np.testing.assert_array_equal(g, r)
    finally:
        numba.set_num_threads(saved)


@pytest.mark.parametrize(("call", "err", "match"), [
    (lambda: layers.avgpool2d_int(np.zeros((1, 1, 2, 2), np.int64), (2, 2), "stochastic"),
     FormatError, "stochastic"),
    (lambda: layers.avgpool2d_int(np.zeros((1, 1, 2, 2), np.int64), (2, 2), "bogus"),
     FormatError, "unknown RoundingMode"),
    (lambda: layers.avgpool2d_int(np.full((1, 1, 2, 2), 2**62), (2, 2), "floor"),
     HeadroomError, "window sum"),
    (lambda: layers.maxpool2d_int(np.full((1, 1, 2, 2), 200), QFormat.integer(8), (2, 2)),
     FormatError, "outside"),
    (lambda: layers.maxpool2d_int(np.zeros((1, 1, 2, 2), np.int64), QFormat.integer(8), (3, 3)),
     FormatError, "does not fit"),
    (lambda: layers.clip_int([1, 2], 5, 1), FormatError, "lo <= hi"),
    (lambda: layers.add_int([1], QFormat(8, 8), [1, 2], QFormat(8, 8), QFormat(8, 8)),
     FormatError, "differ in shape"),
    (lambda: layers.add_int([1], QFormat(64, 64), [1], QFormat(8, 8, True), QFormat(8, 8)),
     HeadroomError, "beyond int64"),
    (lambda: layers.add_int([1], QFormat(8, 0), [1], QFormat(8, 8), QFormat(8, 8), "stochastic"),
     FormatError, "seed"),
    (lambda: layers.add_int_affine([1], [1], a_zero_point=0, a_multiplier=1, a_exponent=0,
                                   b_zero_point=0, b_multiplier=1, b_exponent=0,
                                   out_multiplier=1, out_exponent=0, out_zero_point=0,
                                   out=QFormat(8, 8), left_shift=31), HeadroomError, "int32"),
    (lambda: layers.add_int_affine([1], [1], a_zero_point=0, a_multiplier=1, a_exponent=0,
                                   b_zero_point=0, b_multiplier=1, b_exponent=0,
                                   out_multiplier=1, out_exponent=0, out_zero_point=0,
                                   out=QFormat(8, 8), scheme="triple"), FormatError, "scheme"),
    (lambda: layers.add_int_affine([1], [1], a_zero_point=0, a_multiplier=1, a_exponent=0,
                                   b_zero_point=0, b_multiplier=1, b_exponent=0,
                                   out_multiplier=1, out_exponent=0, out_zero_point=300,
                                   out=QFormat(8, 8)), FormatError, "out_zero_point"),
])
def test_pool_and_add_reject(call, err, match):
    with pytest.raises(err, match=match):
        call()
