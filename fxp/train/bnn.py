"""``fxp train bnn``: a binarized network (binary weights AND activations), exported for popcount.

Architecture (sized from the model's input ``[C, H, W]`` and class count;
BNN, Courbariaux et al. 2016, with XNOR-Net's first/last layers kept wide)::

    conv1  16@3x3 valid on raw input codes, 8-bit weights (power-of-two scale) -> BN -> sign -> maxpool 2
    conv2  32@3x3 valid, binary weights and inputs                          -> BN -> sign -> maxpool 2
    fc1    -> 64, binary                                                     -> BN -> sign
    fc2    -> classes, 8-bit weights, 32-bit bias (same power-of-two scale)

(a max pool is skipped where the map is smaller than 4).  ``sign(0) = +1``.
Binary layers use ``sign`` of latent weights clipped to [-1, 1]; the
straight-through estimator passes the gradient where ``|x| <= 1`` (XNOR-Net
eq. 4).  The input is the data set's raw integer codes (e.g. pixels 0..255),
divided by 255 inside the network.

Export: each BatchNorm + sign is folded into one integer threshold per
channel (:func:`fxp.quant.binary.fold_batchnorm`,
:func:`~fxp.quant.binary.sign_thresholds`, exact rationals), and the ONNX file
computes ``Where(D * (acc - T) >= 0, +1, -1)`` on integer accumulators:
:func:`fxp.frontends.onnx_binary.load_binarized` reads it back as
XNOR-popcount layers with the same thresholds (``fxp simulate MODEL.onnx``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fxp.quant.binary import fold_batchnorm, sign_thresholds

__all__ = ["train_bnn"]

WIDTHS = (16, 32, 64)
INPUT_SCALE = 255.0


def _frac_bits(w: np.ndarray, bits: int = 8) -> int:
    """Most fraction bits with ``max|w|`` inside ``bits`` signed bits."""
    m = float(np.max(np.abs(w)))
    return bits - 1 - math.ceil(math.log2(m)) if m > 0 else 0


def ste_ops(torch):
    """``(sign, fake_quant)`` for training: ``sign(x)`` is +1 for ``x >= 0`` else -1 with the
    straight-through gradient ``1{|x| <= 1}``; ``fake_quant(w, f, bits)`` rounds ``w`` to
    ``bits``-bit codes of LSB ``2**-f`` (saturating) with an identity gradient."""

    class SignSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x.abs() <= 1).to(g.dtype)

    def fake_quant(w, f, bits=8):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        q = torch.clamp(torch.round(w * 2.0**f), lo, hi) / 2.0**f
        return w + (q - w).detach()

    return SignSTE.apply, fake_quant


def _build(torch, shape: tuple[int, int, int], classes: int):
    nn, F = torch.nn, torch.nn.functional

    sign_ste, fake_quant = ste_ops(torch)

    c, h, _ = shape
    pools = []
    for _ in range(2):
        h -= 2
        pools.append(h >= 4)
        h = h // 2 if h >= 4 else h
    w = h + 0 if shape[1] == shape[2] else None
    if h < 1 or w is None:
        raise ValueError(f"bnn needs a square input of at least 5x5, got {shape}")

    class BNN(nn.Module):
        def __init__(self):
            super().__init__()
            a, b, d = WIDTHS
            self.pools = pools
            self.conv1, self.bn1 = nn.Conv2d(c, a, 3, bias=False), nn.BatchNorm2d(a)
            self.conv2, self.bn2 = nn.Conv2d(a, b, 3, bias=False), nn.BatchNorm2d(b)
            self.fc1, self.bn3 = nn.Linear(b * h * h, d, bias=False), nn.BatchNorm1d(d)
            self.fc2 = nn.Linear(d, classes)

        def binary_params(self):
            return [self.conv2.weight, self.fc1.weight]

        def forward(self, x_raw):
            sign = sign_ste
            f1 = _frac_bits(self.conv1.weight.detach().numpy())
            t = sign(self.bn1(F.conv2d(x_raw / INPUT_SCALE, fake_quant(self.conv1.weight, f1))))
            t = F.max_pool2d(t, 2) if self.pools[0] else t
            t = sign(self.bn2(F.conv2d(t, sign(self.conv2.weight))))
            t = F.max_pool2d(t, 2) if self.pools[1] else t
            t = sign(self.bn3(F.linear(t.flatten(1), sign(self.fc1.weight))))
            f2 = _frac_bits(self.fc2.weight.detach().numpy())
            return F.linear(t, fake_quant(self.fc2.weight, f2), fake_quant(self.fc2.bias, f2, 32))

    return BNN()


def _bn(m) -> tuple:
    return (m.weight.detach().double().numpy(), m.bias.detach().double().numpy(),
            m.running_mean.double().numpy(), m.running_var.double().numpy(), m.eps)


def _to_onnx(model, shape, classes: int, meta: dict):
    """The folded network as ONNX (Conv/Gemm on integer codes, ``Where`` thresholds)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def sign(cur, name, a, b, k, conv):
        t, d = sign_thresholds(a, b)
        t = np.clip(t, -(k + 1), k + 1)  # beyond the reachable range: always / never
        s = (-1, 1, 1) if conv else (-1,)
        nodes.extend([
            helper.make_node("Sub", [cur, const(f"{name}.threshold", t.reshape(s))],
                             [f"{name}.centered"]),
            helper.make_node("Mul", [f"{name}.centered", const(f"{name}.direction",
                                                              d.reshape(s))], [f"{name}.oriented"]),
            helper.make_node("GreaterOrEqual", [f"{name}.oriented", "zero"], [f"{name}.up"]),
            helper.make_node("Where", [f"{name}.up", "one", "minus_one"], [f"{name}.sign"],
                             name=f"{name}.sign")])
        return f"{name}.sign"

    const("zero", 0.0), const("one", 1.0), const("minus_one", -1.0)
    w1 = model.conv1.weight.detach().numpy()
    f1 = _frac_bits(w1)
    c1 = np.clip(np.round(w1 * 2.0**f1), -128, 127)
    nodes.append(helper.make_node("Conv", ["input", const("conv1.weight", c1)], ["conv1"],
                                  name="conv1"))
    a, b = fold_batchnorm(*_bn(model.bn1), scale=2.0**-f1 / INPUT_SCALE)
    cur = sign("conv1", "conv1", a, b, int(128 * 9 * shape[0] * 2**16), True)
    for i, (name, layer, bn) in enumerate((("conv2", model.conv2, model.bn2),
                                           ("fc1", model.fc1, model.bn3))):
        if i == 0 and model.pools[0] or i == 1 and model.pools[1]:
            nodes.append(helper.make_node("MaxPool", [cur], [f"pool{i + 1}"], name=f"pool{i + 1}",
                                          kernel_shape=[2, 2], strides=[2, 2]))
            cur = f"pool{i + 1}"
        if i == 1:
            nodes.append(helper.make_node("Flatten", [cur], ["flatten"], name="flatten", axis=1))
            cur = "flatten"
        w = np.where(layer.weight.detach().numpy() < 0, -1.0, 1.0)
        op = helper.make_node("Conv", [cur, const(f"{name}.weight", w)], [name], name=name) \
            if i == 0 else helper.make_node("Gemm", [cur, const(f"{name}.weight", w)], [name],
                                            name=name, transB=1)
        nodes.append(op)
        cur = sign(name, name, *fold_batchnorm(*_bn(bn)), int(w[0].size), i == 0)
    w2 = model.fc2.weight.detach().numpy()
    f2 = _frac_bits(w2)
    nodes.append(helper.make_node(
        "Gemm", [cur, const("fc2.weight", np.clip(np.round(w2 * 2.0**f2), -128, 127)),
                 const("fc2.bias", np.round(model.fc2.bias.detach().double().numpy() * 2.0**f2))],
        ["logits"], name="fc2", transB=1))
    graph = helper.make_graph(
        nodes, "bnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                          producer_name="fxp train bnn")
    m.ir_version = 8
    helper.set_model_props(m, meta)
    onnx.checker.check_model(m, full_check=True)
    return m


def train_bnn(train_spec: str, eval_spec: str, out: str | Path, *, shape, classes: int,
              epochs: int = 1, seed: int = 0, lr: float = 5e-3, batch_size: int = 100,
              limit: int | None = None, eval_limit: int | None = None, threads: int = 1,
              log=None) -> dict:
    """Train the BNN on the raw codes of ``train_spec``, export ``out/bnn.onnx``, verify with fxp.

    Returns a summary: torch (BN, eval mode) top-1 on ``eval_spec``, the ONNX
    path, and the fxp simulation of the exported file (its embedded popcount
    plan) with its top-1 agreement with torch.
    """
    import torch

    from fxp.data import load_dataset
    from fxp.fileio import ensure_dir, write_bytes
    from fxp.plan.io import save_plan
    from fxp.sim.evaluate import simulate

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tr, ev = load_dataset(train_spec, limit=limit), load_dataset(eval_spec, limit=eval_limit)
    model = _build(torch, tuple(shape), classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for ep in range(epochs):
        model.train()
        order, total = rng.permutation(len(tr.x)), 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(np.array(tr.x[idx], np.float32))),
                torch.from_numpy(np.asarray(tr.y[idx], np.int64)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p in model.binary_params():
                    p.clamp_(-1, 1)
            total += float(loss.detach()) * len(idx)
        history.append({"epoch": ep + 1, "loss": round(total / len(tr.x), 5)})
        if log is not None:
            log(history[-1])
    model.eval()
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(np.array(ev.x, np.float32))).argmax(1).numpy()
    meta = {"fxp.model": "bnn", "fxp.train.method": "bnn", "fxp.train.data": train_spec,
            "fxp.eval.data": eval_spec, "fxp.train.seed": str(seed),
            "fxp.preprocess.scale": "1.0", "fxp.preprocess.mean": "0.0",
            "fxp.preprocess.std": "1.0", "fxp.preprocess.layout": "NCHW"}
    ensure_dir(out)
    onnx_path = write_bytes(Path(out) / "bnn.onnx",
                            _to_onnx(model, tuple(shape), classes, meta).SerializeToString())
    from fxp import workflow as fw

    graph = fw.load_model(str(onnx_path))
    plan = fw.embedded_plan(graph)
    plan_path = save_plan(plan, Path(out) / "plan.json")
    rep = simulate(graph, plan, np.asarray(ev.x, np.float32), ev.y, keep_predictions=True)
    return {"method": "bnn", "epochs": epochs, "seed": seed, "train_data": train_spec,
            "eval_data": eval_spec, "n_eval": len(ev.y),
            "torch_top1": float(np.mean(torch_pred == ev.y)), "onnx": str(onnx_path),
            "plan": str(plan_path), "history": history,
            "binary_layers": [lp.name for lp in plan.layers if lp.is_binary],
            "fxp_simulation": {"fixed_top1": rep.fixed_top1,
                               "agreement_with_torch": float(np.mean(rep.fixed_predictions
                                                                     == torch_pred)),
                               "mismatches": int(np.sum(rep.fixed_predictions != torch_pred))}}
