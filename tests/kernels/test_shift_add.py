"""Shift-add conv2d / dense: Numba kernel == numpy spec == Python-int oracle == multiply path.

Weights are ``sign * 2**k`` (zero weights drawn often).  On every example the
shift-add layer (numpy specification and Numba kernel; the prange build is
checked separately at 1 and 2 threads) must give the accumulator codes,
per-channel overflow events and peaks of an independent oracle that sums
``sign * ((x - zx) << k)`` with Python ints over the nonzero in-image taps, in
the order ci, ky, kx, overflow after every addition; and the codes and events
of the multiply path (:func:`fxp.ops.layers.conv2d_int` / ``dense_int``,
ordered loop) on the decoded codes -- also the peaks, except for unsigned
wrapping accumulators (see :mod:`fxp.kernels.shift_add`).  Accumulators
around the needed width, wrap and all saturating modes, so the kernels'
unchecked first pass, its fallback to the checked loop after an overflow, and
the checked loop alone (partial sums that could leave int64) all run.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError, PlanError, ShiftWeightError
from fxp.ops import layers
from fxp.ops.shift import conv2d_shift_int, decode_shift, dense_shift_int, encode_shift
from tests import oracles, oracles_layers, strategies
from tests.strategies import accumulator_width, window_geometry

codes = functools.lru_cache(maxsize=None)(strategies.codes)
N_EXAMPLES = 200
TALLY = {"examples": 0, "with_events": 0, "int64_unsafe": 0}


# --------------------------------------------------------------------------- oracle
def oracle_conv2d(x, sign, shift, bias, zx, strides, pads, dilations, groups, bits, signed, mode):
    """Python ints: per output, ``sign * ((x - zx) << k)`` over nonzero in-image taps, then bias."""
    lo, hi = oracles.bounds(QFormat.integer(bits, signed), mode)
    n, c_out, cg = len(x), len(sign), len(sign[0])
    h, wd, kh, kw = len(x[0][0]), len(x[0][0][0]), len(sign[0][0]), len(sign[0][0][0])
    ho = oracles_layers.out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    wo = oracles_layers.out_size(wd, kw, strides[1], dilations[1], pads[1], pads[3])
    out = [[[[0] * wo for _ in range(ho)] for _ in range(c_out)] for _ in range(n)]
    events, peaks = [0] * c_out, [0] * c_out
    for b in range(n):
        for co in range(c_out):
            first = (co // (c_out // groups)) * cg
            for oy, ox, taps in oracles_layers._window(h, wd, kh, kw, strides, pads, dilations):
                terms = []
                for ci in range(cg):
                    for t, tap in enumerate(taps):
                        s, k = sign[co][ci][t // kw][t % kw], shift[co][ci][t // kw][t % kw]
                        if s != 0 and tap is not None:
                            terms.append(s * ((x[b][first + ci][tap[0]][tap[1]] - zx) << k))
                total, ev, pk = oracles_layers.accumulate(terms + [bias[co]], bits, signed, lo,
                                                          hi, mode)
                out[b][co][oy][ox] = total
                events[co] += ev
                peaks[co] = max(peaks[co], pk)
    return out, events, peaks


def oracle_dense(x, sign, shift, bias, zx, bits, signed, mode):
    lo, hi = oracles.bounds(QFormat.integer(bits, signed), mode)
    out, events, peaks = [], [0] * len(sign), [0] * len(sign)
    for row in x:
        res = []
        for o, (srow, krow) in enumerate(zip(sign, shift, strict=True)):
            terms = [s * ((xi - zx) << k) for xi, s, k in zip(row, srow, krow, strict=True) if s]
            total, ev, pk = oracles_layers.accumulate(terms + [bias[o]], bits, signed, lo, hi, mode)
            res.append(total)
            events[o] += ev
            peaks[o] = max(peaks[o], pk)
        out.append(res)
    return out, events, peaks


# --------------------------------------------------------------------------- strategies
def _x(draw, shape):
    fmt = QFormat.integer(draw(st.one_of(st.integers(2, 9), st.integers(2, 32))),
                          draw(st.booleans()))
    n = int(np.prod(shape))
    x = np.array(draw(st.lists(codes(fmt), min_size=n, max_size=n)), np.int64).reshape(shape)
    return x, draw(codes(fmt)), fmt


def _weights(draw, shape, x_bits):
    """(sign int8, shift uint8): about a third zeros, shifts up to what int64 allows."""
    n = int(np.prod(shape))
    kmax = draw(st.sampled_from([3, 8, min(61 - x_bits, 30)]))
    sign = draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n))
    shift = draw(st.lists(st.integers(0, kmax), min_size=n, max_size=n))
    return (np.array(sign, np.int8).reshape(shape), np.array(shift, np.uint8).reshape(shape))


def _acc(draw, x, zx, sign, shift, bias):
    w = decode_shift(sign, shift)
    need = max(oracles_layers.bound([r.ravel().tolist() for r in w], [0] * len(w), int(x.min()),
                                    int(x.max()), zx, bias)).bit_length() + 1
    return accumulator_width(draw, need)


@st.composite
def conv_cases(draw):
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 4 if depthwise else 3))
    cg = 1 if depthwise else draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    (kh, kw), strides, dil, pads, (h, w_) = window_geometry(draw, 3)
    x, zx, fmt = _x(draw, (draw(st.integers(1, 2)), groups * cg, h, w_))
    sign, shift = _weights(draw, (c_out, cg, kh, kw), fmt.bits)
    bias = draw(st.lists(codes(QFormat.integer(draw(st.integers(2, 40)))), min_size=c_out,
                         max_size=c_out))
    geo = dict(strides=strides, pads=pads, dilations=dil, groups=groups)
    return x, sign, shift, bias, zx, geo, _acc(draw, x, zx, sign, shift, bias)


@st.composite
def dense_cases(draw):
    n, k, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 14)), draw(st.integers(1, 4))
    x, zx, fmt = _x(draw, (n, k))
    sign, shift = _weights(draw, (c_out, k), fmt.bits)
    bias = draw(st.lists(codes(QFormat.integer(draw(st.integers(2, 40)))), min_size=c_out,
                         max_size=c_out))
    return x, sign, shift, bias, zx, _acc(draw, x, zx, sign, shift, bias)


def _check(got, stats, ref, mult, mult_stats, signed, mode, what):
    out, ev, pk = ref
    assert got.tolist() == out, what
    assert stats.overflow_per_channel.tolist() == ev, what
    assert stats.max_abs_partial_per_channel.tolist() == pk, what
    assert stats.method == "shift"
    assert got.tolist() == mult.tolist(), f"{what}: differs from the multiply path"
    assert mult_stats.overflow_per_channel.tolist() == ev, what
    if signed or mode != "wrap":
        assert mult_stats.max_abs_partial_per_channel.tolist() == pk, what


def _tally(ev, unsafe):
    TALLY["examples"] += 1
    TALLY["with_events"] += sum(ev) > 0
    TALLY["int64_unsafe"] += unsafe


# --------------------------------------------------------------------------- properties
@settings(max_examples=N_EXAMPLES)
@given(conv_cases())
@example((np.full((1, 1, 3, 3), 127), np.ones((1, 1, 3, 3), np.int8),
          np.full((1, 1, 3, 3), 7, np.uint8), [-(2**15)], 0,
          dict(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), groups=1),
          (16, True, "saturate")))
@example((np.full((1, 1, 2, 2), 2**31 - 1), -np.ones((1, 1, 2, 2), np.int8),
          np.full((1, 1, 2, 2), 30, np.uint8), [0], -(2**31),
          dict(strides=(1, 1), pads=(1, 0, 0, 1), dilations=(1, 1), groups=1),
          (64, True, "saturate")))
def test_conv2d_shift_matches_oracle_and_multiply(case):
    x, sign, shift, bias, zx, geo, (bits, signed, mode) = case
    ref = oracle_conv2d(x.tolist(), sign.tolist(), shift.tolist(), bias, zx, geo["strides"],
                        geo["pads"], geo["dilations"], geo["groups"], bits, signed, mode)
    acc = dict(acc_bits=bits, acc_signed=signed, acc_overflow=mode)
    mult, mult_stats = layers.conv2d_int(x, decode_shift(sign, shift), bias, x_zero_point=zx,
                                         method="loop", **geo, **acc)
    for backend in ("numpy", "numba"):
        got, stats = conv2d_shift_int(x, sign, shift, bias, x_zero_point=zx, backend=backend,
                                      **geo, **acc)
        _check(got, stats, ref, mult, mult_stats, signed, mode, backend)
    _tally(ref[1], max(layers.accumulator_bound(decode_shift(sign, shift), 0, (int(x.min()),
                                                int(x.max())), zx, bias)) >= 2**63)


@settings(max_examples=N_EXAMPLES)
@given(dense_cases())
def test_dense_shift_matches_oracle_and_multiply(case):
    x, sign, shift, bias, zx, (bits, signed, mode) = case
    ref = oracle_dense(x.tolist(), sign.tolist(), shift.tolist(), bias, zx, bits, signed, mode)
    acc = dict(acc_bits=bits, acc_signed=signed, acc_overflow=mode)
    mult, mult_stats = layers.dense_int(x, decode_shift(sign, shift), bias, x_zero_point=zx,
                                        method="loop", **acc)
    for backend in ("numpy", "numba"):
        got, stats = dense_shift_int(x, sign, shift, bias, x_zero_point=zx, backend=backend,
                                     **acc)
        _check(got, stats, ref, mult, mult_stats, signed, mode, backend)
    _tally(ref[1], False)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([-1, 0, 1]), st.integers(0, 62)), min_size=1,
                max_size=20))
def test_encode_decode_round_trip(pairs):
    sign = np.array([s for s, _ in pairs], np.int8)
    shift = np.array([k if s else 0 for s, k in pairs], np.uint8)
    codes_ = decode_shift(sign, shift)
    assert codes_.tolist() == [s * (1 << k) for s, k in zip(sign.tolist(), shift.tolist())]
    s2, k2 = encode_shift(codes_)
    assert s2.dtype == np.int8 and k2.dtype == np.uint8
    assert s2.tolist() == sign.tolist() and k2.tolist() == shift.tolist()


def test_encode_extremes():
    s, k = encode_shift(np.array([-(2**63), 2**62, -1, 0, 1], np.int64))
    assert s.tolist() == [-1, 1, -1, 0, 1] and k.tolist() == [63, 62, 0, 0, 0]


@pytest.mark.parametrize("code", [3, -3, 6, 2**62 + 1, 2**63 - 1, -(2**63) + 1])
def test_encode_rejects_non_powers_of_two(code):
    w = np.zeros((2, 1, 3, 3), np.int64)
    w[1, 0, 2, 1] = code
    w[1, 0, 2, 2] = 5
    with pytest.raises(ShiftWeightError, match=r"layer 'conv7': weight code "
                       rf"{code} at index \(1, 0, 2, 1\) \(real value .* in fixed<64,60>\) is "
                       r"not 0 or \+-2\*\*k.*2 such codes") as err:
        encode_shift(w, layer="conv7", fmt=QFormat(64, 60))
    assert isinstance(err.value, PlanError)


@pytest.mark.parametrize(("kwargs", "err", "match"), [
    (dict(sign=np.full((2, 1, 2, 2), 2, np.int8)), FormatError, "sign must hold"),
    (dict(shift=np.full((2, 1, 2, 2), 64, np.int64)), FormatError, "shift must lie in 0..63"),
    (dict(shift=np.zeros((2, 1, 2, 1), np.uint8)), FormatError, "same shape"),
    (dict(shift=np.full((2, 1, 2, 2), 60, np.uint8)), HeadroomError, "beyond int64"),
    (dict(groups=2), FormatError, "groups=2"),
    (dict(backend="cuda"), FormatError, "backend must be"),
])
def test_conv2d_shift_rejects(kwargs, err, match):
    args = dict(sign=np.ones((2, 1, 2, 2), np.int8), shift=np.ones((2, 1, 2, 2), np.uint8))
    args.update(kwargs)
    with pytest.raises(err, match=match):
        conv2d_shift_int(np.full((1, 1, 3, 3), 100), args.pop("sign"), args.pop("shift"), **args)


def test_dense_shift_rejects():
    with pytest.raises(FormatError, match="features"):
        dense_shift_int(np.zeros((1, 3), np.int64), np.ones((2, 4), np.int8),
                        np.zeros((2, 4), np.uint8))
    with pytest.raises(FormatError, match="integer arrays"):
        dense_shift_int(np.zeros((1, 3), np.int64), np.ones((2, 3)), np.zeros((2, 3)))


def test_parallel_build_equals_serial_and_spec():
    """Large layers, with and without the unchecked first pass: prange == serial == numpy spec."""
    from fxp.kernels.shift_add import conv2d_shift_acc, dense_shift_acc

    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (2, 8, 18, 17))
    sign = rng.integers(-1, 2, (8, 4, 3, 3)).astype(np.int8)
    shift = rng.integers(0, 12, (8, 4, 3, 3)).astype(np.uint8)
    shift[:4] = rng.integers(0, 3, (4, 4, 3, 3))  # channels 0-3: no overflow in 18 bits
    bias = rng.integers(-5000, 5000, 8)
    safe = np.array([True, False] * 4)  # safe: unchecked first pass, checked after an overflow
    args = (x, sign, shift, bias, 5, 2, 1, 1, 0, 1, 2, 2, 9, 14, -(2**17), 2**17 - 1, 18, True, 1,
            safe)
    ref = conv2d_shift_acc.serial(*args)
    xd = rng.integers(-128, 128, (64, 300))
    sd = rng.integers(-1, 2, (40, 300)).astype(np.int8)
    kd = rng.integers(0, 6, (40, 300)).astype(np.uint8)
    dargs = (xd, sd, kd, np.zeros(40, np.int64), 3, -(2**14), 2**14 - 1, 15, True, 1,
             np.arange(40) % 2 == 0)
    dref = dense_shift_acc.serial(*dargs)
    ev = ref[1].sum(axis=0)
    assert not ev[:4].any() and ev[4::2].all() and ev[5::2].all() and dref[1].sum() > 0
    saved = numba.get_num_threads()
    try:
        # the prange twins (their own cache entries, see fxp.kernels._jit.Kernel)
        conv_par, dense_par = conv2d_shift_acc.parallel, dense_shift_acc.parallel
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            for got, want in ((conv_par(*args), ref), (dense_par(*dargs), dref)):
                for g, r in zip(got, want, strict=True):
                    np.testing.assert_array_equal(g, r)
    finally:
        numba.set_num_threads(saved)
    geo = dict(x_zero_point=5, strides=(2, 1), pads=(1, 0, 1, 1), dilations=(1, 2), groups=2,
               acc_bits=18, acc_overflow="saturate")
    acc, stats = conv2d_shift_int(x, sign, shift, bias, backend="numpy", **geo)
    np.testing.assert_array_equal(acc, ref[0])
    acc_n, stats_n = conv2d_shift_int(x, sign, shift, bias, **geo)  # the layer picks proven itself
    np.testing.assert_array_equal(acc_n, acc)
    assert stats_n.overflow_per_channel.tolist() == stats.overflow_per_channel.tolist()
    assert stats_n.max_abs_partial == stats.max_abs_partial
    dacc, dstats = dense_shift_int(xd, sd, kd, x_zero_point=3, acc_bits=15,
                                   acc_overflow="saturate", backend="numpy")
    np.testing.assert_array_equal(dacc, dref[0])
    assert dstats.overflow_per_channel.tolist() == dref[1].sum(axis=0).tolist()


def test_zz_not_degenerate():
    """Across the run: events happened and did not; some layers could leave int64."""
    if TALLY["examples"] < 100:
        pytest.skip("needs the hypothesis tests of this module to have run")
    assert 0.05 < TALLY["with_events"] / TALLY["examples"] < 0.95, TALLY
    assert TALLY["int64_unsafe"] > 0, TALLY
