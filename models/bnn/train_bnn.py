"""Train the binarized MNIST reference network ``bnn_mnist`` and export ONNX + JSON.

Usage::

    python models/bnn/train_bnn.py                 # 5 epochs, writes models/bnn/
    python models/bnn/train_bnn.py --epochs 2 --out /tmp/bnn   # smoke run

A binarized ``mnist_cnn`` variant (BNN, Courbariaux et al. 2016), trained with
the straight-through estimator (``d sign(x)/dx = 1`` for ``|x| <= 1``, else 0,
as XNOR-Net eq. 4) on the 10,000 MNIST t10k images, evaluated on ``mnist5k``:

====== ============================================ ==============================
layer  computation                                   precision
====== ============================================ ==============================
conv1  32@3x3 valid on raw pixels 0..255             int8 weights (power-of-two
       -> BN -> sign -> maxpool 2        (28->26->13) scale), integer accumulator
conv2  64@3x3 valid -> BN -> sign -> maxpool 2 (->5)  binary weights, binary input
conv3  64@3x3 pad 1 (zero padding) -> BN -> sign      binary, ``pad_value = 0``
fc1    1600 -> 128 -> BN -> sign                      binary
fc2    128 -> 10 (logits)                             int8 weights, int32 bias
====== ============================================ ==============================

``sign(0) = +1`` everywhere.  Binary layers use ``sign`` of latent weights
clipped to [-1, 1]; the first and last layers keep 8-bit weights
(fake-quantized during training with a per-layer power-of-two scale).

Export (after the final epoch; no checkpoint selection on the evaluation set):
each BatchNorm+sign is folded into one integer threshold per channel
(:func:`fxp.quant.binary.sign_thresholds`, exact rationals), and the
**float-emulated binarized model** ``bnn_mnist.onnx`` computes exactly those
integers in float32 (Conv/Gemm on integer-valued tensors below 2**24, then
``Where(D*(acc - T) >= 0, +1, -1)``): its logits are integers.  ``bnn_mnist.json``
holds the bit-packed binary weights (fxp/LCE convention), thresholds,
directions, XNOR-Net alphas and the int8 codes.  Needs ``pip install torch``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repo's fxp, without installing it

from fxp.core.format import QFormat  # noqa: E402
from fxp.data import load_dataset  # noqa: E402
from fxp.ops.binary import pack_bits, pack_conv_weights  # noqa: E402
from fxp.quant.binary import binarize_weights, fold_batchnorm, sign_thresholds  # noqa: E402

TRAIN, EVAL = "mnist-t10k", "mnist5k"
ALPHA_FMT = QFormat(16, 1, signed=False)  # ufixed<16,1>: alpha = mean|W| in [0, 1]
SEED = 0


def frac_bits(w: np.ndarray, bits: int = 8) -> int:
    """Power-of-two scale: the most fractional bits with max|w| inside ``bits`` signed bits."""
    m = float(np.max(np.abs(w)))
    return bits - 1 - math.ceil(math.log2(m)) if m > 0 else 0


def build(torch_mod):
    torch, nn, F = torch_mod.torch, torch_mod.nn, torch_mod.F

    from fxp.train.bnn import ste_ops

    sign_ste, fake_quant = ste_ops(torch)

    class BNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(32)
            self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
            self.bn2 = nn.BatchNorm2d(64)
            self.conv3 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(64)
            self.fc1 = nn.Linear(1600, 128, bias=False)
            self.bn4 = nn.BatchNorm1d(128)
            self.fc2 = nn.Linear(128, 10)

        def binary_params(self):
            return [self.conv2.weight, self.conv3.weight, self.fc1.weight]

        def forward(self, x_raw):
            sign = sign_ste
            f1 = frac_bits(self.conv1.weight.detach().numpy())
            h = F.conv2d(x_raw / 255.0, fake_quant(self.conv1.weight, f1))
            h = F.max_pool2d(sign(self.bn1(h)), 2)
            h = F.max_pool2d(sign(self.bn2(F.conv2d(h, sign(self.conv2.weight)))), 2)
            h = sign(self.bn3(F.conv2d(h, sign(self.conv3.weight), padding=1)))
            h = sign(self.bn4(F.linear(h.flatten(1), sign(self.fc1.weight))))
            f2 = frac_bits(self.fc2.weight.detach().numpy())
            return F.linear(h, fake_quant(self.fc2.weight, f2), fake_quant(self.fc2.bias, f2, 32))

    return BNN


def shift_batch(x: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each raw image by up to ``shift`` pixels (black fill)."""
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (shift, shift), (shift, shift)))
    dy, dx = rng.integers(0, 2 * shift + 1, n), rng.integers(0, 2 * shift + 1, n)
    return np.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


# --------------------------------------------------------------------------- export
def _clamp(t: np.ndarray, k: int) -> np.ndarray:
    """Thresholds beyond the reachable dot range [-k, k] mean always/never: keep them small."""
    return np.clip(t, -(k + 1), k + 1)


def fold(model) -> dict:
    """Integer description of the trained network (the JSON content, weights as arrays)."""
    def bn(m):
        return (m.weight.detach().double().numpy(), m.bias.detach().double().numpy(),
                m.running_mean.double().numpy(), m.running_var.double().numpy(), m.eps)

    w1 = model.conv1.weight.detach().numpy()
    f1 = frac_bits(w1)
    c1 = np.clip(np.round(w1 * 2.0**f1), -128, 127).astype(np.int64)
    a, b = fold_batchnorm(*bn(model.bn1), scale=2.0**-f1 / 255.0)  # acc = pixels x codes
    t1, d1 = sign_thresholds(a, b)
    layers = [{"name": "conv1", "kind": "conv", "weight_codes": c1, "weight_frac_bits": f1,
               "pads": [0, 0, 0, 0], "strides": [1, 1],
               "thresholds": _clamp(t1, 255 * 128 * 9), "directions": d1},
              {"name": "pool1", "kind": "maxpool", "k": 2}]
    for name, mod, bnm, pads in (("conv2", model.conv2, model.bn2, [0, 0, 0, 0]),
                                 ("conv3", model.conv3, model.bn3, [1, 1, 1, 1])):
        w = mod.weight.detach().double().numpy()
        bw = binarize_weights(w, ALPHA_FMT)
        t, d = sign_thresholds(*fold_batchnorm(*bn(bnm)))
        layers.append({"name": name, "kind": "binary_conv", "signs": bw.signs, "pad_value": 0,
                       "pads": pads, "strides": [1, 1], "alpha_codes": bw.alpha,
                       "thresholds": _clamp(t, w[0].size), "directions": d})
        if name == "conv2":
            layers.append({"name": "pool2", "kind": "maxpool", "k": 2})
    layers.append({"name": "flatten", "kind": "flatten"})
    w = model.fc1.weight.detach().double().numpy()
    bw = binarize_weights(w, ALPHA_FMT)
    t, d = sign_thresholds(*fold_batchnorm(*bn(model.bn4)))
    layers.append({"name": "fc1", "kind": "binary_dense", "signs": bw.signs,
                   "alpha_codes": bw.alpha, "thresholds": _clamp(t, w.shape[1]), "directions": d})
    w2 = model.fc2.weight.detach().numpy()
    f2 = frac_bits(w2)
    layers.append({"name": "fc2", "kind": "dense",
                   "weight_codes": np.clip(np.round(w2 * 2.0**f2), -128, 127).astype(np.int64),
                   "bias_codes": np.round(model.fc2.bias.detach().double().numpy() * 2.0**f2)
                   .astype(np.int64), "frac_bits": f2})
    return {"layers": layers}


def to_json(net: dict, meta: dict) -> dict:
    """JSON-ready copy: binary signs bit-packed (fxp.ops.binary layout) as hex words."""
    out = []
    for layer in net["layers"]:
        row = {}
        for key, v in layer.items():
            if key == "signs":
                p = pack_conv_weights(v) if v.ndim == 4 else pack_bits(v)
                row["shape"] = list(v.shape)
                row["words_shape"] = list(p.words.shape)
                row["words_hex"] = [f"{int(u):016x}" for u in p.words.ravel()]
            elif isinstance(v, np.ndarray):
                row[key] = v.tolist()
                if key == "weight_codes":
                    row["shape"] = list(v.shape)
            else:
                row[key] = v
        out.append(row)
    return {
        "format": "fxp-bnn/1",
        "packing": "bit 0 = +1, bit 1 = -1 (Larq Compute Engine); element c is bit c%64 of "
                   "word c//64 (LSB first); tail bits 0; conv words [Co, kh, kw, ceil(C/64)], "
                   "dense words [Out, ceil(In/64)]",
        "sign_of_zero": 1,
        "threshold_rule": "direction +1: +1 iff acc >= threshold; direction -1: +1 iff "
                          "acc <= threshold (BatchNorm + sign folded, exact)",
        "alpha_format": str(ALPHA_FMT),
        "input": "raw pixels 0..255 as integers, NCHW [N, 1, 28, 28]",
        "meta": meta, "layers": out}


def to_onnx(net: dict, meta: dict):
    """Float-emulated binarized model: exact integer arithmetic in float32 (see docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    zero, one, minus = const("zero", 0.0), const("one", 1.0), const("minus_one", -1.0)
    cur = "input"
    for layer in net["layers"]:
        name, kind = layer["name"], layer["kind"]
        if kind == "maxpool":
            nodes.append(helper.make_node("MaxPool", [cur], [name], name=name,
                                          kernel_shape=[2, 2], strides=[2, 2]))
        elif kind == "flatten":
            nodes.append(helper.make_node("Flatten", [cur], [name], name=name, axis=1))
        elif kind in ("conv", "binary_conv"):
            w = layer["weight_codes"] if kind == "conv" else layer["signs"]
            nodes.append(helper.make_node("Conv", [cur, const(f"{name}.weight", w)], [name],
                                          name=name, kernel_shape=list(w.shape[2:]),
                                          pads=layer["pads"], strides=layer["strides"]))
        elif kind == "binary_dense":
            nodes.append(helper.make_node("Gemm", [cur, const(f"{name}.weight", layer["signs"])],
                                          [name], name=name, transB=1))
        elif kind == "dense":
            nodes.append(helper.make_node(
                "Gemm", [cur, const(f"{name}.weight", layer["weight_codes"]),
                         const(f"{name}.bias", layer["bias_codes"])], ["logits"], name=name,
                transB=1))
            cur = "logits"
            continue
        cur = name
        if "thresholds" in layer:
            shape = (-1, 1, 1) if kind.endswith("conv") else (-1,)
            t = const(f"{name}.threshold", np.reshape(layer["thresholds"], shape))
            d = const(f"{name}.direction", np.reshape(layer["directions"], shape))
            nodes += [helper.make_node("Sub", [cur, t], [f"{name}.centered"]),
                      helper.make_node("Mul", [f"{name}.centered", d], [f"{name}.oriented"]),
                      helper.make_node("GreaterOrEqual", [f"{name}.oriented", zero],
                                       [f"{name}.up"]),
                      helper.make_node("Where", [f"{name}.up", one, minus], [f"{name}.sign"],
                                       name=f"{name}.sign")]
            cur = f"{name}.sign"
    graph = helper.make_graph(
        nodes, "bnn_mnist",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="fxp models/bnn/train_bnn.py")
    model.ir_version = 8
    model.doc_string = __doc__.splitlines()[0]
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model


def onnx_logits(model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": x[i:i + 1000]})[0]
                           for i in range(0, len(x), 1000)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (fixed for determinism)")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from torch import nn

    class T:  # namespace handed to build()
        pass
    T.torch, T.nn, T.F = torch, nn, F
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    tr, ev = load_dataset(TRAIN), load_dataset(EVAL)
    model = build(T)()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    batch = 100
    steps = args.epochs * math.ceil(len(tr.x) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)

    def accuracy(x, y):
        model.eval()
        with torch.no_grad():
            pred = np.concatenate([model(torch.from_numpy(np.array(x[i:i + 1000])))
                                   .argmax(1).numpy() for i in range(0, len(x), 1000)])
        return float((pred == y).mean())

    log = {"model": "bnn_mnist", "train": TRAIN, "eval": EVAL, "epochs": args.epochs,
           "lr": args.lr, "batch": batch, "seed": SEED, "threads": args.threads,
           "torch": torch.__version__, "history": []}
    t0 = time.perf_counter()
    for ep in range(args.epochs):
        model.train()
        order = rng.permutation(len(tr.x))
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            xb = torch.from_numpy(np.ascontiguousarray(shift_batch(tr.x[idx], 2, rng)))
            loss = F.cross_entropy(model(xb), torch.from_numpy(tr.y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for p in model.binary_params():
                    p.clamp_(-1, 1)
            total += float(loss.detach()) * len(idx)
        row = {"epoch": ep + 1, "loss": round(total / len(tr.x), 5),
               "eval_acc": accuracy(ev.x, ev.y), "seconds": round(time.perf_counter() - t0, 1)}
        log["history"].append(row)
        print(json.dumps(row), flush=True)

    torch_acc = accuracy(ev.x, ev.y)
    net = fold(model)
    meta = {"fxp.model": "bnn_mnist", "fxp.train.data": TRAIN, "fxp.eval.data": EVAL,
            "fxp.train.command": "python models/bnn/train_bnn.py",
            "fxp.preprocess.scale": "1.0", "fxp.preprocess.mean": "0.0",
            "fxp.preprocess.std": "1.0", "fxp.preprocess.layout": "NCHW"}
    onnx_model = to_onnx(net, meta)
    logits = onnx_logits(onnx_model, ev.x)
    acc = float((logits.argmax(1) == ev.y).mean())
    meta["fxp.eval.accuracy"] = f"{acc:.4f}"
    onnx_model = to_onnx(net, meta)
    import onnx

    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, str(args.out / "bnn_mnist.onnx"))
    (args.out / "bnn_mnist.json").write_text(json.dumps(to_json(net, meta)) + "\n")
    log.update(torch_binarized_accuracy=torch_acc, onnx_float_emulated_accuracy=acc,
               logits_integer=bool(np.all(logits == np.round(logits))),
               train_seconds=round(time.perf_counter() - t0, 1))
    (args.out / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(f"bnn_mnist: torch (BN) {torch_acc:.4f}, float-emulated ONNX (folded thresholds) "
          f"{acc:.4f} on {EVAL}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
