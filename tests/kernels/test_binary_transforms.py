"""Binary output transforms and binarization, against exact Fraction references.

Invariants:

* ``binary_threshold(dot, *sign_thresholds(a, b))`` equals
  ``sign(a*dot + b)`` (``sign(0) = +1``) computed with Fractions, for positive,
  negative and zero gains, ties (``a*dot + b == 0``) included;
* ``binary_scale_int`` equals ``round(scale * [beta] * dot + bias)`` rounded
  exactly with the named mode and overflowed into the output format;
* ``xnor_beta`` equals the exact mean of ``|x|`` over each receptive field;
* ``binarize`` maps 0 and -0.0 to +1; ``binarize_weights`` alphas equal
  ``quantize(mean|W|)``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode
from fxp.errors import FormatError, HeadroomError
from fxp.ops import binary as ob
from fxp.ops.fixed import quantize
from fxp.quant import binary as qb
from tests import oracles_binary as ref
from tests.strategies import DETERMINISTIC, OVERFLOW

GAINS = st.one_of(st.just(0), st.integers(-9, 9),
                  st.fractions(Fraction(-20), Fraction(20), max_denominator=64),
                  st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))


@settings(max_examples=200)
@given(st.data())
@example(None)
def test_thresholds_equal_exact_sign(data):
    """sign(a*dot+b) with Fractions == folded integer threshold, per channel."""
    if data is None:  # ties: a*dot + b == 0 at dot = 2 (+1), sign flips for negative a
        a, b = [Fraction(1, 2), Fraction(-1, 2), 0, 0], [-1, 1, 0, Fraction(-1, 3)]
        k = 5
    else:
        c = data.draw(st.integers(1, 5))
        a = data.draw(st.lists(GAINS, min_size=c, max_size=c))
        k = data.draw(st.integers(1, 300))
        # b chosen so that -b/a often lands on a reachable dot (exact ties)
        b = [(-Fraction(ai) * data.draw(st.integers(-k, k)) if data.draw(st.booleans())
              else data.draw(GAINS)) for ai in a]
    t, d = qb.sign_thresholds(a, b)
    dots = np.arange(-k, k + 1, dtype=np.int64)
    x = np.broadcast_to(dots[:, None], (dots.size, len(a))).copy()
    got = ob.binary_threshold(x, t, d)
    want = [[ref.threshold(int(v), Fraction(ai), Fraction(bi)) for ai, bi in zip(a, b)]
            for v in dots]
    assert got.dtype == np.int8 and got.tolist() == want


def _fmt(draw, lo_bits=2, hi_bits=12):
    return QFormat.from_frac(draw(st.integers(lo_bits, hi_bits)), draw(st.integers(-3, 10)),
                             draw(st.booleans()))


@settings(max_examples=200)
@given(st.data())
def test_scale_output_equals_fraction_reference(data):
    """alpha/BN-scaled fixed-point output == exact rounding of the rational value."""
    conv = data.draw(st.booleans())
    n, c = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    shape = (n, c, 2, 2) if conv else (n, c)
    kmax = data.draw(st.integers(1, 600))
    dot = np.array(data.draw(st.lists(st.integers(-kmax, kmax), min_size=int(np.prod(shape)),
                                      max_size=int(np.prod(shape)))), np.int64).reshape(shape)
    s_fmt, out = _fmt(data.draw), _fmt(data.draw, 2, 16)
    scale = [data.draw(st.integers(s_fmt.min_code, s_fmt.max_code)) for _ in range(c)]
    kw = {}
    bias, b_fmt, beta, t_fmt = None, None, None, None
    if data.draw(st.booleans()):
        b_fmt = _fmt(data.draw)
        bias = [data.draw(st.integers(b_fmt.min_code, b_fmt.max_code)) for _ in range(c)]
        kw.update(bias=bias, bias_fmt=b_fmt)
    if data.draw(st.booleans()):
        t_fmt = QFormat.from_frac(data.draw(st.integers(2, 10)), data.draw(st.integers(0, 8)),
                                  False)
        bshape = (n, 2, 2) if conv else (n,)
        beta = np.array(data.draw(st.lists(st.integers(0, t_fmt.max_code),
                                           min_size=int(np.prod(bshape)),
                                           max_size=int(np.prod(bshape))))).reshape(bshape)
        kw.update(beta=beta, beta_fmt=t_fmt)
    rounding = data.draw(st.sampled_from(DETERMINISTIC))
    overflow = data.draw(st.sampled_from(OVERFLOW))
    got, n_over = ob.binary_scale_int(dot, scale, s_fmt, out, rounding=rounding,
                                      overflow=overflow, **kw)
    lo, hi = intmath._range_for(out, OverflowMode.from_string(overflow))
    events = 0
    for idx in np.ndindex(*shape):
        ch = idx[1]
        bt = None if beta is None else int(beta[(idx[0],) + idx[2:]])
        want, over = ref.scale_output(
            int(dot[idx]), scale[ch], s_fmt.frac_bits, None if bias is None else bias[ch],
            0 if b_fmt is None else b_fmt.frac_bits, bt, 0 if t_fmt is None else t_fmt.frac_bits,
            out.frac_bits, out.bits, out.signed, lo, hi, rounding, overflow)
        assert got[idx] == want, (idx, rounding, overflow)
        events += over
    assert n_over == events


@settings(max_examples=100)
@given(st.data())
def test_xnor_beta_equals_exact_mean(data):
    """beta == round(mean |x| over the receptive field), padded taps 0, divisor kh*kw*C."""
    x_fmt = QFormat.from_frac(data.draw(st.integers(2, 10)), data.draw(st.integers(-2, 8)))
    beta_fmt = QFormat.from_frac(16, data.draw(st.integers(0, 12)), False)
    c, kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(
        st.integers(1, 3))
    pads = tuple(data.draw(st.integers(0, 1)) for _ in range(4))
    h = data.draw(st.integers(max(1, kh - pads[0] - pads[2]), kh + 2))
    w = data.draw(st.integers(max(1, kw - pads[1] - pads[3]), kw + 2))
    shape = (1, c, h, w)
    x = np.array(data.draw(st.lists(st.integers(x_fmt.min_code, x_fmt.max_code),
                                    min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
                           )).reshape(shape)
    rounding = data.draw(st.sampled_from(DETERMINISTIC))
    got = qb.xnor_beta(x, x_fmt, beta_fmt, (kh, kw), pads=pads, rounding=rounding,
                       overflow="saturate")
    want = ref.beta_conv(x.tolist(), x_fmt.frac_bits, kh, kw, (1, 1), pads, (1, 1),
                         beta_fmt.frac_bits, rounding)
    want = np.clip(np.array(want), beta_fmt.min_code, beta_fmt.max_code)
    assert np.array_equal(got, want)
    dense = qb.xnor_beta_dense(x.reshape(1, -1), x_fmt, beta_fmt, rounding=rounding)
    full = ref.beta_conv(x.tolist(), x_fmt.frac_bits, h, w, (1, 1), (0, 0, 0, 0), (1, 1),
                         beta_fmt.frac_bits, rounding)
    assert dense.tolist() == np.clip(np.array(full).ravel(), beta_fmt.min_code,
                                     beta_fmt.max_code).tolist()


def test_binarize_sign_of_zero_and_weights():
    assert qb.binarize([0.0, -0.0, -1e-300, 5, -3, 0]).tolist() == [1, 1, -1, 1, -1, 1]
    w = np.array([[0.5, -0.25, 0.0, 1.0], [-0.1, -0.1, -0.1, -0.1]])
    fmt = QFormat.from_frac(12, 10)
    bw = qb.binarize_weights(w, fmt)
    assert bw.signs.tolist() == [[1, -1, 1, 1], [-1, -1, -1, -1]]
    assert bw.alpha.tolist() == quantize([0.4375, 0.1], fmt)[0].tolist()
    with pytest.raises(FormatError, match="non-finite value nan at flat index 1"):
        qb.binarize([1.0, np.nan])


def test_fold_batchnorm_and_thresholds_match_float_bn():
    gamma, beta = np.array([2.0, -1.5, 0.0]), np.array([0.5, 0.25, -1.0])
    mean, var = np.array([3.0, -2.0, 1.0]), np.array([4.0, 1.0, 2.0])
    a, b = qb.fold_batchnorm(gamma, beta, mean, var, 0.0, scale=0.5)
    dots = np.arange(-20, 21)
    bn = gamma * (0.5 * dots[:, None] - mean) / np.sqrt(var) + beta
    assert np.allclose(a * dots[:, None] + b, bn)
    t, d = qb.sign_thresholds(a, b)
    got = ob.binary_threshold(np.repeat(dots[:, None], 3, axis=1), t, d)
    assert np.array_equal(got, np.where(bn >= 0, 1, -1))
    with pytest.raises(FormatError, match="var \\+ eps must be > 0"):
        qb.fold_batchnorm(gamma, beta, mean, -var, 0.0)


def test_transform_errors():
    dot = np.zeros((1, 2), np.int64)
    f = QFormat.from_frac(8, 4)
    with pytest.raises(FormatError, match="directions must be \\+1 or -1"):
        ob.binary_threshold(dot, [0, 0], [1, 0])
    with pytest.raises(FormatError, match="thresholds must hold 2 values"):
        ob.binary_threshold(dot, [0], [1, 1])
    with pytest.raises(FormatError, match="beta needs beta_fmt"):
        ob.binary_scale_int(dot, [1, 1], f, f, beta=np.ones(1, np.int64))
    with pytest.raises(FormatError, match="bias needs bias_fmt"):
        ob.binary_scale_int(dot, [1, 1], f, f, bias=[1, 1])
    with pytest.raises(FormatError, match="beta must have shape \\(1,\\)"):
        ob.binary_scale_int(dot, [1, 1], f, f, beta=np.ones((1, 2), np.int64), beta_fmt=f)
    with pytest.raises(FormatError, match="dot must be"):
        ob.binary_scale_int(np.zeros(3, np.int64), [1], f, f)
    with pytest.raises(HeadroomError, match="narrow the formats"):
        ob.binary_scale_int(np.full((1, 1), 1 << 40, np.int64), [1 << 30],
                            QFormat.from_frac(32, 0), QFormat.from_frac(8, 0))
    with pytest.raises(FormatError, match="a and b must have one value per channel"):
        qb.sign_thresholds([1, 2], [1])
    with pytest.raises(FormatError, match="not finite"):
        qb.sign_thresholds([float("inf")], [0])
    with pytest.raises(FormatError, match="stochastic rounding is not offered"):
        qb.xnor_beta_dense(np.ones((1, 2), np.int64), f, f, rounding="stochastic")
    with pytest.raises(HeadroomError, match="beyond int64"):
        qb.xnor_beta_dense(np.ones((1, 4), np.int64), QFormat.integer(63), f)
