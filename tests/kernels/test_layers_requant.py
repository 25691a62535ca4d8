"""Per-channel requantization: kernel == numpy spec == Python-int oracle, and each
channel equals the per-tensor primitive of :mod:`fxp.core.intmath` applied to it.

Invariants: channel ``c`` of the result is exactly ``requantize_pow2`` /
``requantize_multiplier`` / ``requantize_float32`` of channel ``c`` with that
channel's parameters (negative pow2 shifts: ``cast`` to a coarser frac), the
overflow count is the sum over channels, and with equal shifts the per-channel
pow2 kernel equals the per-tensor one on the whole tensor (stochastic included:
draws use the flat index).  Parallel builds equal serial builds.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import FormatError, HeadroomError
from fxp.ops import layers
from tests import oracles, oracles_layers, strategies
from tests.strategies import DETERMINISTIC, OVERFLOW, ROUNDING, formats, int32s

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


@st.composite
def acc_tensors(draw, elements):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    axis = draw(st.integers(0, ndim - 1))
    n = math.prod(shape)
    acc = np.array(draw(st.lists(elements, min_size=n, max_size=n)), np.int64).reshape(shape)
    return acc, axis


def _channel(a: np.ndarray, axis: int, c: int) -> np.ndarray:
    return np.take(a, c, axis=axis)


@settings(max_examples=N_EXAMPLES)
@given(acc_tensors(codes(QFormat.integer(64))), st.data())
def test_pow2_per_channel(case, data):
    """Oracle per element; per-tensor intmath per channel (deterministic modes)."""
    acc, axis = case
    c = acc.shape[axis]
    shifts = data.draw(st.lists(st.one_of(st.integers(-64, 64), st.integers(-3, 20)),
                                min_size=c, max_size=c))
    out = data.draw(formats(signed=None))
    rmode, omode = data.draw(st.sampled_from(ROUNDING)), data.draw(st.sampled_from(OVERFLOW))
    seed, offset = data.draw(st.integers(0, 2**64 - 1)), data.draw(st.integers(0, 50))
    us = [oracles.splitmix64(seed, offset + i) if rmode == "stochastic" else None
          for i in range(acc.size)]
    ref = oracles_layers.requantize_pow2_per_channel(acc.ravel().tolist(), list(acc.shape), axis,
                                                     shifts, out, rmode, omode, us)
    for backend in BACKENDS:
        got, n = layers.requantize_pow2_per_channel(acc, shifts, out, rmode, omode, axis=axis,
                                                    seed=seed, index_offset=offset,
                                                    backend=backend)
        assert (got.ravel().tolist(), n) == ref, backend
    if rmode == "stochastic":
        return
    total = 0
    for ch, s in enumerate(shifts):
        part = _channel(acc, axis, ch)
        if s >= 0:
            want, k = intmath.requantize_pow2(part, s, out, rmode, omode)
        else:
            want, k = intmath.cast(part, QFormat.from_frac(64, 0),
                                   QFormat.from_frac(out.bits, -s, out.signed), rmode, omode)
        assert _channel(got, axis, ch).tolist() == want.tolist()
        total += k
    assert total == n


@settings(max_examples=100)
@given(acc_tensors(codes(QFormat.integer(40))), st.integers(0, 40), st.sampled_from(ROUNDING),
       st.integers(0, 2**64 - 1))
def test_pow2_equal_shifts_is_per_tensor(case, shift, rmode, seed):
    """All channels with one shift == intmath.requantize_pow2 on the whole tensor."""
    acc, axis = case
    out = QFormat(8, 3)
    want = intmath.requantize_pow2(acc, shift, out, rmode, "saturate", seed=seed, index_offset=3)
    for backend in BACKENDS:
        got = layers.requantize_pow2_per_channel(acc, [shift] * acc.shape[axis], out, rmode,
                                                 "saturate", axis=axis, seed=seed,
                                                 index_offset=3, backend=backend)
        assert got[0].tolist() == want[0].tolist() and got[1] == want[1]


@settings(max_examples=N_EXAMPLES)
@given(acc_tensors(int32s()), st.sampled_from(["double", "single"]), st.data())
def test_multiplier_per_channel(case, scheme, data):
    """sat(MBQM(acc, M[c], e[c]) + zp) == oracle == per-tensor intmath per channel."""
    acc, axis = case
    c = acc.shape[axis]
    hi_exp = 30 if scheme == "single" else 31
    mults = data.draw(st.lists(st.one_of(st.integers(2**30, 2**31 - 1), st.integers(0, 2**31 - 1)),
                               min_size=c, max_size=c))
    exps = data.draw(st.lists(st.integers(-31, hi_exp), min_size=c, max_size=c))
    out = QFormat.integer(data.draw(st.integers(2, 32)), data.draw(st.booleans()))
    zp = data.draw(codes(out))
    omode = data.draw(st.sampled_from(OVERFLOW))
    ref = oracles_layers.requantize_multiplier_per_channel(acc.ravel().tolist(), list(acc.shape),
                                                           axis, mults, exps, out, zp, scheme,
                                                           omode)
    for backend in BACKENDS:
        got, n = layers.requantize_multiplier_per_channel(acc, mults, exps, out, axis=axis,
                                                          zero_point=zp, scheme=scheme,
                                                          overflow=omode, backend=backend)
        assert (got.ravel().tolist(), n) == ref, backend
    for ch in range(c):
        want, _ = intmath.requantize_multiplier(_channel(acc, axis, ch), mults[ch], exps[ch], out,
                                                zero_point=zp, scheme=scheme, overflow=omode)
        assert _channel(got, axis, ch).tolist() == want.tolist()


@settings(max_examples=N_EXAMPLES)
@given(acc_tensors(int32s()), st.data())
def test_float32_per_channel(case, data):
    """rint(float32(acc) * float32(scale[c])) + zp, clamped == oracle == per-tensor per channel."""
    acc, axis = case
    c = acc.shape[axis]
    scales = data.draw(st.lists(st.floats(1e-9, 4.0), min_size=c, max_size=c))
    out = QFormat.integer(data.draw(st.integers(2, 16)), data.draw(st.booleans()))
    zp = data.draw(codes(out))
    ref = oracles_layers.requantize_float32_per_channel(acc.ravel().tolist(), list(acc.shape),
                                                        axis, scales, out, zp)
    for backend in BACKENDS:
        got, n = layers.requantize_float32_per_channel(acc, scales, out, axis=axis, zero_point=zp,
                                                       backend=backend)
        assert (got.ravel().tolist(), n) == ref, backend
    for ch in range(c):
        want, _ = intmath.requantize_float32(_channel(acc, axis, ch), scales[ch], out,
                                             zero_point=zp)
        assert _channel(got, axis, ch).tolist() == want.tolist()


def test_requant_parallel_build_equals_serial():
    """Large accumulators: prange builds equal serial builds at 1 and 2 threads."""
    from fxp.kernels import requant_channel as rc

    rng = np.random.default_rng(11)
    acc = rng.integers(-(2**31), 2**31, 3 * 64 * 20 * 20)
    c = 64
    calls = [
        (rc.requantize_pow2_channels, (acc, rng.integers(-2, 30, c), 400, 9, 1, -128, 127, 8,
                                       True, np.uint64(99), 7)),
        (rc.requantize_multiplier_channels, (acc, rng.integers(2**30, 2**31, c),
                                             rng.integers(-31, 2, c), 400, False, 3, 1, -128,
                                             127, 8, True)),
    ]
    saved = numba.get_num_threads()
    try:
        for kern, args in calls:
            want, parallel = kern.serial(*args), _fresh_parallel(kern)
            for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
                numba.set_num_threads(threads)
                got = parallel(*args)
                np.testing.assert_array_equal(got[0], want[0])
                assert got[1] == want[1]
    finally:
        numba.set_num_threads(saved)


@pytest.mark.parametrize(("call", "err", "match"), [
    (lambda: layers.requantize_pow2_per_channel(np.zeros((2, 3), np.int64), [1, 2], QFormat(8, 8)),
     FormatError, "one per channel"),
    (lambda: layers.requantize_pow2_per_channel(np.zeros((2, 3), np.int64), [1, 2, 65],
                                                QFormat(8, 8)), FormatError, "-64..64"),
    (lambda: layers.requantize_pow2_per_channel(np.zeros((2, 3), np.int64), [1, 2, 3],
                                                QFormat(8, 8), axis=2), FormatError, "axis=2"),
    (lambda: layers.requantize_pow2_per_channel(np.zeros((2, 3), np.int64), [1, 2, 3],
                                                QFormat(8, 8), "stochastic"), FormatError, "seed"),
    (lambda: layers.requantize_multiplier_per_channel(np.full((1, 2), 2**31), [1, 1], [0, 0],
                                                      QFormat(8, 8)), HeadroomError, "int32"),
    (lambda: layers.requantize_multiplier_per_channel(np.zeros((1, 2), np.int64), [1, 1], [0, 31],
                                                      QFormat(8, 8), scheme="single"),
     FormatError, "exponent=31"),
    (lambda: layers.requantize_multiplier_per_channel(np.zeros((1, 2), np.int64), [1, 1], [0, 0],
                                                      QFormat(8, 8), zero_point=200),
     FormatError, "zero_point=200"),
    (lambda: layers.requantize_float32_per_channel(np.zeros((1, 2), np.int64), [1.0, 0.0],
                                                   QFormat(8, 8)), FormatError, "scales"),
])
def test_requant_rejects(call, err, match):
    with pytest.raises(err, match=match):
        call()


@pytest.mark.parametrize("mode", DETERMINISTIC)
def test_pow2_channel_golden(mode):
    """Channel 0 shift 1, channel 1 shift 2 on +-5, +-6: ties per the mode's rule."""
    acc = np.array([[5, -5], [6, -6]])  # axis 0: channel 0 is [5, -5], channel 1 is [6, -6]
    want = [[oracles.round_fraction(Fraction(v, 2 ** (c + 1)), mode) for v in row]
            for c, row in enumerate(acc.tolist())]
    for backend in BACKENDS:
        got, _ = layers.requantize_pow2_per_channel(acc, [1, 2], QFormat(8, 8), mode, axis=0,
                                                    backend=backend)
        assert got.tolist() == want
