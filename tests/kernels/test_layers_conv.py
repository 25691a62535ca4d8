"""Integer conv2d / dense: Numba kernel == numpy spec == pure-Python oracle, exactly.

Invariants checked on every example (codes, per-channel overflow events and
peak partial sums): the ordered accumulation with overflow after every
addition (wrap, saturate, saturate_symmetric, saturate_zero; narrow and
64-bit accumulators, signed and unsigned), zero-point padding, stride,
asymmetric padding, dilation, groups and depthwise, per-channel weight zero
points.  The proven float64 path equals the loop whenever its proof holds,
and the parallel build equals the serial one at any thread count.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError
from fxp.ops import layers
from tests import oracles, oracles_layers, strategies
from tests.strategies import accumulator_width, window_geometry

BACKENDS = ("numpy", "numba")
codes = functools.lru_cache(maxsize=None)(strategies.codes)  # one strategy per format
N_EXAMPLES = 300
TALLY = {"examples": 0, "with_events": 0, "outputs": 0, "saturated": 0}


def _fresh_parallel(kern):
    """An uncached prange build of ``kern``.

    ``kern.parallel`` is cached with ``cache=True`` and numba's cache key ignores
    ``parallel=True``: after the serial build is cached, ``.parallel`` may load
    the serial machine code.  Compiling here without the cache tests real threads.
    """
    fn = getattr(kern.serial, "py_func", kern.serial)  # NUMBA_DISABLE_JIT: plain function
    return numba.njit(nogil=True, fastmath=False, parallel=True)(fn)


def _fmt(draw, narrow: int, wide: int) -> QFormat:
    signed = draw(st.booleans())
    bits = draw(st.one_of(st.integers(2, narrow), st.integers(2, wide)))
    return QFormat.integer(bits, signed)


def _array(draw, fmt: QFormat, shape) -> np.ndarray:
    n = math.prod(shape)
    return np.array(draw(st.lists(codes(fmt), min_size=n, max_size=n)), np.int64).reshape(shape)


def _acc(draw, need: int):
    """Accumulator around the width ``need`` that provably holds the layer."""
    return accumulator_width(draw, need)


@st.composite
def conv_cases(draw):
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 4 if depthwise else 3))
    cg = 1 if depthwise else draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    (kh, kw), strides, dil, pads, (h, w_) = window_geometry(draw, 2)
    n = draw(st.integers(1, 2))
    x_fmt, w_fmt = _fmt(draw, 9, 32), _fmt(draw, 8, 31)
    x = _array(draw, x_fmt, (n, groups * cg, h, w_))
    wt = _array(draw, w_fmt, (c_out, cg, kh, kw))
    zx = draw(codes(x_fmt))
    zw = draw(st.one_of(codes(w_fmt), st.lists(codes(w_fmt), min_size=c_out, max_size=c_out)))
    bias = draw(st.one_of(st.none(), st.lists(codes(_fmt(draw, 16, 40)), min_size=c_out,
                                              max_size=c_out)))
    zw_list = zw if isinstance(zw, list) else [zw] * c_out
    b_list = bias or [0] * c_out
    need = max(oracles_layers.bound([r.ravel().tolist() for r in wt], zw_list, int(x.min()),
                                    int(x.max()), zx, b_list)).bit_length() + 1
    acc = _acc(draw, need)
    geo = dict(strides=strides, pads=pads, dilations=dil, groups=groups)
    return x, wt, bias, zx, zw, geo, acc, x_fmt


def _tally(acc: np.ndarray, events: int, bits: int, signed: bool, mode: str) -> None:
    TALLY["examples"] += 1
    TALLY["with_events"] += events > 0
    if mode.startswith("saturate") and mode != "saturate_zero":
        lo, hi = oracles.bounds(QFormat.integer(bits, signed), mode)
        TALLY["outputs"] += acc.size
        TALLY["saturated"] += int(np.count_nonzero((acc == lo) | (acc == hi)))


@settings(max_examples=N_EXAMPLES)
@given(conv_cases())
@example((np.full((1, 1, 3, 3), 127), np.full((1, 1, 3, 3), 127), [-(2**15)], 0, 0,
          dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1),
          (16, True, "saturate"), QFormat.integer(8)))
@example((np.full((1, 1, 2, 2), 2**31 - 1), np.full((1, 1, 2, 2), -(2**30)), None, -(2**31), 2**30,
          dict(strides=(1, 1), pads=(1, 0, 0, 1), dilations=(1, 1), groups=1),
          (64, True, "saturate"), QFormat.integer(32)))
def test_conv2d_matches_oracle(case):
    """acc, per-channel events and peaks equal the ordered Python-int accumulation."""
    x, w, bias, zx, zw, geo, (bits, signed, mode), _ = case
    c_out = w.shape[0]
    zw_list = zw if isinstance(zw, list) else [zw] * c_out
    lo, hi = oracles.bounds(QFormat.integer(bits, signed), mode)
    ref, ev, pk = oracles_layers.conv2d(x.tolist(), w.tolist(), bias or [0] * c_out, zx, zw_list,
                                        geo["strides"], geo["pads"], geo["dilations"],
                                        geo["groups"], bits, signed, lo, hi, mode)
    for backend in BACKENDS:
        acc, stats = layers.conv2d_int(x, w, bias, x_zero_point=zx, w_zero_point=zw, **geo,
                                       acc_bits=bits, acc_signed=signed, acc_overflow=mode,
                                       method="loop", backend=backend)
        assert acc.tolist() == ref, backend
        assert stats.overflow_per_channel.tolist() == ev, backend
        assert stats.max_abs_partial_per_channel.tolist() == pk, backend
        assert (stats.n_overflow, stats.max_abs_partial) == (sum(ev), max(pk)), backend
    _tally(acc, sum(ev), bits, signed, mode)


@st.composite
def dense_cases(draw):
    n, k, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 4))
    x_fmt, w_fmt = _fmt(draw, 9, 32), _fmt(draw, 8, 31)
    x, w = _array(draw, x_fmt, (n, k)), _array(draw, w_fmt, (c_out, k))
    zx = draw(codes(x_fmt))
    zw = draw(st.lists(codes(w_fmt), min_size=c_out, max_size=c_out))
    bias = draw(st.lists(codes(_fmt(draw, 16, 40)), min_size=c_out, max_size=c_out))
    need = max(oracles_layers.bound(w.tolist(), zw, int(x.min()), int(x.max()), zx,
                                    bias)).bit_length() + 1
    return x, w, bias, zx, zw, _acc(draw, need)


@settings(max_examples=N_EXAMPLES)
@given(dense_cases())
def test_dense_matches_oracle(case):
    """Dense: order i = 0..In-1 then the bias, overflow after each addition."""
    x, w, bias, zx, zw, (bits, signed, mode) = case
    lo, hi = oracles.bounds(QFormat.integer(bits, signed), mode)
    ref, ev, pk = oracles_layers.dense(x.tolist(), w.tolist(), bias, zx, zw, bits, signed, lo, hi,
                                       mode)
    for backend in BACKENDS:
        acc, stats = layers.dense_int(x, w, bias, x_zero_point=zx, w_zero_point=zw, acc_bits=bits,
                                      acc_signed=signed, acc_overflow=mode, method="loop",
                                      backend=backend)
        assert acc.tolist() == ref, backend
        assert stats.overflow_per_channel.tolist() == ev, backend
        assert stats.max_abs_partial_per_channel.tolist() == pk, backend
    _tally(acc, sum(ev), bits, signed, mode)


@settings(max_examples=100)
@given(conv_cases())
def test_auto_and_blas_equal_loop_when_proven(case):
    """Under the proof (bound < 2**53 and inside the accumulator) float64 == loop."""
    x, w, bias, zx, zw, geo, (_, _, mode), x_fmt = case
    zw_list = zw if isinstance(zw, list) else [zw] * w.shape[0]
    bound = layers.accumulator_bound(w, zw, x_fmt, zx, bias)
    assert bound == oracles_layers.bound([r.ravel().tolist() for r in w], zw_list, x_fmt.min_code,
                                         x_fmt.max_code, zx, bias or [0] * w.shape[0])
    bits = layers.required_acc_bits(w, zw, x_fmt, zx, bias)
    assert max(bound) <= 2 ** (bits - 1) - 1 and (bits == 1 or max(bound) > 2 ** (bits - 2) - 1)
    kw = dict(x_zero_point=zx, w_zero_point=zw, **geo, acc_bits=min(bits, 64),
              acc_overflow=mode, x_range=x_fmt)
    loop, _ = layers.conv2d_int(x, w, bias, method="loop", **kw)
    auto, stats = layers.conv2d_int(x, w, bias, method="auto", **kw)
    proven = bits <= 64 and max(bound) < 2**53
    assert stats.method == ("blas" if proven else "loop")
    assert auto.tolist() == loop.tolist()
    if proven:
        blas, stats = layers.conv2d_int(x, w, bias, method="blas", **kw)
        assert blas.tolist() == loop.tolist() and stats.n_overflow == 0
        xd = x.reshape(x.shape[0], -1)[:, : w[0].size]
        if xd.shape[1] == w[0].size:
            wd = w.reshape(w.shape[0], -1)
            a, _ = layers.dense_int(xd, wd, bias, method="blas", **{k: kw[k] for k in (
                "x_zero_point", "w_zero_point", "acc_overflow", "x_range")}, acc_bits=64)
            assert a.tolist() == layers.dense_int(xd, wd, bias, method="loop", x_zero_point=zx,
                                                  w_zero_point=zw, acc_bits=64)[0].tolist()
    else:
        with pytest.raises(HeadroomError, match="not proven exact"):
            layers.conv2d_int(x, w, bias, method="blas", **kw)


def test_p14_corner_zero_point_padding():
    """3x3 SAME conv at the corner with zp = -128: padding is real 0, not code 0."""
    x = np.full((1, 1, 4, 4), -128)
    x[0, 0, :2, :2] = [[-127, -126], [-125, -124]]  # real values 1, 2, 3, 4
    w = np.ones((1, 1, 3, 3), np.int64)
    for backend in BACKENDS:
        for method in ("loop", "blas"):
            acc, _ = layers.conv2d_int(x, w, x_zero_point=-128, pads=(1, 1, 1, 1),
                                       method=method, backend=backend)
            assert acc[0, 0, 0, 0] == 1 + 2 + 3 + 4  # a naive pad of code 0 would add 5 * 128
            assert acc[0, 0, 3, 3] == 0


def test_saturation_order_is_documented():
    """3-bit SAT accumulator: [3, 3, -3] gives 0 and [-3, 3, 3] gives 3 (P8)."""
    w = np.array([[3, 3, -3], [-3, 3, 3]])
    for backend in BACKENDS:
        acc, stats = layers.dense_int([[1, 1, 1]], w, acc_bits=3, acc_overflow="saturate",
                                      backend=backend)
        assert acc.tolist() == [[0, 3]] and stats.overflow_per_channel.tolist() == [1, 0]


def test_parallel_build_equals_serial():
    """Large layers: the prange build equals the serial build at 1 and 2 threads."""
    from fxp.kernels.conv2d import conv2d_acc
    from fxp.kernels.dense import dense_acc

    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (2, 8, 18, 17))
    w = rng.integers(-128, 128, (8, 4, 3, 3))
    bias = rng.integers(-5000, 5000, 8)
    zw = rng.integers(-3, 3, 8)
    args = (x, w, bias, 5, zw, 2, 1, 1, 0, 1, 2, 2, 9, 14, -(2**15), 2**15 - 1, 16, True, 1)
    ref = conv2d_acc.serial(*args)
    xd, wd = rng.integers(-128, 128, (64, 300)), rng.integers(-128, 128, (40, 300))
    dargs = (xd, wd, np.zeros(40, np.int64), 3, np.zeros(40, np.int64), -(2**16), 2**16 - 1, 17,
             True, 1)
    dref = dense_acc.serial(*dargs)
    assert ref[1].sum() > 0 and dref[1].sum() > 0  # the saturating paths ran
    conv_par, dense_par = _fresh_parallel(conv2d_acc), _fresh_parallel(dense_acc)
    saved = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            for got, want in ((conv_par(*args), ref), (dense_par(*dargs), dref)):
                for g, r in zip(got, want, strict=True):
                    np.testing.assert_array_equal(g, r)
    finally:
        numba.set_num_threads(saved)
    acc, _ = layers.conv2d_int(x, w, bias, x_zero_point=5, w_zero_point=zw, strides=(2, 1),
                               pads=(1, 0, 1, 1), dilations=(1, 2), groups=2, acc_bits=16,
                               acc_overflow="saturate", backend="numpy")
    np.testing.assert_array_equal(acc, ref[0])


@pytest.mark.parametrize(("kwargs", "err", "match"), [
    (dict(groups=3), FormatError, "groups=3"),
    (dict(pads=(0, 0, -1, 0)), FormatError, "pads"),
    (dict(strides=(0, 1)), FormatError, "strides"),
    (dict(method="fast"), FormatError, "method must be"),
    (dict(backend="cuda"), FormatError, "backend must be"),
    (dict(x_range=QFormat.integer(4)), FormatError, "outside x_range"),
    (dict(w_zero_point=[1, 2]), FormatError, "w_zero_point"),
    (dict(acc_bits=65), FormatError, "bits=65"),
    (dict(acc_overflow="explode"), FormatError, "unknown OverflowMode"),
    (dict(x_zero_point=-(2**62)), HeadroomError, "beyond int64"),
    (dict(acc_bits=8, method="blas"), HeadroomError, "not proven exact"),
])
def test_conv2d_rejects(kwargs, err, match):
    x = np.full((1, 2, 3, 3), 100)
    w = np.full((4, 2, 2, 2), 100)
    with pytest.raises(err, match=match):
        layers.conv2d_int(x, w, **kwargs)


def test_conv2d_rejects_shapes():
    with pytest.raises(FormatError, match="4 dimensions"):
        layers.conv2d_int(np.zeros((2, 3), np.int64), np.zeros((1, 1, 1, 1), np.int64))
    with pytest.raises(FormatError, match="does not fit"):
        layers.conv2d_int(np.zeros((1, 1, 2, 2), np.int64), np.zeros((1, 1, 3, 3), np.int64))
    with pytest.raises(FormatError, match="bias must have shape"):
        layers.conv2d_int(np.zeros((1, 1, 2, 2), np.int64), np.zeros((2, 1, 1, 1), np.int64), [1])
    with pytest.raises(FormatError, match="features"):
        layers.dense_int(np.zeros((1, 3), np.int64), np.zeros((2, 4), np.int64))
    with pytest.raises(FormatError, match="integer array"):
        layers.dense_int(np.zeros((1, 3)), np.zeros((2, 3), np.int64))


def test_zz_not_degenerate():
    """Across the run: overflow both happened and did not, and < 50% of outputs saturated."""
    if TALLY["examples"] < 100:
        pytest.skip("needs the hypothesis tests of this module to have run")
    share = TALLY["with_events"] / TALLY["examples"]
    assert 0.05 < share < 0.95, TALLY
    assert TALLY["saturated"] < 0.5 * TALLY["outputs"], TALLY
