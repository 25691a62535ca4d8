"""The vectorized ordered loop (:mod:`fxp.kernels.conv2d_rows`) == the scalar loop == the spec.

Invariant on every example: the new kernel, the scalar kernel
(:func:`fxp.kernels.conv2d.conv2d_acc` / :func:`fxp.kernels.dense.dense_acc`) and the
numpy specification (:mod:`fxp.kernels.spec_layers`) give the same accumulators, the same
overflow events per output channel and the same peak ``|partial sum|`` per channel, for
every overflow mode, both accumulation orders, products rounded into the accumulator
(``product_shift``), strides, dilations, asymmetric padding, groups / depthwise, affine
inputs and per-channel weight zero points.  Examples are drawn in four regimes: narrow
accumulators in int32 lanes, 31/32-bit wrapping accumulators whose exact sums leave int32
(``WRAP32``), wide accumulators in int64 lanes, and layers where no lane is proven exact,
which must run the scalar loop.  The dispatcher's choice is checked against the bound
computed here from the operands: a lane is used only where the bound proves it exact.
"""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.kernels import conv2d_rows as rows
from fxp.ops import layers
from tests.strategies import DETERMINISTIC, OVERFLOW, window_geometry

N_EXAMPLES = 150
I32, I64 = (1 << 31) - 1, (1 << 63) - 1
TALLY = {"examples": 0, "events": 0, "int32": 0, "wrap32": 0, "wrap32_events": 0, "int64": 0,
         "scalar": 0}


@contextmanager
def vectorized(on: bool):
    saved = layers.LOOP_VECTORIZED
    layers.LOOP_VECTORIZED = on
    try:
        yield
    finally:
        layers.LOOP_VECTORIZED = saved


@contextmanager
def recording():
    """Record ``(lane, overflow code)`` of every call of the new kernels' drivers."""
    calls = []
    conv, dense = rows.conv2d_rows, rows.dense_rows

    def conv_spy(*a):
        calls.append((a[15], a[11][4]))
        return conv(*a)

    def dense_spy(*a):
        calls.append((a[9], a[5][4]))
        return dense(*a)

    rows.conv2d_rows, rows.dense_rows = conv_spy, dense_spy
    try:
        yield calls
    finally:
        rows.conv2d_rows, rows.dense_rows = conv, dense


def _array(rng, lo: int, hi: int, shape) -> np.ndarray:
    """Codes in [lo, hi] with the extremes over-represented."""
    a = rng.integers(lo, hi, shape, endpoint=True)
    edge = rng.random(shape) < 0.15
    return np.where(edge, np.where(rng.random(shape) < 0.5, lo, hi), a)


@st.composite
def regimes(draw):
    """(x format, w format, (acc bits, signed, overflow)) of one of the four regimes."""
    regime = draw(st.sampled_from(["int32", "wrap32", "int64", "scalar"]))
    if regime == "int32":
        x_fmt = QFormat.integer(draw(st.integers(2, 9)), draw(st.booleans()))
        w_fmt = QFormat.integer(draw(st.integers(2, 8)), True)
        acc = (draw(st.integers(2, 20)), draw(st.booleans()), draw(st.sampled_from(OVERFLOW)))
    elif regime == "wrap32":  # products < 2**31, sums beyond int32
        x_fmt, w_fmt = QFormat.integer(16, True), QFormat.integer(15, True)
        acc = (draw(st.sampled_from([31, 32])), True, "wrap")
    elif regime == "int64":
        x_fmt = QFormat.integer(draw(st.integers(8, 16)), draw(st.booleans()))
        w_fmt = QFormat.integer(draw(st.integers(8, 16)), True)
        acc = (draw(st.integers(24, 44)), draw(st.booleans()), draw(st.sampled_from(OVERFLOW)))
    else:  # 3*A alone leaves int64: the scalar loop
        x_fmt = QFormat.integer(draw(st.integers(8, 32)), True)
        w_fmt = QFormat.integer(draw(st.integers(8, 30)), True)
        acc = (draw(st.integers(63, 64)), True, draw(st.sampled_from(OVERFLOW)))
    return regime, x_fmt, w_fmt, acc


@st.composite
def conv_cases(draw):
    regime, x_fmt, w_fmt, acc = draw(regimes())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    depthwise = draw(st.booleans())
    groups = draw(st.integers(1, 3))
    cg = 1 if depthwise else draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 2))
    (kh, kw), strides, dil, pads, (h, w_) = window_geometry(draw, 4)
    n = draw(st.integers(1, 3))
    x = _array(rng, x_fmt.min_code, x_fmt.max_code, (n, groups * cg, h, w_))
    w = _array(rng, w_fmt.min_code, w_fmt.max_code, (c_out, cg, kh, kw))
    zx = int(rng.integers(x_fmt.min_code, x_fmt.max_code, endpoint=True)) \
        if draw(st.booleans()) else 0
    zw = _array(rng, w_fmt.min_code // 4, w_fmt.max_code // 4, c_out) if draw(st.booleans()) \
        else 0
    b_lim = 1 << max(1, acc[0] - 1)
    bias = rng.integers(-b_lim, b_lim, c_out) if draw(st.booleans()) else None
    geo = {"strides": strides, "pads": pads, "dilations": dil, "groups": groups}
    return regime, x, w, bias, zx, zw, geo, acc, draw(products(acc[0]))


@st.composite
def products(draw, bits: int):
    """(order, product_shift, product_rounding): mostly exact products."""
    order = draw(st.sampled_from(["fxp", "hls4ml"]))
    shift = draw(st.one_of(st.just(0), st.integers(-2, 6))) if bits < 40 else 0
    return order, shift, draw(st.sampled_from(DETERMINISTIC))


def _proven_lane(x, w, bias, zx, zw, acc, shift) -> tuple[type, int] | None:
    """The lane the bound of fxp.kernels.conv2d_rows allows, from the exact operand maxima."""
    bits, signed, mode = acc
    lo, hi = intmath._range_for(QFormat.integer(bits, signed), OverflowMode.from_string(mode))
    zw = np.broadcast_to(np.asarray(zw), (w.shape[0],))
    t = int(np.abs(x - zx).max()) * max(int(np.abs(wc - z).max()) for wc, z in zip(w, zw))
    t <<= max(-shift, 0)
    r = 1 << shift if shift > 0 else 0
    b = 0 if bias is None else int(np.abs(bias).max())
    need = 3 * max(-lo, hi) + t + b + r
    if need <= I32:
        return np.int32, OverflowMode.from_string(mode).code
    if mode == "wrap" and -(I32 + 1) <= lo and hi <= I32 and max(t + r, b) <= I32:
        return np.int32, rows.WRAP32
    return (np.int64, OverflowMode.from_string(mode).code) if need <= I64 else None


RANK = {"int32": 0, "wrap32": 1, "int64": 2}


def _kind(lane, code) -> str:
    return "wrap32" if code == rows.WRAP32 else np.dtype(lane).name


def _check(run, regime: str, proven) -> None:
    """new == scalar == spec; the new kernel ran in every regime but "scalar", and only
    in a lane at least as wide as the one the exact operands prove."""
    with vectorized(True), recording() as calls:
        new, s_new = run("numba")
    with vectorized(False), recording() as none:
        old, s_old = run("numba")
    spec, s_spec = run("numpy")
    assert not none
    for got, s in ((old, s_old), (spec, s_spec)):
        assert np.array_equal(new, got)
        assert np.array_equal(s_new.overflow_per_channel, s.overflow_per_channel)
        assert np.array_equal(s_new.max_abs_partial_per_channel, s.max_abs_partial_per_channel)
        assert (s_new.n_overflow, s_new.max_abs_partial) == (s.n_overflow, s.max_abs_partial)
    assert (proven is None) == (regime == "scalar")
    assert bool(calls) == (regime != "scalar"), (regime, calls)
    if calls:
        assert RANK[_kind(*calls[0])] >= RANK[_kind(*proven)], (calls, proven)
    kind = _kind(*calls[0]) if calls else "scalar"
    TALLY["examples"] += 1
    TALLY[kind] += 1
    TALLY["events"] += s_new.n_overflow > 0
    TALLY["wrap32_events"] += kind == "wrap32" and s_new.n_overflow > 0


@settings(max_examples=N_EXAMPLES)
@given(conv_cases())
def test_conv2d_rows_equals_scalar_loop_and_spec(case):
    """Conv2D: codes, per-channel events and peaks equal in all three implementations."""
    regime, x, w, bias, zx, zw, geo, acc, (order, shift, rounding) = case
    proven = _proven_lane(x, w, bias, zx, zw, acc, shift)

    def run(backend):
        return layers.conv2d_int(x, w, bias, x_zero_point=zx, w_zero_point=zw, **geo,
                                 acc_bits=acc[0], acc_signed=acc[1], acc_overflow=acc[2],
                                 method="loop", backend=backend, acc_order=order,
                                 product_shift=shift, product_rounding=rounding)

    _check(run, regime, proven)


@st.composite
def dense_cases(draw):
    regime, x_fmt, w_fmt, acc = draw(regimes())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.sampled_from([1, 2, 5, 15, 16, 17, 40]))  # across outputs below 16
    k, c_out = draw(st.integers(1, 40)), draw(st.integers(1, 9))
    x = _array(rng, x_fmt.min_code, x_fmt.max_code, (n, k))
    w = _array(rng, w_fmt.min_code, w_fmt.max_code, (c_out, k))
    zx = int(rng.integers(x_fmt.min_code, x_fmt.max_code, endpoint=True)) \
        if draw(st.booleans()) else 0
    zw = _array(rng, w_fmt.min_code // 4, w_fmt.max_code // 4, c_out) if draw(st.booleans()) \
        else 0
    b_lim = 1 << max(1, acc[0] - 1)
    bias = rng.integers(-b_lim, b_lim, c_out) if draw(st.booleans()) else None
    return regime, x, w, bias, zx, zw, acc, draw(products(acc[0]))


@settings(max_examples=N_EXAMPLES)
@given(dense_cases())
def test_dense_rows_equals_scalar_loop_and_spec(case):
    """Dense (across the batch, or across outputs below 16 rows): all three equal."""
    regime, x, w, bias, zx, zw, acc, (order, shift, rounding) = case
    proven = _proven_lane(x, w, bias, zx, zw, acc, shift)

    def run(backend):
        return layers.dense_int(x, w, bias, x_zero_point=zx, w_zero_point=zw, acc_bits=acc[0],
                                acc_signed=acc[1], acc_overflow=acc[2], method="loop",
                                backend=backend, acc_order=order, product_shift=shift,
                                product_rounding=rounding)

    _check(run, regime, proven)


@settings(max_examples=200)
@given(t=st.integers(-(1 << 40), 1 << 40), shift=st.integers(1, 20),
       mode=st.sampled_from(DETERMINISTIC))
def test_round_bias_is_the_rounding_mode(t, shift, mode):
    """``(t + bias(t)) >> shift`` equals the rounding of t / 2**shift (intmath's definition)."""
    pos, neg, even = rows.round_bias(shift, RoundingMode.from_string(mode).code)
    got = (t + (neg if t < 0 else pos) + ((t >> shift) & even)) >> shift
    want = int(intmath.shift_right_round(np.array([t]), shift, mode)[0])
    assert got == want


@pytest.mark.parametrize(("acc", "top", "bias", "shift", "want"), [
    ((20, True, "saturate"), 2**11, 2**19, 0, (np.int32, 1)),
    ((28, True, "wrap"), 2**20, 0, 0, (np.int32, 0)),
    ((32, True, "wrap"), 2**16, 2**30, 0, (np.int32, rows.WRAP32)),
    ((32, True, "wrap"), 2**31, 0, 0, (np.int64, 0)),       # product beyond int32
    ((32, False, "wrap"), 2**16, 0, 0, (np.int64, 0)),      # unsigned 32-bit: beyond int32
    ((32, True, "saturate"), 2**16, 0, 0, (np.int64, 1)),   # saturation needs the exact sum
    ((20, True, "saturate_zero"), 2**11, 0, 12, (np.int32, 3)),
    ((20, True, "saturate"), 2**11, 0, -20, (np.int64, 1)),  # left-shifted products
    ((60, True, "wrap"), 2**40, 0, 0, (np.int64, 0)),
    ((62, True, "saturate"), 2**61, 0, 0, None),
    ((63, True, "wrap"), 1, 0, 0, None),
    ((64, True, "wrap"), 1, 0, 0, None),
    ((62, False, "wrap"), 1, 0, 0, None),
    ((40, True, "wrap"), 2**62, 0, 62, None),                # the rounding bias
])
def test_loop_lane_choices(acc, top, bias, shift, want):
    """The dispatcher's lane for hand-checked bounds (3A + T + |bias| + 2**shift)."""
    bits, signed, mode = acc
    m = OverflowMode.from_string(mode)
    lo, hi = intmath._range_for(QFormat.integer(bits, signed), m)
    got = layers._loop_lane((lo, hi, bits, signed, m.code), top, np.array([bias]), shift)
    assert got == want
    with vectorized(False):
        assert layers._loop_lane((lo, hi, bits, signed, m.code), top, np.array([bias]),
                                 shift) is None


def test_blocks_span_images_and_batches_are_chunked(monkeypatch):
    """Blocks of BLOCK columns that split images, several layout chunks, the prange build."""
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (7, 4, 23, 21))   # 7*21*20 columns: blocks split images
    w = rng.integers(-128, 128, (6, 2, 3, 3))
    bias = rng.integers(-3000, 3000, 6)
    kw = {"x_zero_point": -3, "w_zero_point": rng.integers(-3, 3, 6), "pads": (0, 1, 2, 0),
          "strides": (1, 1), "dilations": (2, 1), "groups": 2, "acc_bits": 17,
          "acc_overflow": "saturate", "method": "loop"}
    with vectorized(False):
        want, s_want = layers.conv2d_int(x, w, bias, **kw)
    assert s_want.n_overflow > 0
    monkeypatch.setattr(rows, "COLS_BYTES", 3 * 4 * 9 * 21 * 20 * 4)  # 3 images a chunk
    for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
        saved = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            with recording() as calls:
                got, s_got = layers.conv2d_int(x, w, bias, **kw)
        finally:
            numba.set_num_threads(saved)
        assert calls and np.array_equal(got, want)
        assert np.array_equal(s_got.overflow_per_channel, s_want.overflow_per_channel)
        assert np.array_equal(s_got.max_abs_partial_per_channel,
                              s_want.max_abs_partial_per_channel)
    assert got.shape == (7, 6, 21, 20) and 7 * 21 * 20 > rows.BLOCK


@pytest.mark.parametrize(("n", "k", "kw"), [
    (rows.BLOCK + 37, 30, {"x_zero_point": 17, "acc_bits": 18,
                           "acc_overflow": "saturate_symmetric", "acc_order": "hls4ml"}),
    (3, 3000, {"x_zero_point": 0, "acc_bits": 17, "acc_overflow": "saturate",
               "product_shift": 2, "product_rounding": "half_even"}),
])
def test_dense_large_layers(n, k, kw):
    """Dense on the prange builds: more rows than BLOCK across the batch (every block's stats
    are kept), and a large layer across outputs with rounded products."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (n, k))
    w = rng.integers(-128, 128, (30, k))
    with vectorized(False):
        want, s_want = layers.dense_int(x, w, None, method="loop", **kw)
    with recording() as calls:
        got, s_got = layers.dense_int(x, w, None, method="loop", **kw)
    assert calls and np.array_equal(got, want) and s_want.n_overflow > 0
    assert x.size * w.shape[0] >= 1 << 16  # the parallel build ran
    assert np.array_equal(s_got.overflow_per_channel, s_want.overflow_per_channel)
    assert np.array_equal(s_got.max_abs_partial_per_channel, s_want.max_abs_partial_per_channel)


def _wrap32_oracle(terms: list[int]) -> tuple[int, int, int]:
    """(sum, events, peak) of a signed 32-bit wrapping accumulator, in Python ints."""
    acc = events = peak = 0
    for t in terms:
        s = acc + t
        peak = max(peak, abs(s))
        if not -(2**31) <= s < 2**31:
            events += 1
            s = (s + 2**31) % 2**32 - 2**31
        acc = s
    return acc, events, peak


def test_wrap32_reports_exact_peaks_beyond_int32():
    """A 32-bit wrapping accumulator in int32 lanes: partial sums past int32 are events
    and their exact magnitudes (not the wrapped ones) are the peaks."""
    x = np.array([[32767, 32767, 32767, -32768, 32767, 32767]])
    w = np.array([[16383] * 6, [-16384] * 6, [16383, -16384, 16383, 16383, 16383, 16383]])
    bias = [2**31 - 1, 1 - 2**31, 7]
    with recording() as calls:
        acc, stats = layers.dense_int(x, w, bias, acc_bits=32, acc_overflow="wrap",
                                      method="loop")
    assert calls == [(np.int32, rows.WRAP32)]
    want = [_wrap32_oracle([int(a) * int(b) for a, b in zip(x[0], wr)] + [bb])
            for wr, bb in zip(w, bias)]
    assert acc[0].tolist() == [v[0] for v in want]
    assert stats.overflow_per_channel.tolist() == [v[1] for v in want]
    assert stats.max_abs_partial_per_channel.tolist() == [v[2] for v in want]
    assert sum(v[1] for v in want) >= 2 and max(v[2] for v in want) > 2**31


def test_order_rows_and_conv_rows():
    """Tap rows in each order, and the im2col layout of step 1."""
    assert rows.order_rows(2, 1, 2, 0).tolist() == [0, 1, 2, 3]
    assert rows.order_rows(2, 2, 1, 1).tolist() == [0, 2, 1, 3]
    xs = np.arange(2 * 1 * 4 * 5, dtype=np.int16).reshape(2, 1, 4, 5)
    cols = rows.conv_rows(xs, 2, 2, (2, 1), (1, 2), 2, 3)
    want = [[xs[b, 0, oy * 2 + ky, ox + 2 * kx] for b in range(2) for oy in range(2)
             for ox in range(3)] for ky in range(2) for kx in range(2)]
    assert cols.tolist() == want


def test_zz_regimes_exercised():
    """Across the run: every regime ran, overflow happened and did not, and WRAP32 lanes
    saw sums beyond int32."""
    if TALLY["examples"] < 2 * N_EXAMPLES:
        pytest.skip("needs the hypothesis tests of this module to have run")
    assert min(TALLY[k] for k in ("int32", "wrap32", "int64", "scalar")) > 20, TALLY
    assert 0.1 < TALLY["events"] / TALLY["examples"] < 0.95, TALLY
    assert TALLY["wrap32_events"] > 10, TALLY
