"""fxp.dist: simulation spread over Dask workers gives the in-process report, bit for bit."""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest

from fxp import workflow as fw
from fxp.cli import main
from fxp.data import Preprocess
from fxp.dist.cluster import open_client
from fxp.dist.simulate import merge_counters, simulate_source
from fxp.dist.stream import CallableSource, NpySource
from fxp.errors import ClusterError, DataError
from fxp.sim.evaluate import simulate
from fxp.sim.integer import LayerCounters

N = 72


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """mnist_cnn, raw pixels on disk (.npy and .npz), and a narrow plan that saturates."""
    d = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 256, (N, 1, 28, 28)).astype(np.uint8)
    y = rng.integers(0, 10, N)
    np.save(d / "x.npy", raw)
    np.savez(d / "data.npz", x=raw.astype(np.float32), y=y)
    g = fw.load_model("mnist_cnn")
    data = fw.load_data(f"npz:{d / 'data.npz'}", g)
    plan = fw.make_plan(g, data, bits=3)
    plan_path = d / "plan.json"
    from fxp.plan.io import save_plan

    save_plan(plan, plan_path)
    return {"dir": d, "graph": g, "data": data, "plan": plan, "plan_path": plan_path, "y": y}


def _json(rep) -> str:
    return json.dumps(rep.to_dict(), sort_keys=True)


def _reference(s, **kw):
    return simulate(s["graph"], s["plan"], s["data"].x, s["data"].y, batch_size=10,
                    per_channel=True, **kw)


def test_chunked_in_process_matches_simulate(setup):
    ref = _reference(setup, method="loop")
    # the comparison is meaningful only if there is something to add up
    assert ref.total_output_saturations > 0
    assert any(r.max_abs_acc for r in ref.layers)
    for per_task in (1, 3, 8):
        rep = simulate_source(setup["graph"], setup["plan"], setup["data"].x, setup["data"].y,
                              batch_size=10, batches_per_task=per_task, per_channel=True,
                              method="loop")
        assert _json(rep) == _json(ref)


def test_npy_memmap_source_matches_in_memory_data(setup):
    g = setup["graph"]
    src = NpySource(setup["dir"] / "x.npy", Preprocess.from_metadata(dict(g.metadata)))
    assert src.n == N and src.sample_shape == (1, 28, 28)
    rep = simulate_source(g, setup["plan"], src, setup["y"], batch_size=10,
                          batches_per_task=2, per_channel=True)
    assert _json(rep) == _json(_reference(setup))


def test_merge_counters_adds_integers_and_takes_max():
    a = {"l": LayerCounters(acc_overflows=2, output_saturations=5, max_abs_acc=9,
                            acc_overflow_per_channel=np.array([1, 1]))}
    b = {"l": LayerCounters(acc_overflows=3, output_saturations=1, max_abs_acc=4,
                            blas_batches=1, acc_overflow_per_channel=np.array([0, 3]))}
    total: dict = {}
    merge_counters(total, a)
    merge_counters(total, b)
    t = total["l"]
    assert (t.acc_overflows, t.output_saturations, t.max_abs_acc, t.blas_batches) == (5, 6, 9, 1)
    assert t.acc_overflow_per_channel.tolist() == [1, 4]
    assert a["l"].acc_overflow_per_channel.tolist() == [1, 1]  # inputs untouched


def test_bad_sources_and_options_are_one_line_errors(setup, tmp_path):
    with pytest.raises(DataError, match="batches_per_task"):
        simulate_source(setup["graph"], setup["plan"], setup["data"].x, setup["data"].y,
                        batches_per_task=0)
    bad = CallableSource(lambda a, b: np.zeros((1, 1, 28, 28), np.float32), 4, (1, 28, 28))
    with pytest.raises(DataError, match=r"returned shape \(1, 1, 28, 28\).*\[0, 4\)"):
        simulate_source(setup["graph"], setup["plan"], bad, np.zeros(4, int))
    with pytest.raises(DataError, match="cannot memory-map"):
        NpySource(tmp_path / "missing.npy")
    with pytest.raises(ClusterError, match="not both"), open_client("tcp://127.0.0.1:1", 2):
        pass


def test_no_cluster_option_means_in_process(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with open_client() as client:
        assert client is None


# ----------------------------------------------------------------------------- on a cluster
def _read_or_die(path: str, marker: str, start: int, stop: int) -> np.ndarray:
    """A source that kills the worker process running it, once (the marker file says so)."""
    if start >= 30 and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)
    return np.load(path, mmap_mode="r")[start:stop]


def test_cli_workers_2_gives_the_in_process_json(setup, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    data = f"npz:{setup['dir'] / 'data.npz'}"
    base = ["simulate", "mnist_cnn", "--plan", str(setup["plan_path"]), "--data", data,
            "--batch-size", "8", "--exact", "--per-channel", "--json"]
    assert main(base) == 0
    ref = json.loads(capsys.readouterr().out)
    assert ref["total_output_saturations"] > 0
    assert main(base + ["--workers", "2", "--batches-per-task", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == ref


def test_a_worker_killed_mid_run_still_gives_the_same_answer(setup, tmp_path):
    pytest.importorskip("distributed")
    np.save(tmp_path / "x.npy", setup["data"].x)
    marker = tmp_path / "killed"
    fn = functools.partial(_read_or_die, str(tmp_path / "x.npy"), str(marker))
    src = CallableSource(fn, N, (1, 28, 28))
    ref = _reference(setup)
    with open_client(workers=2) as client:
        pids = set(client.run(os.getpid).values())
        rep = simulate_source(setup["graph"], setup["plan"], src, setup["data"].y,
                              client=client, batch_size=10, per_channel=True)
    assert marker.exists() and int(marker.read_text()) in pids  # a worker did die
    assert _json(rep) == _json(ref)
