"""The seeded, resumable training loop shared by QAT and INQ.

Threads: one torch thread by default -- with fxp's Numba kernels (and anything else)
on the same cores, multi-threaded torch CPU kernels can run 100x slower.

Determinism: epoch ``e`` shuffles with ``numpy.random.default_rng([seed, e])``
and reseeds torch with ``(seed, e)`` before its first step (dropout), so a run
resumed from the checkpoint of epoch ``e`` takes the same steps as one that
never stopped (same machine and thread count; ``torch.use_deterministic_algorithms``).

Checkpoints: ``DIR/checkpoint.pt`` is rewritten atomically after every epoch
(parameters, optimizer state, plan, method state, history, and the run's
identity -- method, model, bits, seed...; resuming a different run in the
same folder is refused).

A checkpoint is untrusted input (anyone who can write ``DIR`` can plant one),
so it is read with ``torch.load(weights_only=True)``: no pickled object other
than tensors and plain data is ever constructed, so no code runs.  Its schema
(``schema: "fxp.checkpoint"``, ``schema_version: 1``) holds only tensors,
dicts, lists, tuples, str, int, float, bool and None:

* always: ``identity`` (dict), ``params`` (str -> tensor), ``plan`` (the plan's
  JSON dictionary, :func:`fxp.plan.io.plan_to_dict`), ``history`` (list of dicts);
* epoch runs (QAT, projected): ``epoch`` (int >= 0) and ``opt`` (optimizer
  state dict or None);
* INQ: ``stage``, ``done`` (int or None), ``masks`` (str -> bool tensor),
  ``formats`` (str -> dict), ``opt``.

:meth:`Checkpointer.save` converts numpy arrays to tensors, numpy scalars to
Python numbers and a :class:`~fxp.plan.plan.Plan` to its dictionary, and
refuses anything else; :meth:`Checkpointer.load` checks every key and type and
raises a one-line :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from enum import Enum
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fxp.errors import CheckpointError, FxpError
from fxp.fileio import write_with
from fxp.train import require_torch

torch = require_torch()
import torch.nn.functional as F  # noqa: E402

__all__ = ["CHECKPOINT", "CheckpointError", "Checkpointer", "TrainConfig", "TrainResult",
           "accuracy", "make_optimizer", "end_epoch", "resume_epochs", "run_epoch", "setup_torch"]

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_SCHEMA = "fxp.checkpoint"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the same for every method).

    ``epochs`` is per run for QAT and per INQ stage (three retrained stages).
    ``steps_per_epoch`` caps the steps of an epoch (small tests).
    """

    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    seed: int = 0
    threads: int | None = 1
    dropout: float = 0.0
    shift: int = 0
    steps_per_epoch: int | None = None
    eval_each_epoch: bool = True
    progress: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a training run returns (``net`` is the FxpNet, quantized forward = the plan)."""

    net: object
    plan: object
    history: list[dict] = field(default_factory=list)
    eval_top1: float | None = None
    eval_predictions: np.ndarray | None = None
    eval_logits: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def setup_torch(cfg: TrainConfig) -> None:
    """Threads and deterministic kernels."""
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.use_deterministic_algorithms(True)


def make_optimizer(params, cfg: TrainConfig):
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    raise FxpError(f"optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")


def _shift_batch(x: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to ``shift`` pixels, filling with its own corner value."""
    if shift == 0 or x.ndim != 4:
        return x
    n, _, h, w = x.shape
    bg = x[:, :, :1, :1]
    padded = np.pad(x - bg, ((0, 0), (0, 0), (shift, shift), (shift, shift))) + bg
    dy = rng.integers(0, 2 * shift + 1, n)
    dx = rng.integers(0, 2 * shift + 1, n)
    return np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def run_epoch(net, opt, x: np.ndarray, y: np.ndarray, cfg: TrainConfig, epoch: int, *,
              quant: bool, after_step=None, desc: str = "train") -> float:
    """One epoch of cross-entropy training on the (fake-quantized) logits; mean loss."""
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(int(cfg.seed) * 1_000_003 + int(epoch))
    order = rng.permutation(len(x))
    starts = list(range(0, len(order), cfg.batch_size))
    if cfg.steps_per_epoch is not None:
        starts = starts[:cfg.steps_per_epoch]
    bar = starts
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(starts, desc=desc, unit="step", leave=False, disable=None)
    net.train()
    total, count = 0.0, 0
    for s in bar:
        idx = order[s:s + cfg.batch_size]
        xb = _shift_batch(x[idx], cfg.shift, rng)
        logits = net(torch.from_numpy(np.ascontiguousarray(xb, np.float32)), quant=quant)
        loss = F.cross_entropy(logits, torch.from_numpy(np.asarray(y[idx], np.int64)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
        if cfg.progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def accuracy(net, x: np.ndarray, y: np.ndarray, *, quant: bool = True) -> tuple[float, np.ndarray,
                                                                                 np.ndarray]:
    """``(top-1, predictions, logits)`` of the (fake-quantized) net."""
    pred, logits = net.predict(x, quant=quant)
    return float(np.mean(pred == y)), pred, logits


def _plain(obj, where: str, depth: int = 0):
    """``obj`` as checkpoint data (module docstring); FxpError on anything else."""
    from fxp.plan.plan import Plan

    if depth > 32:
        raise FxpError(f"cannot checkpoint {where}: nested deeper than 32 levels")
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Enum):
        return _plain(obj.value, where, depth + 1)
    for base in (bool, int, float, str):  # subclasses pickle by reference: plain base values
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, np.generic) and not isinstance(obj, np.object_):
        return _plain(obj.item(), where, depth + 1)
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, Plan):
        from fxp.plan.io import plan_to_dict

        return plan_to_dict(obj)
    if isinstance(obj, dict):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            key = _plain(k, where, depth + 1)
            if type(key) not in (str, int):
                raise FxpError(f"cannot checkpoint {where}: key {k!r} is not a str or int")
            out[key] = _plain(v, f"{where}[{k!r}]", depth + 1)
        if isinstance(getattr(obj, "_metadata", None), dict):  # module state_dict versions
            out._metadata = _plain(obj._metadata, where, depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj))
    raise FxpError(f"cannot checkpoint {where}: {type(obj).__name__} is not a tensor or plain "
                   "data (convert it to a dict, list, str or number first)")


def _check_plain(obj, where: str, fail, depth: int = 0) -> None:
    """Only tensors, dicts (str/int keys), lists, tuples, str, int, float, bool, None."""
    if depth > 32:
        fail(f"{where} is nested deeper than 32 levels")
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return
    if type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            if type(k) not in (str, int):
                fail(f"{where} has a key of type {type(k).__name__}")
            _check_plain(v, f"{where}[{str(k)[:40]!r}]", fail, depth + 1)
    elif type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]", fail, depth + 1)
    else:
        fail(f"{where} is a {type(obj).__name__}, not a tensor or plain data")


def _check_schema(state, fail) -> None:
    """Required keys and their types (module docstring)."""
    if not isinstance(state, dict):
        fail(f"it holds a {type(state).__name__}, not a dict")
    _check_plain(state, "the checkpoint", fail)
    if "schema" in state and (state["schema"] != CHECKPOINT_SCHEMA
                              or state.get("schema_version") != CHECKPOINT_VERSION):
        fail(f"schema {str(state['schema'])[:80]!r} version "
             f"{str(state.get('schema_version'))[:20]}; expected {CHECKPOINT_SCHEMA!r} version "
             f"{CHECKPOINT_VERSION}")

    def need(key, ok, what):
        if key not in state:
            fail(f"key {key!r} is missing")
        if not ok(state[key]):
            fail(f"{key!r} must be {what}, got {type(state[key]).__name__}")

    def int_ge0(v) -> bool:
        return type(v) is int and v >= 0

    def tensors(v, dtype=None) -> bool:
        return isinstance(v, dict) and all(
            isinstance(k, str) and isinstance(t, torch.Tensor)
            and (dtype is None or t.dtype == dtype) for k, t in v.items())

    need("identity", lambda v: isinstance(v, dict), "a dict")
    need("params", lambda v: bool(v) and tensors(v), "a non-empty dict of name -> tensor")
    need("plan", lambda v: isinstance(v, dict), "a plan dictionary")
    need("history", lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
         "a list of dicts")
    opt = state.get("opt")
    if opt is not None and not (isinstance(opt, dict) and isinstance(opt.get("state"), dict)
                                and isinstance(opt.get("param_groups"), list)):
        fail("'opt' must be an optimizer state dict ('state', 'param_groups') or None")
    if "stage" in state:
        need("stage", int_ge0, "an int >= 0")
        need("done", lambda v: v is None or int_ge0(v), "an int >= 0 or None")
        need("masks", lambda v: tensors(v, torch.bool), "a dict of name -> bool tensor")
        need("formats", lambda v: isinstance(v, dict) and set(v) == set(state["masks"]) and all(
            isinstance(f, dict) and isinstance(f.get("format"), str)
            and all(type(f.get(k)) is int for k in ("n1", "n2", "n2_eff")) for f in v.values()),
            "a dict of layer -> {format, n1, n2, n2_eff}, one per mask")
    else:
        need("epoch", int_ge0, "an int >= 0 (or an INQ 'stage')")


def _why(exc: BaseException) -> str:
    """One short line from a torch exception: the unpickler's reason if it gave one."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    m = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: Please use|$)", text, re.M)
    line = m.group(1) if m else (text.strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {line[:200]!r}"


class Checkpointer:
    """``DIR/checkpoint.pt``: load safely, check schema and identity, save atomically."""

    def __init__(self, out_dir: str | Path | None, identity: dict) -> None:
        self.dir = Path(out_dir) if out_dir is not None else None
        self.identity = _plain({k: (list(v) if isinstance(v, tuple) else v)
                                for k, v in identity.items()}, "identity")

    @property
    def path(self) -> Path | None:
        return self.dir / CHECKPOINT if self.dir is not None else None

    def _fail(self, why: str):
        raise CheckpointError(f"refusing to resume from {str(self.path)[:300]!r}: {why}; it is "
                              "not a valid fxp checkpoint (delete it or use another --out folder)")

    def load(self) -> dict | None:
        """The checkpoint's state, or None without one (see the module docstring).

        Raises
        ------
        CheckpointError
            The file cannot be read under ``weights_only`` (it holds objects other
            than tensors and plain data: never executed), breaks the schema, has an
            invalid plan, or belongs to another run.
        """
        if self.path is None or not (self.path.exists() or self.path.is_symlink()):
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure of an untrusted file is one error
            self._fail("it cannot be loaded as tensors and plain data only: it holds other "
                       f"objects (none was built, no code ran) or is corrupt ({_why(exc)})")
        try:
            _check_schema(state, self._fail)
        except RecursionError:
            self._fail("it is nested too deeply")
        from fxp.plan.io import plan_from_dict

        try:
            plan_from_dict(state["plan"], source=f"{self.path} plan")
        except FxpError as exc:
            self._fail(f"its plan is invalid ({str(exc)[:300]})")
        ident = state["identity"]
        if ident != self.identity:
            diff = {k: (ident.get(k), v) for k, v in self.identity.items() if ident.get(k) != v}
            raise CheckpointError(f"{self.path} belongs to another run (differs in "
                                  f"{str(diff)[:300]}); use another --out folder or delete the "
                                  "checkpoint")
        return state

    def restore(self, module, state_dict, what: str = "parameters") -> None:
        """``module.load_state_dict(state_dict)``; a mismatch is a :class:`CheckpointError`."""
        try:
            module.load_state_dict(state_dict)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            self._fail(f"its {what} do not fit this model ({_why(exc)})")

    def save(self, state: dict) -> None:
        """Write ``state`` plus schema and identity atomically (numpy/Plan converted)."""
        if self.path is None:
            return
        data = _plain({**state, "identity": self.identity}, "checkpoint")
        data = {"schema": CHECKPOINT_SCHEMA, "schema_version": CHECKPOINT_VERSION, **data}
        write_with(self.path, lambda tmp: torch.save(data, tmp))


def resume_epochs(net, ck: Checkpointer, cfg: TrainConfig, make_plan):
    """Restore an epoch-based run from ``ck`` (or start one): ``(plan, opt, start, history)``.

    With a checkpoint the parameters, plan, optimizer state, next epoch and
    history come from it; otherwise ``make_plan()`` gives the plan and the run
    starts at epoch 0.  The plan is set on ``net`` before the optimizer is made.
    """
    from fxp.plan.io import plan_from_dict

    state = ck.load()
    if state is not None:
        ck.restore(net, state["params"])
        plan = plan_from_dict(state["plan"])
        start, history = int(state["epoch"]), list(state["history"])
    else:
        plan, start, history = make_plan(), 0, []
    net.set_plan(plan)
    opt = make_optimizer(net.parameters(), cfg)
    if state is not None and state.get("opt") is not None:
        ck.restore(opt, state["opt"], "optimizer state")
    return plan, opt, start, history


def end_epoch(net, opt, ck: Checkpointer, plan, history: list, ep: int, loss: float, t0: float,
              eval_x, eval_y, cfg: TrainConfig, log=None) -> dict:
    """Close epoch ``ep`` of a run :func:`resume_epochs` started: evaluate, log, checkpoint."""
    from fxp.plan.io import plan_to_dict

    acc = accuracy(net, eval_x, eval_y)[0] if cfg.eval_each_epoch else None
    row = epoch_row(ep + 1, loss, acc, t0)
    history.append(row)
    if log is not None:
        log(row)
    ck.save({"epoch": ep + 1, "params": net.state_dict(), "opt": opt.state_dict(),
             "plan": plan_to_dict(plan), "history": history})
    return row


def epoch_row(epoch: int, loss: float, eval_acc: float | None, t0: float, **extra) -> dict:
    row = {"epoch": epoch, "loss": round(loss, 5), "eval_top1": eval_acc,
           "seconds": round(time.perf_counter() - t0, 1)}
    row.update(extra)
    return row
