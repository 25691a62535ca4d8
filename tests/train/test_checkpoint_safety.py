"""Training checkpoints are untrusted input: loading one never runs code (issue 24, part A).

``fxp train ... --out DIR`` resumes from ``DIR/checkpoint.pt``; it used to call
``torch.load(weights_only=False)``, so a planted pickle ran code before any
check.  The reproducer plants a pickle whose ``__reduce__`` creates a marker
file (and proves, as a control, that plain unpickling does create it); loading
must raise a one-line :class:`~fxp.errors.FxpError` and leave no marker.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fxp.errors import DataError, FxpError  # noqa: E402
from fxp.plan.io import plan_from_dict, plan_to_dict  # noqa: E402
from fxp.plan.ptq import ptq_pow2  # noqa: E402
from fxp.train.loop import CHECKPOINT, Checkpointer, CheckpointError, TrainConfig  # noqa: E402
from fxp.train.qat import train_qat  # noqa: E402

from tests.train.conftest import N_TRAIN  # noqa: E402

IDENT = {"method": "qat", "bits": 8, "seed": 0, "schedule": (0.5, 1.0)}


def plant_marker(path: str) -> None:
    """What the planted pickle calls when unpickled unsafely."""
    Path(path).write_text("code ran")


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return plant_marker, (self.marker,)


def _plant(path: Path, marker: Path, how: str) -> None:
    evil = {"identity": dict(IDENT), "epoch": 1, "params": Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "zip":
        torch.save(evil, path)
    elif how == "legacy":
        torch.save(evil, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))


def test_the_payload_is_live(tmp_path):
    """Control: unpickled the unsafe way, the payload does create its marker."""
    marker = tmp_path / "control"
    _plant(tmp_path / "c.pt", marker, "zip")
    torch.load(tmp_path / "c.pt", weights_only=False)
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle"])
def test_planted_pickle_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "marker"
    _plant(tmp_path / "run" / CHECKPOINT, marker, how)
    with pytest.raises(CheckpointError, match=r"refusing to resume from '.*checkpoint\.pt'.*"
                                              r"tensors and plain data only.*no code ran.*"
                                              r"Unsupported global.*plant_marker") as info:
        Checkpointer(tmp_path / "run", IDENT).load()
    assert isinstance(info.value, DataError)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_cli_train_exits_2_on_a_planted_checkpoint(digits, tmp_path, capsys):
    import onnx

    from fxp.cli import main
    from fxp.train.export import graph_to_onnx

    g, _ = digits
    model = tmp_path / "digits_cnn.onnx"
    onnx.save(graph_to_onnx(g), str(model))
    marker = tmp_path / "marker"
    _plant(tmp_path / "run" / CHECKPOINT, marker, "zip")
    rc = main(["train", "qat", str(model), "--data", "digits", "--limit", "200", "--epochs", "1",
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "refusing to resume" in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


# -- the schema: what is saved loads under weights_only; what loads is checked --------------

@pytest.fixture
def plan(digits):
    g, d = digits
    return ptq_pow2(g, d.x[:64])


def _state(plan) -> dict:
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {"epoch": np.int64(2), "params": lin.state_dict(), "opt": opt.state_dict(),
            "plan": plan, "history": [{"epoch": 1, "loss": np.float32(0.5), "eval_top1": None}],
            "extra": np.arange(4, dtype=np.int16)}


def test_save_converts_and_round_trips(tmp_path, plan):
    ck = Checkpointer(tmp_path, IDENT)
    state = _state(plan)
    ck.save(state)
    raw = torch.load(tmp_path / CHECKPOINT, weights_only=True)  # plain torch can read it
    assert raw["schema"] == "fxp.checkpoint" and raw["schema_version"] == 1
    got = ck.load()
    assert got["identity"] == {**IDENT, "schedule": [0.5, 1.0]}
    assert type(got["epoch"]) is int and got["epoch"] == 2
    assert type(got["history"][0]["loss"]) is float and got["history"][0]["loss"] == 0.5
    assert plan_from_dict(got["plan"]) == plan
    assert isinstance(got["params"], OrderedDict) and hasattr(got["params"], "_metadata")
    for k, v in state["params"].items():
        assert torch.equal(got["params"][k], v)
    assert torch.equal(got["extra"], torch.arange(4, dtype=torch.int16))
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
    ck.restore(lin, got["params"])
    ck.restore(opt, got["opt"], "optimizer state")
    assert opt.state_dict()["param_groups"] == state["opt"]["param_groups"]


def test_save_refuses_objects_that_would_not_load(tmp_path):
    with pytest.raises(FxpError, match=r"cannot checkpoint checkpoint\['x'\]: object is not"):
        Checkpointer(tmp_path, IDENT).save({"x": object()})
    assert not (tmp_path / CHECKPOINT).exists()


def _with(plan, /, **changes) -> dict:
    st = {"schema": "fxp.checkpoint", "schema_version": 1, "identity": {**IDENT,
          "schedule": [0.5, 1.0]}, "epoch": 1, "params": {"w": torch.zeros(2)}, "opt": None,
          "plan": plan_to_dict(plan), "history": []}
    st.update(changes)
    return {k: v for k, v in st.items() if v != "DROP"}


@pytest.mark.parametrize(("change", "msg"), [
    ({"params": "DROP"}, "key 'params' is missing"),
    ({"params": {}}, "'params' must be a non-empty dict of name -> tensor"),
    ({"params": {"w": [1.0]}}, "'params' must be a non-empty dict"),
    ({"epoch": -1}, "'epoch' must be an int >= 0"),
    ({"epoch": "3"}, "'epoch' must be an int >= 0"),
    ({"epoch": "DROP"}, "key 'epoch' is missing"),
    ({"history": "x"}, "'history' must be a list of dicts"),
    ({"opt": {"state": 1}}, "'opt' must be an optimizer state dict"),
    ({"schema": "other"}, "schema 'other' version 1; expected 'fxp.checkpoint'"),
    ({"plan": {"schema": "nope"}}, "its plan is invalid"),
    ({"stage": 0, "done": None, "masks": {"c": torch.zeros(2)}, "formats": {}},
     "'masks' must be a dict of name -> bool tensor"),
    ({"stage": 0, "done": None, "masks": {"c": torch.zeros(2, dtype=torch.bool)},
      "formats": {"c": {"format": "fixed<4,1>"}}}, "'formats' must be a dict of layer"),
    ({"identity": {"method": "inq"}}, "belongs to another run"),
])
def test_schema_violations_are_one_line_errors(tmp_path, plan, change, msg):
    torch.save(_with(plan, **change), tmp_path / CHECKPOINT)
    with pytest.raises(CheckpointError) as info:
        Checkpointer(tmp_path, IDENT).load()
    text = str(info.value)
    assert msg in text and str(tmp_path / CHECKPOINT) in text and "\n" not in text


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated"])
def test_corrupt_files_are_refused(tmp_path, content):
    (tmp_path / CHECKPOINT).write_bytes(content)
    with pytest.raises(CheckpointError, match="refusing to resume"):
        Checkpointer(tmp_path, IDENT).load()


def test_mismatched_parameters_are_refused(digits, tmp_path):
    g, d = digits
    torch.save(_with(ptq_pow2(g, d.x[:64]), identity={"method": "qat", "bits": 8,
                                                      "act_bits": None, "granularity": "whole",
                                                      "scratch": False, "rounding": "half_up",
                                                      "seed": 0}), tmp_path / CHECKPOINT)
    with pytest.raises(CheckpointError, match="its parameters do not fit this model"):
        train_qat(g, d.x[:64], d.y[:64], bits=8, config=TrainConfig(epochs=1), out_dir=tmp_path)


# -- resuming an ordinary run still works ------------------------------------------------

def test_qat_resume_round_trip_is_exact(digits, tmp_path):
    g, d = digits
    x, y = d.x[:N_TRAIN], d.y[:N_TRAIN]
    cfg = lambda e: TrainConfig(epochs=e, lr=1e-3, batch_size=32, steps_per_epoch=4,  # noqa: E731
                                seed=2, eval_each_epoch=False)
    kw = dict(bits=6, calib=64, eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    a = train_qat(g, x, y, config=cfg(2), out_dir=tmp_path / "a", **kw)
    train_qat(g, x, y, config=cfg(1), out_dir=tmp_path / "b", **kw)
    saved = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert saved["epoch"] == 1 and saved["schema"] == "fxp.checkpoint"
    b = train_qat(g, x, y, config=cfg(2), out_dir=tmp_path / "b", **kw)
    assert [h["epoch"] for h in b.history] == [1, 2]
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.plan == b.plan
    np.testing.assert_array_equal(a.eval_logits, b.eval_logits)


def test_inq_checkpoint_passes_the_schema(digits, tmp_path):
    from fxp.train.inq import train_inq

    g, d = digits
    kw = dict(bits=4, calib=64, schedule=(0.5, 1.0),
              config=TrainConfig(epochs=1, batch_size=32, steps_per_epoch=3, seed=1,
                                 eval_each_epoch=False), out_dir=tmp_path)
    a = train_inq(g, d.x[:256], d.y[:256], **kw)
    raw = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert raw["stage"] == 2 and set(raw["masks"]) == set(raw["formats"])
    b = train_inq(g, d.x[:256], d.y[:256], **kw)  # resumes the finished run from its file
    assert a.plan == b.plan
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
