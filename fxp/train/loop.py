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
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fxp.errors import FxpError
from fxp.train import require_torch

torch = require_torch()
import torch.nn.functional as F  # noqa: E402

__all__ = ["CHECKPOINT", "Checkpointer", "TrainConfig", "TrainResult", "accuracy", "make_optimizer",
           "end_epoch", "resume_epochs", "run_epoch", "setup_torch"]

CHECKPOINT = "checkpoint.pt"


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


class Checkpointer:
    """``DIR/checkpoint.pt``: load, check identity, save atomically."""

    def __init__(self, out_dir: str | Path | None, identity: dict) -> None:
        self.dir = Path(out_dir) if out_dir is not None else None
        self.identity = {k: (list(v) if isinstance(v, tuple) else v) for k, v in identity.items()}

    @property
    def path(self) -> Path | None:
        return self.dir / CHECKPOINT if self.dir is not None else None

    def load(self) -> dict | None:
        if self.path is None or not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("identity") != self.identity:
            diff = {k: (state.get("identity", {}).get(k), v) for k, v in self.identity.items()
                    if state.get("identity", {}).get(k) != v}
            raise FxpError(f"{self.path} belongs to another run (differs in {diff}); use another "
                           "--out folder or delete the checkpoint")
        return state

    def save(self, state: dict) -> None:
        if self.path is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".pt.tmp")
        torch.save({**state, "identity": self.identity}, tmp)
        tmp.replace(self.path)


def resume_epochs(net, ck: Checkpointer, cfg: TrainConfig, make_plan):
    """Restore an epoch-based run from ``ck`` (or start one): ``(plan, opt, start, history)``.

    With a checkpoint the parameters, plan, optimizer state, next epoch and
    history come from it; otherwise ``make_plan()`` gives the plan and the run
    starts at epoch 0.  The plan is set on ``net`` before the optimizer is made.
    """
    from fxp.plan.io import plan_from_dict

    state = ck.load()
    if state is not None:
        net.load_state_dict(state["params"])
        plan = plan_from_dict(state["plan"])
        start, history = int(state["epoch"]), list(state["history"])
    else:
        plan, start, history = make_plan(), 0, []
    net.set_plan(plan)
    opt = make_optimizer(net.parameters(), cfg)
    if state is not None and state.get("opt") is not None:
        opt.load_state_dict(state["opt"])
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
