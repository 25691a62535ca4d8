"""``benchmarks/bench_fidelity_all.py``: every plan under the budget, in the order its prefix
cache needs, the reversal count, and the prefix-cached engine against ``simulate``."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.benchmarks.strategies import grids

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_fidelity_all as bench  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(grids())
def test_plans_under_is_every_plan_cheaper_than_the_budget_in_lexicographic_order(grid):
    cost, below = grid
    brute = [p for p in itertools.product(*(range(k) for k in cost.shape)) if cost[p] < below]
    assert bench.plans_under(cost, below) == brute  # product() is lexicographic


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3).flatmap(lambda dims: st.dictionaries(
    st.tuples(*[st.integers(0, 3)] * dims), st.floats(0, 40, allow_nan=False), max_size=40)))
def test_reversals_are_the_unit_steps_up_that_measure_lower(measured):
    pairs = [(p, q) for p in measured for q in measured
             if sum(b - a for a, b in zip(p, q, strict=True)) == 1
             and all(b >= a for a, b in zip(p, q, strict=True))]
    drops = [measured[p] - measured[q] for p, q in pairs if measured[q] < measured[p]]
    r = bench.reversals(measured)
    assert r["pairs"] == len(pairs)
    assert r["reversals"] == len(drops)
    assert r["over_0.1_db"] == sum(d > 0.1 for d in drops)
    assert r["largest_db"] == max(drops, default=0.0)
    if drops:
        p, q = (tuple(v) for v in r["largest_at"])
        assert measured[p] - measured[q] == r["largest_db"]


@pytest.fixture(scope="module")
def mnist():
    from fxp import workflow as fw
    from fxp.opt import measure_noise

    g = fw.load_model("mnist_cnn")
    d = fw.load_data("mnist5k", g, limit=160)
    nt = measure_noise(g, d.x[:64], weight_method="sqnr", n_measure=None)
    return g, d, nt


def test_the_prefix_cached_engine_gives_the_integers_simulate_gives(mnist):
    """Plans sharing one, two or no weight widths with the one before, and a return to an
    evicted prefix: the logits equal the integer engine's, the SQNR simulate's, to the bit."""
    from fxp.opt import plan_for_widths
    from fxp.opt.model import BIAS_GUARD_BITS
    from fxp.sim.compile import compile_plan
    from fxp.sim.evaluate import simulate, sqnr_db
    from fxp.sim.float_ref import run_float
    from fxp.sim.integer import logits_tensor, run_integer
    from fxp.sim.values import to_float

    g, d, nt = mnist
    x, y = d.x[64:], d.y[64:]
    weights = [t for t in nt.tensors if t.kind == "weight"]
    engine = bench.PrefixCachedEngine(g, x, [t.layer for t in weights])
    seq = [(3, 2, 4), (3, 2, 5), (3, 4, 2), (8, 6, 6), (8, 6, 7), (3, 2, 4)]
    runs = []
    for widths in seq:
        w = dict.fromkeys(nt.names, max(nt.widths))
        w.update({t.name: b for t, b in zip(weights, widths, strict=True)})
        model = compile_plan(g, plan_for_widths(g, x, nt, w, bias_guard=BIAS_GUARD_BITS))
        lt = logits_tensor(model)
        before = engine.steps_run
        q = engine.logits(model, widths)
        runs.append(engine.steps_run - before)
        want = to_float(run_integer(model, x, keep=True).values[lt]).astype(np.float64)
        np.testing.assert_array_equal(q, want)
        ref = run_float(g, x, tensors=[lt])[lt].astype(np.float64)
        got_db = sqnr_db(float(np.sum(ref * ref)), float(np.sum((q - ref) ** 2)))
        assert got_db == pytest.approx(simulate(g, model, x, y).output_sqnr_db, abs=1e-9)
    n = len(g.nodes)
    # the cache was used: only the steps after the changed width ran
    assert runs[0] == runs[3] == runs[5] == n
    assert runs[1] < runs[2] < n and runs[4] == runs[1]


def test_first_plans_take_the_whole_split_rows_and_refuse_mixed_split_orders(tmp_path):
    """Rows come from whole-held-out-split runs only, sorted by target, with their split
    seed (None for runs before the seed existed); files of two orders are refused."""
    import json

    def run(seed, targets, evaluated=(2000, 5000)):
        res = {"model": "m", "held_out_evaluated": list(evaluated),
               "targets": [{"target_db": t, "first_cost": t} for t in targets]}
        if seed != "absent":
            res["settings"] = {"split_seed": seed}
        return [res]

    (tmp_path / "m_a.json").write_text(json.dumps(run(0, [14.0, 10.0])))
    (tmp_path / "m_b.json").write_text(json.dumps(run(0, [12.0], evaluated=(2000, 3000))))
    rows, seed, confidence, ww = bench.first_plans("m", tmp_path)
    assert [r["target_db"] for r in rows] == [10.0, 14.0] and seed == 0 and confidence == 0
    assert ww is None
    (tmp_path / "m_c.json").write_text(json.dumps(run("absent", [16.0])))
    with pytest.raises(SystemExit, match="mix split seeds, confidences or weight widths"):
        bench.first_plans("m", tmp_path)
    (tmp_path / "m_a.json").unlink()
    assert bench.first_plans("m", tmp_path)[1] is None
    small = run(0, [18.0])
    small[0]["settings"]["weight_widths"] = [2, 10]
    (tmp_path / "m_c.json").write_text(json.dumps(small))
    assert bench.first_plans("m", tmp_path)[3] == (2, 10)


def test_stored_measurements_are_read_only_from_a_run_with_the_same_settings(tmp_path):
    """An earlier run's measurements come back keyed by grid index, from plain or gzipped
    JSON; a run on another split seed, confidence or weight range is refused."""
    import gzip
    import json

    run = [{"model": "m", "split_seed": 0, "confidence": 0.95, "weight_widths": [2, 10],
            "measured": [{"index": [1, 2], "db": 20.5, "calibration_db": 20.7,
                          "calibration_se_db": 0.1}]}]
    plain, packed = tmp_path / "a.json", tmp_path / "a.json.gz"
    plain.write_text(json.dumps(run))
    with gzip.open(packed, "wt") as f:
        json.dump(run, f)
    for path in (plain, packed):
        assert bench.stored_measurements(path, "m", 0, 0.95, (2, 10)) == {
            (1, 2): (20.5, 20.7, 0.1)}
    assert bench.stored_measurements(None, "m", 0, 0.95, (2, 10)) == {}
    for other in ((1, 0.95, (2, 10)), (0, 0.0, (2, 10)), (0, 0.95, None)):
        with pytest.raises(SystemExit, match="was measured with"):
            bench.stored_measurements(plain, "m", *other)
    with pytest.raises(SystemExit, match="no measurements of x"):
        bench.stored_measurements(plain, "x", 0, 0.95, (2, 10))
