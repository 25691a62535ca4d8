"""Products rounded into a narrower accumulator (``product_shift``) against a Python-int oracle.

hls4ml's stock accumulator ``ap_fixed<16,6>`` keeps 10 fraction bits, while
the product of a ``<16,6>`` input and a ``<16,6>`` weight has 20: each
product is cast into ``accum_t`` (``mult[i] = x * w``) with the accumulator's
quantization mode before it is added.  The oracle rounds each product with
``fractions.Fraction`` and the mode's definition, then accumulates in the
plan's order with the overflow mode; kernels and the numpy specification must
equal it, codes and overflow events.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.errors import FormatError, HeadroomError
from fxp.ops import layers as L
from tests.kernels.test_acc_order_hls4ml import _cast

MODES = ["floor", "ceil", "to_zero", "away", "half_up", "half_down", "half_to_zero",
         "half_away", "half_even"]
OVERFLOWS = ["wrap", "saturate", "saturate_symmetric", "saturate_zero"]


def _round(q: Fraction, mode: str) -> int:
    """``q`` rounded to an integer by the mode's definition."""
    f, c = math.floor(q), math.ceil(q)
    if f == c:
        return f
    if mode == "floor":
        return f
    if mode == "ceil":
        return c
    if mode == "to_zero":
        return f if q > 0 else c
    if mode == "away":
        return c if q > 0 else f
    if q - f != Fraction(1, 2):
        return f if q - f < Fraction(1, 2) else c
    return {"half_up": c, "half_down": f, "half_to_zero": f if q > 0 else c,
            "half_away": c if q > 0 else f, "half_even": f if f % 2 == 0 else c}[mode]


def _sum(terms: list[int], bias: int, bits: int, ovf: str, order: str, shift: int,
         mode: str) -> tuple[int, int]:
    terms = [_round(Fraction(t, 2 ** shift), mode) if shift >= 0 else t << -shift
             for t in terms]
    if order == "hls4ml":
        acc, e = _cast(bias, bits, ovf)
        events = int(e)
        for t in terms:
            p, e1 = _cast(t, bits, ovf)
            acc, e2 = _cast(acc + p, bits, ovf)
            events += e1 + e2
        return acc, events
    acc, events = 0, 0
    for t in [*terms, bias]:
        acc, e = _cast(acc + t, bits, ovf)
        events += e
    return acc, events


def _dense(x, w, b, bits, ovf, order, shift, mode):
    out = np.zeros((x.shape[0], w.shape[0]), np.int64)
    ev = 0
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            terms = [int(x[n, i]) * int(w[o, i]) for i in range(x.shape[1])]
            out[n, o], e = _sum(terms, int(b[o]), bits, ovf, order, shift, mode)
            ev += e
    return out, ev


def _conv(x, w, b, pad, bits, ovf, order, shift, mode):
    n_, c, h, wd = x.shape
    co, _, kh, kw = w.shape
    ho, wo = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    out = np.zeros((n_, co, ho, wo), np.int64)
    ev = 0
    taps = ([(ci, ky, kx) for ci in range(c) for ky in range(kh) for kx in range(kw)]
            if order == "fxp" else
            [(ci, ky, kx) for ky in range(kh) for kx in range(kw) for ci in range(c)])
    for n in range(n_):
        for o in range(co):
            for oy in range(ho):
                for ox in range(wo):
                    terms = []
                    for ci, ky, kx in taps:
                        iy, ix = oy - pad + ky, ox - pad + kx
                        inside = 0 <= iy < h and 0 <= ix < wd
                        terms.append(int(x[n, ci, iy, ix]) * int(w[o, ci, ky, kx])
                                     if inside else 0)
                    out[n, o, oy, ox], e = _sum(terms, int(b[o]), bits, ovf, order, shift,
                                                mode)
                    ev += e
    return out, ev


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(3, 16), ovf=st.sampled_from(OVERFLOWS),
       order=st.sampled_from(["fxp", "hls4ml"]), shift=st.integers(-3, 12),
       mode=st.sampled_from(MODES), n=st.integers(1, 3), fin=st.integers(1, 9),
       fout=st.integers(1, 4))
def test_dense_rounded_products_equal_oracle(seed, bits, ovf, order, shift, mode, n, fin, fout):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, fin))
    w = rng.integers(-128, 128, (fout, fin))
    b = rng.integers(-(1 << bits), 1 << bits, fout)
    want, ev = _dense(x, w, b, bits, ovf, order, shift, mode)
    for backend in ("numba", "numpy"):
        got, stats = L.dense_int(x, w, b, acc_bits=bits, acc_overflow=ovf, backend=backend,
                                 acc_order=order, product_shift=shift, product_rounding=mode)
        assert np.array_equal(got, want), backend
        assert stats.n_overflow == ev, backend


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(3, 16), ovf=st.sampled_from(OVERFLOWS),
       order=st.sampled_from(["fxp", "hls4ml"]), shift=st.integers(-2, 10),
       mode=st.sampled_from(MODES), c=st.integers(1, 3), co=st.integers(1, 3),
       k=st.integers(1, 3), pad=st.integers(0, 1))
def test_conv2d_rounded_products_equal_oracle(seed, bits, ovf, order, shift, mode, c, co, k,
                                              pad):
    rng = np.random.default_rng(seed)
    x = rng.integers(-64, 64, (2, c, 4, 4))
    w = rng.integers(-64, 64, (co, c, k, k))
    b = rng.integers(-(1 << bits), 1 << bits, co)
    want, ev = _conv(x, w, b, pad, bits, ovf, order, shift, mode)
    for backend in ("numba", "numpy"):
        got, stats = L.conv2d_int(x, w, b, pads=(pad,) * 4, acc_bits=bits, acc_overflow=ovf,
                                  backend=backend, acc_order=order, product_shift=shift,
                                  product_rounding=mode)
        assert np.array_equal(got, want), backend
        assert stats.n_overflow == ev, backend


def test_rounding_each_product_is_not_rounding_the_sum():
    """Negative control: truncating every product loses more than truncating the sum."""
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (50, 16))
    w = rng.integers(-128, 128, (4, 16))
    each, _ = L.dense_int(x, w, None, acc_bits=40, product_shift=6, product_rounding="floor")
    exact, _ = L.dense_int(x, w, None, acc_bits=40)
    assert np.count_nonzero(each != np.floor_divide(exact, 64)) > 100
    assert np.all(each <= np.floor_divide(exact, 64))


@pytest.mark.parametrize(("kwargs", "err", "match"), [
    (dict(product_shift=63), FormatError, r"product_shift must be an integer in \[-62, 62\]"),
    (dict(product_shift=1.0), FormatError, r"product_shift must be an integer"),
    (dict(product_shift=2, method="blas"), FormatError, r"method='blas' computes exact"),
    (dict(product_shift=1, product_rounding="stochastic"), FormatError, r"'stochastic'"),
    (dict(product_shift=-60), HeadroomError, r"shifted left by 60"),
])
def test_product_shift_rejects(kwargs, err, match):
    with pytest.raises(err, match=match):
        L.dense_int(np.full((1, 2), 100), np.full((1, 2), 100), **kwargs)
