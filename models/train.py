"""Train a reference zoo model on the CPU and export it to ONNX.

Usage::

    python models/train.py mnist_cnn        # or lenet5, vgg7, fashion_cnn, resnet_small,
                                            # mobilenet_small, all
    python models/train.py vgg7 --epochs 2  # quick smoke run (writes to --out)

Seeded and deterministic on a given machine and thread count
(``torch.use_deterministic_algorithms``, fixed ``--threads``).  MNIST models
train on the 10,000 MNIST t10k images (``../shared/datasets/mnist`` or
``$FXP_MNIST_DIR``) and are evaluated on the disjoint ``mnist5k`` digits;
``fashion_cnn`` trains on Fashion-MNIST train (60k) and is evaluated on its
test split.  The final epoch is saved: there is no checkpoint selection on the
evaluation set.  The branched nets (``resnet_small``, ``mobilenet_small``) are
exported twice: ``<name>.onnx`` with BatchNormalization folded into the convs
and ``<name>_bn.onnx`` with the BatchNormalization nodes kept.  Needs
``pip install torch==2.13.0``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repo's fxp, without installing it

from archs import ARCHS, NETS, build_net, build_torch, count, export_net, net_macs, to_onnx

from fxp.data import Preprocess, load_dataset


@dataclass(frozen=True)
class Recipe:
    """How one model is trained."""

    train: str
    eval: str
    mean: float
    std: float
    epochs: int = 15
    batch: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    shift: int = 2  # random translation, pixels
    seed: int = 0


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
EPOCHS_NET = 20
RECIPES: dict[str, Recipe] = {
    "mnist_cnn": Recipe("mnist-t10k", "mnist5k", MNIST_MEAN, MNIST_STD, epochs=30),
    "lenet5": Recipe("mnist-t10k", "mnist5k", MNIST_MEAN, MNIST_STD, epochs=30),
    "vgg7": Recipe("mnist-t10k", "mnist5k", MNIST_MEAN, MNIST_STD, epochs=20, lr=1e-3),
    "fashion_cnn": Recipe("fashion-mnist:train", "fashion-mnist:test", 0.2860, 0.3530,
                          epochs=20, shift=1),
    "resnet_small": Recipe("mnist-t10k", "mnist5k", MNIST_MEAN, MNIST_STD, epochs=EPOCHS_NET,
                           lr=5e-3),
    "mobilenet_small": Recipe("mnist-t10k", "mnist5k", MNIST_MEAN, MNIST_STD, epochs=EPOCHS_NET,
                              lr=5e-3),
}


def shift_batch(x: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to ``shift`` pixels (zero fill)."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (shift, shift), (shift, shift)))
    dy = rng.integers(0, 2 * shift + 1, n)
    dx = rng.integers(0, 2 * shift + 1, n)
    return np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def torch_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        pred = np.concatenate([model(torch.from_numpy(x[i:i + 1000])).argmax(1).numpy()
                               for i in range(0, len(x), 1000)])
    return float((pred == y).mean())


def train(name: str, *, epochs: int | None, threads: int, out_dir: Path) -> dict:
    """Train, export and verify one model; returns the training log."""
    import torch
    import torch.nn.functional as F

    rec = RECIPES[name]
    if epochs is not None:
        rec = Recipe(**{**asdict(rec), "epochs": epochs})
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(rec.seed)
    rng = np.random.default_rng(rec.seed)

    pre = Preprocess(scale=1 / 255, mean=rec.mean, std=rec.std)
    tr, ev = load_dataset(rec.train), load_dataset(rec.eval)
    xtr, ytr = pre.apply(tr.x), tr.y
    xev, yev = pre.apply(ev.x), ev.y
    bg = np.float32((0 - rec.mean) / rec.std)  # value of a black pixel after preprocessing

    if name in NETS:
        model = build_net(name)
    else:
        model = build_torch(ARCHS[name])
        assert sum(p.numel() for p in model.parameters()) == count(ARCHS[name])[0]
    opt = torch.optim.Adam(model.parameters(), lr=rec.lr, weight_decay=rec.weight_decay)
    steps = rec.epochs * ((len(xtr) + rec.batch - 1) // rec.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=rec.lr, total_steps=steps)
    log: dict = {"model": name, "recipe": asdict(rec), "threads": threads, "epochs": []}
    t0 = time.perf_counter()
    for ep in range(rec.epochs):
        model.train()
        order = rng.permutation(len(xtr))
        total = 0.0
        for i in range(0, len(order), rec.batch):
            idx = order[i:i + rec.batch]
            xb = shift_batch(xtr[idx] - bg, rec.shift, rng) + bg  # shift in zero-pixel space
            logits = model(torch.from_numpy(np.ascontiguousarray(xb, np.float32)))
            loss = F.cross_entropy(logits, torch.from_numpy(ytr[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        acc = torch_accuracy(model, xev, yev)
        row = {"epoch": ep + 1, "loss": round(total / len(xtr), 5), "eval_acc": acc,
               "seconds": round(time.perf_counter() - t0, 1)}
        log["epochs"].append(row)
        print(json.dumps(row), flush=True)
    log["train_seconds"] = round(time.perf_counter() - t0, 1)

    extra = ARCHS[name].meta if name in ARCHS else {}
    meta = {**pre.to_metadata(), **extra, "fxp.model": name, "fxp.train.data": rec.train,
            "fxp.eval.data": rec.eval, "fxp.train.command": f"python models/train.py {name}"
            + (f" --threads {threads}" if threads != 2 else "")}
    if name in NETS:
        variants = {name: lambda m: export_net(model, NETS[name], m, fold_bn=True),
                    f"{name}_bn": lambda m: export_net(model, NETS[name], m, fold_bn=False)}
        softmax = False
    else:
        arch = ARCHS[name]
        weights = [(m.weight.detach().numpy(), m.bias.detach().numpy())
                   for m in model if hasattr(m, "weight")]
        variants = {name: lambda m: to_onnx(arch, weights, m)}
        softmax = arch.softmax
    import onnx

    from fxp.fileio import write_bytes, write_text

    for file_stem, export in variants.items():
        acc, max_diff = verify(export(meta), model, xev, yev, softmax=softmax)
        onnx_model = export({**meta, "fxp.eval.accuracy": f"{acc:.4f}"})
        dest = out_dir / name / f"{file_stem}.onnx"
        write_bytes(dest, onnx_model.SerializeToString())
        suffix = "" if file_stem == name else file_stem[len(name):]
        log.update({f"onnx{suffix}_accuracy": acc, f"torch_vs_onnx{suffix}_max_abs_diff": max_diff,
                    f"onnx{suffix}_bytes": dest.stat().st_size})
    if name in NETS:
        final = onnx.load(str(out_dir / name / f"{name}.onnx"))
        params = sum(int(np.prod(t.dims)) for t in final.graph.initializer)
        macs = net_macs(model, NETS[name])
    else:
        params, macs = count(ARCHS[name])
    log.update(parameters=params, macs=macs, torch=torch.__version__)
    write_text(dest.parent / "train_log.json", json.dumps(log, indent=1) + "\n")
    print(f"{name}: onnxruntime accuracy on {rec.eval} = {log['onnx_accuracy']:.4f}; "
          f"{params} params, {macs} MACs, {log['train_seconds']} s; wrote {dest.parent}")
    return log


def verify(onnx_model, model, x: np.ndarray, y: np.ndarray, *,
           softmax: bool) -> tuple[float, float]:
    """onnxruntime accuracy of the exported model and its max |diff| from torch."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x})[0]
    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
        ref = (torch.softmax(ref, 1) if softmax else ref).numpy()
    return float((out.argmax(1) == y).mean()), float(np.max(np.abs(out - ref)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", choices=[*ARCHS, *NETS, "all"])
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (fixed for determinism)")
    ap.add_argument("--out", type=Path, default=HERE, help="output root (default: models/)")
    args = ap.parse_args(argv)
    names = [*ARCHS, *NETS] if "all" in args.models else args.models
    for name in names:
        train(name, epochs=args.epochs, threads=args.threads, out_dir=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
