"""hls4ml's accumulation order (``acc_order="hls4ml"``) against a Python-int oracle.

Issue 15: with an 18-bit saturating accumulator, 72 of 2,000 logits differed
from hls4ml because hls4ml casts the bias into the accumulator first, casts
every product to ``accum_t`` and runs the channels innermost
(``nnet_dense_latency.h``, ``nnet_conv2d_latency.h``).  The oracle below is
written from those templates with Python ints; the numba kernels and the
numpy specification must equal it, codes and overflow events.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.errors import FormatError, PlanError
from fxp.ops import layers as L
from fxp.plan.io import plan_from_dict, plan_to_dict
from fxp.plan.plan import LayerPlan, Plan, TensorSpec

MODES = ["wrap", "saturate", "saturate_symmetric", "saturate_zero"]


def _cast(v: int, bits: int, mode: str) -> tuple[int, bool]:
    """``(accum_t) v`` for a signed ``bits``-wide accumulator (ap_fixed overflow)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if mode == "saturate_symmetric" and bits > 1:
        lo = -hi
    if lo <= v <= hi:
        return v, False
    if mode == "wrap":
        v &= (1 << bits) - 1
        return (v - (1 << bits) if v >= 1 << (bits - 1) else v), True
    if mode == "saturate_zero":
        return 0, True
    return (hi if v > hi else lo), True


def _hls4ml_sum(terms: list[int], bias: int, bits: int, mode: str) -> tuple[int, int]:
    acc, ev = _cast(bias, bits, mode)
    events = int(ev)
    for t in terms:
        p, e1 = _cast(t, bits, mode)
        acc, e2 = _cast(acc + p, bits, mode)
        events += e1 + e2
    return acc, events


def oracle_dense(x, w, b, bits, mode):
    out = np.zeros((x.shape[0], w.shape[0]), np.int64)
    ev = 0
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            terms = [int(x[n, i]) * int(w[o, i]) for i in range(x.shape[1])]
            out[n, o], e = _hls4ml_sum(terms, int(b[o]), bits, mode)
            ev += e
    return out, ev


def oracle_conv(x, w, b, pad, bits, mode):
    n_, c, h, wd = x.shape
    co, _, kh, kw = w.shape
    ho, wo = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    out = np.zeros((n_, co, ho, wo), np.int64)
    ev = 0
    for n in range(n_):
        for o in range(co):
            for oy in range(ho):
                for ox in range(wo):
                    terms = []
                    for ky in range(kh):  # channels innermost: im2col of channels-last data
                        for kx in range(kw):
                            for ci in range(c):
                                iy, ix = oy - pad + ky, ox - pad + kx
                                inside = 0 <= iy < h and 0 <= ix < wd
                                terms.append(int(x[n, ci, iy, ix]) * int(w[o, ci, ky, kx])
                                             if inside else 0)
                    out[n, o, oy, ox], e = _hls4ml_sum(terms, int(b[o]), bits, mode)
                    ev += e
    return out, ev


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(4, 14), mode=st.sampled_from(MODES),
       n=st.integers(1, 3), fin=st.integers(1, 9), fout=st.integers(1, 4))
def test_dense_hls4ml_order_equals_oracle(seed, bits, mode, n, fin, fout):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, fin))
    w = rng.integers(-128, 128, (fout, fin))
    b = rng.integers(-(1 << (bits + 1)), 1 << (bits + 1), fout)
    want, ev = oracle_dense(x, w, b, bits, mode)
    for backend in ("numba", "numpy"):
        got, stats = L.dense_int(x, w, b, acc_bits=bits, acc_overflow=mode, method="loop",
                                 backend=backend, acc_order="hls4ml")
        assert np.array_equal(got, want), backend
        assert stats.n_overflow == ev, backend


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(4, 14), mode=st.sampled_from(MODES),
       c=st.integers(1, 3), co=st.integers(1, 3), k=st.integers(1, 3), pad=st.integers(0, 1))
def test_conv2d_hls4ml_order_equals_oracle(seed, bits, mode, c, co, k, pad):
    rng = np.random.default_rng(seed)
    x = rng.integers(-64, 64, (2, c, 4, 4))
    w = rng.integers(-64, 64, (co, c, k, k))
    b = rng.integers(-(1 << bits), 1 << bits, co)
    want, ev = oracle_conv(x, w, b, pad, bits, mode)
    for backend in ("numba", "numpy"):
        got, stats = L.conv2d_int(x, w, b, pads=(pad,) * 4, acc_bits=bits, acc_overflow=mode,
                                  method="loop", backend=backend, acc_order="hls4ml")
        assert np.array_equal(got, want), backend
        assert stats.n_overflow == ev, backend


def test_the_orders_differ_only_when_saturating():
    """Negative control: the oracle's order is not fxp's (bias last, channels outermost)."""
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (64, 2, 5, 5))
    w = rng.integers(-128, 128, (3, 2, 3, 3))
    b = rng.integers(-(1 << 16), 1 << 16, 3)
    kw = dict(acc_bits=17, method="loop")
    sat = [L.conv2d_int(x, w, b, acc_overflow="saturate", acc_order=o, **kw)[0]
           for o in ("fxp", "hls4ml")]
    assert np.count_nonzero(sat[0] != sat[1]) > 0
    wrap = [L.conv2d_int(x, w, b, acc_overflow="wrap", acc_order=o, **kw)[0]
            for o in ("fxp", "hls4ml")]
    assert np.array_equal(*wrap)


def test_acc_order_in_plans_and_json():
    lp = LayerPlan("fc", weight=TensorSpec.pow2(8, 7), output=TensorSpec.pow2(8, 4),
                   acc_bits=18, acc_overflow="saturate", acc_order="hls4ml")
    plan = Plan(TensorSpec.pow2(8, 4), (lp,))
    d = plan_to_dict(plan)
    assert d["layers"][0]["acc_order"] == "hls4ml"
    assert plan_from_dict(d).layer("fc").acc_order == "hls4ml"
    assert "acc_order" not in plan_to_dict(Plan(TensorSpec.pow2(8, 4),
                                                (lp.with_(acc_order="fxp"),)))["layers"][0]
    d["layers"][0]["acc_order"] = 1
    with pytest.raises(PlanError, match=r"layer 'fc': 'acc_order' must be a string, got integer 1"):
        plan_from_dict(d, "p.json")
    d["layers"][0]["acc_order"] = "HLS4ML"
    with pytest.raises(PlanError, match=r"p.json: layer 'fc': acc_order must be one of"):
        plan_from_dict(d, "p.json")
    with pytest.raises(PlanError, match="acc_order 'hls4ml' is for fixed-point multiply"):
        LayerPlan("b", weight=TensorSpec.binary(), acc_order="hls4ml")
    with pytest.raises(FormatError, match="acc_order must be one of"):
        L.dense_int(np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64), acc_order="x")
