"""The standard error of a measured SQNR (fxp.sim.sqnr_error) against sampling itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.sim.sqnr_error import sample_powers, sqnr_standard_error_db


def _draw(rng, n, spread=0.8):
    """Per-sample signal and noise powers, the noise-to-signal ratio lognormal with log
    standard deviation ``spread`` (``lenet5``'s integer engine on ``mnist5k``: 0.70)."""
    s = rng.gamma(2.0, 1.0, n) + 0.1
    return s, s * rng.lognormal(-7.0, spread, n)


@pytest.mark.parametrize("n", [200, 1000])
def test_standard_error_is_the_spread_of_repeated_measurements(n):
    """2,000 independent measurements of ``n`` samples each: the spread (standard
    deviation) of their SQNRs in dB matches the delta-method standard error (root mean
    square over the measurements) within 10%.  (With heavier tails it falls short: at a
    log spread of 1.2 and 200 samples by 5% in RMS, 14% in median.)"""
    rng = np.random.default_rng(7)
    db, se = [], []
    for _ in range(2000):
        s, q = _draw(rng, n)
        db.append(10 * math.log10(s.sum() / q.sum()))
        se.append(sqnr_standard_error_db(s, q))
    assert math.sqrt(np.mean(np.square(se))) == pytest.approx(np.std(db, ddof=1), rel=0.10)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 60), st.integers(0, 2**32 - 1),
       st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_standard_error_ignores_units_and_sample_order(n, seed, a, b):
    """Rescaling signal or noise (units, gain) shifts the SQNR, not its error; reordering
    the samples changes nothing; doubling every sample (the same ratios, 2N samples)
    shrinks it by about sqrt(2)."""
    rng = np.random.default_rng(seed)
    s, q = _draw(rng, n)
    se = sqnr_standard_error_db(s, q)
    assert math.isfinite(se) and se >= 0
    assert sqnr_standard_error_db(a * s, b * q) == pytest.approx(se, rel=1e-9, abs=1e-12)
    p = rng.permutation(n)
    assert sqnr_standard_error_db(s[p], q[p]) == pytest.approx(se, rel=1e-9, abs=1e-12)
    twice = sqnr_standard_error_db(np.tile(s, 2), np.tile(q, 2))
    exact = se * math.sqrt((n - 1) / (2 * n - 1))  # the same spread, ddof over 2N
    assert twice == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_degenerate_inputs():
    assert math.isnan(sqnr_standard_error_db(np.ones(1), np.ones(1)))
    assert math.isnan(sqnr_standard_error_db(np.ones(3), np.zeros(3)))  # no noise
    assert sqnr_standard_error_db(np.ones(4), np.full(4, 0.5)) == 0.0  # every sample alike
    with pytest.raises(ValueError, match="one length"):
        sqnr_standard_error_db(np.ones(3), np.ones(4))


def test_sample_powers_sum_over_every_axis_but_the_first():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(5, 3, 2)).astype(np.float32)
    q = f + rng.normal(size=f.shape).astype(np.float32)
    s, n = sample_powers(f, q)
    for i in range(5):
        assert s[i] == pytest.approx(float(np.sum(f[i].astype(np.float64) ** 2)), rel=1e-12)
        assert n[i] == pytest.approx(float(np.sum((q[i].astype(np.float64) - f[i]) ** 2)),
                                     rel=1e-12)


def test_simulate_reports_the_standard_error_of_its_output_sqnr():
    """``simulate``'s standard error is the formula applied to the float reference's and
    the integer engine's logits, computed here from ``run_float`` and ``run_integer``."""
    from fxp import workflow as fw
    from fxp.plan.ptq import ptq_pow2
    from fxp.sim.compile import compile_plan
    from fxp.sim.evaluate import simulate
    from fxp.sim.float_ref import run_float
    from fxp.sim.integer import logits_tensor, run_integer
    from fxp.sim.values import to_float

    g = fw.load_model("mnist_cnn")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (40, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    plan = ptq_pow2(g, x, weight_bits=5, act_bits=8)
    rep = simulate(g, plan, x, y)
    model = compile_plan(g, plan)
    name = logits_tensor(model)
    ref = np.asarray(run_float(g, x, tensors=[name])[name], np.float64)
    fixed = np.asarray(to_float(run_integer(model, x, keep=True).values[name]), np.float64)
    s = (ref ** 2).reshape(40, -1).sum(1)
    n = ((fixed - ref) ** 2).reshape(40, -1).sum(1)
    assert rep.output_sqnr_db == pytest.approx(10 * math.log10(s.sum() / n.sum()), abs=1e-6)
    z = s / s.mean() - n / n.mean()
    expect = 10 / math.log(10) * np.std(z, ddof=1) / math.sqrt(40)
    assert rep.output_sqnr_se_db == pytest.approx(expect, rel=1e-5)
    assert rep.to_dict()["output_sqnr_se_db"] == rep.output_sqnr_se_db
