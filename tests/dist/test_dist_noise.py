"""fxp.dist: the optimizer's noise table and the quantizer sweep on 2 Dask workers equal the
in-process ones, bit for bit (and `fxp plan --target-sqnr --workers 2` prints the same JSON)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fxp import workflow as fw
from fxp.cli import main
from fxp.opt.noise import RANGE_BATCH, measure_noise
from fxp.quant.sweep import sweep

distributed = pytest.importorskip("distributed")

N = RANGE_BATCH + 44  # two range-scan batches: their (min, max) are combined across tasks


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """mnist_cnn and random raw pixels (an npz the CLI reads too)."""
    d = tmp_path_factory.mktemp("dist_noise")
    rng = np.random.default_rng(3)
    np.savez(d / "data.npz", x=rng.integers(0, 256, (N, 1, 28, 28)).astype(np.float32),
             y=rng.integers(0, 10, N))
    g = fw.load_model("mnist_cnn")
    return {"graph": g, "data": fw.load_data(f"npz:{d / 'data.npz'}", g),
            "npz": f"npz:{d / 'data.npz'}"}


@pytest.fixture(scope="module")
def client():
    from fxp.dist.cluster import open_client

    with open_client(workers=2) as c:
        yield c


def _same_table(a, b) -> None:
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())  # key order included
    assert np.array_equal(a.sqnr_db, b.sqnr_db)
    assert a.formats == b.formats
    assert a.ranges.keys() == b.ranges.keys()
    assert all(np.array_equal(a.ranges[t], b.ranges[t]) for t in a.ranges)
    assert a.errors is not None and np.array_equal(a.errors, b.errors)
    assert np.array_equal(a.reference, b.reference)


def test_noise_table_on_two_workers_is_the_in_process_table(setup, client):
    from fxp.dist.noise import measure_noise_dist

    kw = {"widths": (2, 3, 5, 8, 12), "n_measure": 24, "weight_method": "sqnr"}
    ref = measure_noise(setup["graph"], setup["data"].x, **kw)
    # something to get right: finite, width-dependent SQNRs, clipped weight formats
    assert np.all(np.isfinite(ref.sqnr_db)) and np.all(np.diff(ref.sqnr_db, axis=1) > 0)
    assert ref.n_samples == 24 and ref.errors.shape == (len(ref.tensors), 5, 24 * 10)
    with distributed.get_task_stream(client) as ts:
        got = measure_noise_dist(setup["graph"], setup["data"].x, client=client, **kw)
    _same_table(got, ref)
    # one task per (tensor, width) cell, spread over both workers, and two range-scan tasks
    ran = [(t["key"] if isinstance(t["key"], str) else t["key"][0], t["worker"]) for t in ts.data]
    cells = [w for k, w in ran if k.startswith("_cell_task")]
    assert len(cells) == 7 * 5 and len(set(cells)) == 2
    assert sum(k.startswith("_range_task") for k, _ in ran) == 2


def test_noise_table_percentile_ranges_and_a_tensor_subset(setup, client):
    from fxp.dist.noise import measure_noise_dist

    names = ["input", "conv2.weight", "fc1"]
    kw = {"widths": (4, 7), "n_measure": None, "method": "percentile", "tensors": names,
              "weight_method": "mse"}
    ref = measure_noise(setup["graph"], setup["data"].x[:60], **kw)
    got = measure_noise_dist(setup["graph"], setup["data"].x[:60], client=client, **kw)
    assert [t.name for t in got.tensors] == names and got.n_samples == 60
    _same_table(got, ref)


def test_sweep_on_two_workers_is_the_in_process_sweep(setup, client):
    from fxp.dist.sweep import sweep_dist

    data = fw.load_data(setup["npz"], setup["graph"], limit=40)
    args = (setup["graph"], data, "midtread,deadzone:0.4,kmeans,minifloat", "2,3,6")
    ref = sweep(*args, tolerance=0.05)
    assert len(ref.rows) == 3 * 3 + 2  # minifloat starts at 3 bits
    assert len({r.top1 for r in ref.rows}) > 1  # widths change the accuracy
    got = sweep_dist(*args, tolerance=0.05, client=client)
    assert json.dumps(got.to_dict()) == json.dumps(ref.to_dict())
    # through the workflow entry point too
    again = fw.sweep_quantizers(setup["graph"], data, quantizers=args[2], bits=args[3],
                                tolerance=0.05, client=client)
    assert again == ref


def test_cli_plan_target_sqnr_workers_2_gives_the_in_process_json(setup, capsys, monkeypatch):
    cp = pytest.importorskip("cvxpy")
    if "HIGHS" not in cp.installed_solvers():
        pytest.skip("no HiGHS")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    base = ["plan", "mnist_cnn", "--data", setup["npz"], "--limit", "64", "--target-sqnr",
            "25", "--calib", "24", "--max-bits", "10", "--json"]
    outs = []
    for extra in ([], ["--workers", "2"]):
        rc = main(base + extra)
        res = json.loads(capsys.readouterr().out)
        for k in ("solve_time_s", "total_time_s", "tries"):  # wall-clock times differ
            res.pop(k, None)
        outs.append((rc, res))
    assert outs[0][1]["widths"] and outs[0][1]["plan"]["layers"]
    assert outs[1] == outs[0]


def test_cli_sweep_workers_2_gives_the_in_process_json(setup, capsys, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    base = ["sweep", "mnist_cnn", "--data", setup["npz"], "--limit", "48", "--quantizers",
            "midtread,pow2", "--bits", "3,5", "--json"]
    outs = []
    for extra in ([], ["--workers", "2"]):
        rc = main(base + extra)
        outs.append((rc, json.loads(capsys.readouterr().out)))
    assert outs[0][0] == 0 and len(outs[0][1]["rows"]) == 4
    assert outs[1] == outs[0]


def test_cluster_options_where_no_noise_table_is_measured_are_refused(setup, capsys):
    assert main(["plan", "mnist_cnn", "--data", setup["npz"], "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--workers apply to optimized plans" in err and "\n" not in err
    assert main(["plan", "mnist_cnn", "--data", setup["npz"], "--target-sqnr", "20",
                 "--per-channel-weights", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--scheduler" in err and "--per-channel-weights has none" in err
