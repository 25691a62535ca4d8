"""Architectures of the reference zoo, as layer lists shared by torch and ONNX.

Each architecture is a list of ``(kind, params)`` layers.  :func:`build_torch`
turns it into a ``torch.nn.Sequential`` for training and :func:`to_onnx`
writes the trained weights as a plain ONNX graph (opset 17): Conv, Relu,
MaxPool, Flatten, Gemm and an optional final Softmax.  Dropout is an identity
at inference and is left out of the ONNX graph.

Only :func:`build_torch` needs torch; the rest needs numpy and onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Layer = tuple[str, dict]


def _conv(out, k, pad=0):
    return ("conv", {"out": out, "k": k, "pad": pad})


RELU: Layer = ("relu", {})
POOL: Layer = ("maxpool", {"k": 2})
FLAT: Layer = ("flatten", {})


def _drop(p):
    return ("dropout", {"p": p})


def _dense(out):
    return ("dense", {"out": out})


@dataclass(frozen=True)
class Arch:
    """A zoo architecture.

    Parameters
    ----------
    name : str
        Zoo name (folder and file name under ``models/``).
    layers : list of Layer
        Layer list, input ``[N, in_ch, size, size]``.
    softmax : bool
        Append an ONNX Softmax after the last layer (training uses logits).
    in_ch, size : int
        Input channels and side length.
    doc : str
        One-line description for the model's ``doc_string``.
    """

    name: str
    layers: list[Layer]
    softmax: bool
    doc: str
    in_ch: int = 1
    size: int = 28
    meta: dict[str, str] = field(default_factory=dict)


MNIST_CNN_LAYERS: list[Layer] = [
    _conv(32, 3), RELU, POOL,
    _conv(64, 3), RELU, POOL,
    FLAT, _drop(0.5), _dense(10),
]

ARCHS: dict[str, Arch] = {
    "mnist_cnn": Arch(
        "mnist_cnn", MNIST_CNN_LAYERS, softmax=True,
        doc="Pertsau et al. 'default' MNIST CNN: conv32@3x3-relu-pool2-conv64@3x3-relu-pool2-"
        "flatten-dropout0.5-dense10-softmax",
    ),
    "lenet5": Arch(
        "lenet5",
        [_conv(6, 5, pad=2), RELU, POOL, _conv(16, 5), RELU, POOL, FLAT,
         _dense(120), RELU, _dense(84), RELU, _dense(10)],
        softmax=False,
        doc="LeNet-5 (ReLU, max pool): conv6@5x5p2-pool-conv16@5x5-pool-fc120-fc84-fc10 (logits)",
    ),
    "vgg7": Arch(
        "vgg7",
        [_conv(32, 3, pad=1), RELU, _conv(32, 3, pad=1), RELU, POOL,
         _conv(64, 3, pad=1), RELU, _conv(64, 3, pad=1), RELU, POOL, FLAT,
         _dense(256), RELU, _drop(0.5), _dense(256), RELU, _drop(0.5), _dense(10)],
        softmax=False,
        doc="VGG-7 (narrow): 2x conv32@3x3 same-pool-2x conv64@3x3 same-pool-fc256-fc256-fc10 "
        "(logits)",
    ),
    "fashion_cnn": Arch(
        "fashion_cnn", MNIST_CNN_LAYERS, softmax=True,
        doc="mnist_cnn architecture trained on Fashion-MNIST",
        meta={"fxp.labels": "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,"
              "Ankle boot"},
    ),
}


def shapes(arch: Arch) -> list[tuple[int, ...]]:
    """Output shape (without batch) of every layer."""
    c, h, w = arch.in_ch, arch.size, arch.size
    feat = None
    out: list[tuple[int, ...]] = []
    for kind, p in arch.layers:
        if kind == "conv":
            h = h + 2 * p["pad"] - p["k"] + 1
            w = w + 2 * p["pad"] - p["k"] + 1
            c = p["out"]
        elif kind == "maxpool":
            h, w = h // p["k"], w // p["k"]
        elif kind == "flatten":
            feat = c * h * w
        elif kind == "dense":
            feat = p["out"]
        out.append((feat,) if feat is not None else (c, h, w))
    return out


def count(arch: Arch) -> tuple[int, int]:
    """``(parameters, MACs per image)`` of conv and dense layers."""
    params = macs = 0
    prev = (arch.in_ch, arch.size, arch.size)
    for (kind, p), shp in zip(arch.layers, shapes(arch)):
        if kind == "conv":
            cin = prev[0]
            w = p["out"] * cin * p["k"] ** 2
            params += w + p["out"]
            macs += w * shp[1] * shp[2]
        elif kind == "dense":
            w = prev[0] * p["out"]
            params += w + p["out"]
            macs += w
        prev = shp
    return params, macs


def build_torch(arch: Arch):
    """``torch.nn.Sequential`` of the architecture (logits; no softmax)."""
    from torch import nn

    mods = []
    prev = (arch.in_ch, arch.size, arch.size)
    for (kind, p), shp in zip(arch.layers, shapes(arch)):
        if kind == "conv":
            mods.append(nn.Conv2d(prev[0], p["out"], p["k"], padding=p["pad"]))
        elif kind == "relu":
            mods.append(nn.ReLU())
        elif kind == "maxpool":
            mods.append(nn.MaxPool2d(p["k"]))
        elif kind == "flatten":
            mods.append(nn.Flatten())
        elif kind == "dropout":
            mods.append(nn.Dropout(p["p"]))
        elif kind == "dense":
            mods.append(nn.Linear(prev[0], p["out"]))
        prev = shp
    return nn.Sequential(*mods)


def to_onnx(arch: Arch, weights: list[tuple[np.ndarray, np.ndarray]], metadata: dict[str, str]):
    """Build the ONNX model (opset 17, symbolic batch ``N``) from trained weights.

    Parameters
    ----------
    arch : Arch
        The architecture.
    weights : list of (weight, bias)
        float32 arrays of each conv/dense layer in order (torch layouts:
        conv ``[O, I, kH, kW]``, dense ``[out, in]``).
    metadata : dict of str
        Stored as ``metadata_props``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = "input"
    it = iter(weights)
    n = {"conv": 0, "relu": 0, "maxpool": 0, "dense": 0}
    for kind, p in arch.layers:
        if kind == "dropout":
            continue
        if kind == "flatten":
            nodes.append(helper.make_node("Flatten", [cur], ["flatten"], name="flatten", axis=1))
            cur = "flatten"
            continue
        n[kind] += 1
        prefix = {"conv": "conv", "relu": "relu", "maxpool": "pool", "dense": "fc"}[kind]
        name = f"{prefix}{n[kind]}"
        if kind in ("conv", "dense"):
            w, b = next(it)
            inits += [numpy_helper.from_array(np.asarray(w, np.float32), f"{name}.weight"),
                      numpy_helper.from_array(np.asarray(b, np.float32), f"{name}.bias")]
            ins = [cur, f"{name}.weight", f"{name}.bias"]
            if kind == "conv":
                k, pad = p["k"], p["pad"]
                node = helper.make_node("Conv", ins, [name], name=name, kernel_shape=[k, k],
                                        pads=[pad] * 4, strides=[1, 1], dilations=[1, 1], group=1)
            else:
                node = helper.make_node("Gemm", ins, [name], name=name, transB=1)
        elif kind == "relu":
            node = helper.make_node("Relu", [cur], [name], name=name)
        else:
            k = p["k"]
            node = helper.make_node("MaxPool", [cur], [name], name=name, kernel_shape=[k, k],
                                    strides=[k, k])
        nodes.append(node)
        cur = name
    out_name = "logits"
    if arch.softmax:
        nodes.append(helper.make_node("Softmax", [cur], ["probs"], name="softmax", axis=-1))
        cur = out_name = "probs"
    else:
        nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        nodes, arch.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       ["N", arch.in_ch, arch.size, arch.size])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="fxp-models", producer_version="1",
                              doc_string=arch.doc)
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model
