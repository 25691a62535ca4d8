"""``benchmarks/bench_margin_tradeoff.py``: the ideal calibration-only pick and the held-out
optimum, against a direct scan with the margin written out."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_margin_tradeoff as bench  # noqa: E402

plan = st.fixed_dictionaries({"db": st.floats(5, 45), "calibration_db": st.floats(5, 45),
                              "calibration_se_db": st.floats(0.01, 0.5)})


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(plan, st.integers(1, 50)), min_size=1, max_size=30),
       st.lists(st.floats(8, 42), min_size=1, max_size=4),
       st.sampled_from([0.0, 0.5, 0.9, 0.95]))
def test_the_pick_is_the_cheapest_plan_clearing_its_margin(rows, targets, confidence):
    """The pick clears target + z * se * sqrt(1 + 1000/3000) on calibration and no cheaper
    plan does; the optimum measures >= target held out and no cheaper plan does."""
    plans = [p for p, _ in rows]
    costs = [float(c) for _, c in rows]
    z = statistics.NormalDist().inv_cdf(confidence) if confidence else 0.0

    def clears(k, t):
        return plans[k]["calibration_db"] >= t + z * plans[k]["calibration_se_db"] * math.sqrt(
            1 + bench.N_CALIBRATION / bench.N_HELD_OUT) * (confidence > 0)

    for t, (pick, best) in zip(targets, bench.ideal_picks(plans, costs, targets, confidence),
                               strict=True):
        clearing = [k for k in range(len(plans)) if clears(k, t)]
        meeting = [k for k in range(len(plans)) if plans[k]["db"] >= t]
        if clearing:
            assert pick in clearing and costs[pick] == min(costs[k] for k in clearing)
        else:
            assert pick is None
        if meeting:
            assert best in meeting and costs[best] == min(costs[k] for k in meeting)
        else:
            assert best is None
