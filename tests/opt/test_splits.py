"""The optimizer's three splits (fxp.opt.splits): a shuffled order, disjoint parts, and the
check that a given noise table was measured on the calibration part."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.errors import PlanError
from fxp.opt.splits import check_table_samples, split_data


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 400), st.data())
def test_parts_are_disjoint_cover_the_data_and_follow_the_seeded_order(n, data):
    calib = data.draw(st.integers(1, n))
    seed = data.draw(st.one_of(st.none(), st.integers(0, 2**31)))
    sp = split_data(n, calib, seed=seed)
    parts = [set(sp.indices(k).tolist()) for k in ("calibration", "selection", "held_out")]
    assert sum(map(len, parts)) == n and set().union(*parts) == set(range(n))
    assert [len(p) for p in parts] == [sp.calibration[1] - sp.calibration[0],
                                       sp.selection[1] - sp.selection[0], sp.held_out_size]
    order = (np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n))
    assert parts[0] == set(order[:calib].tolist())  # the first calib of the order
    assert split_data(n, calib, seed=seed).indices("held_out").tolist() == \
        sorted(parts[2])  # reproducible, and sorted
    assert sp.to_dict()["seed"] == seed


def test_the_default_order_is_shuffled_and_none_keeps_the_data_order():
    sp = split_data(5000, 1000)
    assert sp.seed == 0
    cal = sp.indices("calibration")
    assert len(cal) == 1000 and cal.max() > 4000 and cal.min() < 10  # spread over the data
    assert split_data(5000, 1000, seed=None).indices("calibration").tolist() == \
        list(range(1000))
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(PlanError, match="split seed"):
            split_data(10, 5, seed=bad)
    ext = split_data(100, 40, eval_size=30)
    with pytest.raises(PlanError, match="eval_data"):
        ext.indices("held_out")


def test_a_table_of_other_samples_is_refused():
    """A noise table measured on the first samples is refused for a shuffled calibration
    split and accepted for its own samples."""
    from fxp.opt import measure_noise
    from tests.opt.test_end_to_end import tiny_graph

    g = tiny_graph()
    x = np.random.default_rng(1).normal(0, 1, (200, 2, 6, 6)).astype(np.float32)
    cal = x[split_data(200, 100).indices("calibration")]
    table = measure_noise(g, cal, n_measure=50, widths=[4, 8])
    check_table_samples(g, table, cal)  # its own samples
    with pytest.raises(PlanError, match="other samples than the calibration split"):
        check_table_samples(g, table, x[:100])
    with pytest.raises(PlanError, match="more than"):
        check_table_samples(g, table, cal[:10])
