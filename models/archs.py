"""Architectures of the reference zoo, as layer lists shared by torch and ONNX.

Each architecture is a list of ``(kind, params)`` layers.  :func:`build_torch`
turns it into a ``torch.nn.Sequential`` for training and :func:`to_onnx`
writes the trained weights as a plain ONNX graph (opset 17): Conv, Relu,
MaxPool, Flatten, Gemm and an optional final Softmax.  Dropout is an identity
at inference and is left out of the ONNX graph.

The branched networks of :data:`NETS` (``resnet_small``, ``mobilenet_small``:
residual Add, depthwise convs, BatchNormalization, AveragePool, ReLU6) are torch
modules from :func:`build_net`, exported by torch's TorchScript exporter with
:func:`export_net`, BatchNormalization folded or kept.

Only :func:`build_torch`, :func:`build_net`, :func:`net_macs` and
:func:`export_net` need torch; the rest needs numpy and onnx.
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


# ---------------------------------------------------------------------------- residual nets
# Networks with branches (residual Add) are torch modules exported with torch's
# TorchScript ONNX exporter, so their graphs look like what users export.

@dataclass(frozen=True)
class Net:
    """A zoo network with branches, built as a torch module (see :func:`build_net`).

    Parameters
    ----------
    name : str
        Zoo name (folder and file name under ``models/``).
    doc : str
        One-line description for the model's ``doc_string``.
    in_ch, size : int
        Input channels and side length.
    """

    name: str
    doc: str
    in_ch: int = 1
    size: int = 28


NETS: dict[str, Net] = {
    "resnet_small": Net(
        "resnet_small",
        "ResNet-style: conv7@3x3-bn-relu, avgpool2, block 7, block 13/s2 (1x1/s2 projection), "
        "avgpool3 s1 p1 (exclude pad), block 19/s2 (projection), avgpool3 s1 p1 (include pad), "
        "block 19, global avgpool, fc10 (logits)",
    ),
    "mobilenet_small": Net(
        "mobilenet_small",
        "MobileNetV2-style: conv9@3x3/s2-bn-relu6, inverted residuals (t, out, stride) "
        "(1, 9, 1)+res, (3, 15, 2), (3, 15, 1)+res, (4, 21, 1), conv33@1x1-relu6, "
        "global avgpool, fc10 (logits)",
    ),
}


def build_net(name: str):
    """``torch.nn.Module`` of the :data:`NETS` entry ``name`` (logits; BN in every conv)."""
    from torch import nn

    def conv_bn(cin, cout, k, stride=1, groups=1, act=None):
        mods = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout)]
        return nn.Sequential(*mods, act()) if act else nn.Sequential(*mods)

    class BasicBlock(nn.Module):
        """ResNet basic block: two 3x3 convs; identity or 1x1 projection shortcut."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = conv_bn(cin, cout, 3, stride, act=nn.ReLU)
            self.conv2 = conv_bn(cout, cout, 3)
            proj = stride != 1 or cin != cout
            self.shortcut = conv_bn(cin, cout, 1, stride) if proj else nn.Identity()
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))

    class InvertedResidual(nn.Module):
        """MobileNetV2 block: 1x1 expand (t > 1), 3x3 depthwise, 1x1 linear project."""

        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hid = cin * t
            expand = [conv_bn(cin, hid, 1, act=nn.ReLU6)] if t != 1 else []
            self.block = nn.Sequential(
                *expand, conv_bn(hid, hid, 3, stride, groups=hid, act=nn.ReLU6),
                conv_bn(hid, cout, 1))
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.block(x)
            return x + y if self.residual else y

    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if name == "resnet_small":
        return nn.Sequential(
            conv_bn(1, 7, 3, act=nn.ReLU), nn.AvgPool2d(2, 2),
            BasicBlock(7, 7, 1), BasicBlock(7, 13, 2),
            nn.AvgPool2d(3, 1, 1, count_include_pad=False),
            BasicBlock(13, 19, 2), nn.AvgPool2d(3, 1, 1, count_include_pad=True),
            BasicBlock(19, 19, 1), *head, nn.Linear(19, 10))
    if name == "mobilenet_small":
        return nn.Sequential(
            conv_bn(1, 9, 3, 2, act=nn.ReLU6),
            InvertedResidual(9, 9, 1, 1), InvertedResidual(9, 15, 2, 3),
            InvertedResidual(15, 15, 1, 3), InvertedResidual(15, 21, 1, 4),
            conv_bn(21, 33, 1, act=nn.ReLU6), *head, nn.Linear(33, 10))
    raise KeyError(f"unknown net {name!r}; known: {', '.join(NETS)}")


def net_macs(model, net: Net) -> int:
    """Multiply-accumulates per image of the Conv2d and Linear layers of a :func:`build_net` net."""
    import torch
    from torch import nn

    macs = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs[0] += out[0].numel() * k
        else:
            macs[0] += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, net.in_ch, net.size, net.size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return macs[0]


def export_net(model, net: Net, metadata: dict[str, str], *, fold_bn: bool):
    """Export a trained :func:`build_net` module to ONNX (opset 17, symbolic batch ``N``).

    ``fold_bn=True`` is the exporter's default path (``training=EVAL``,
    ``do_constant_folding=True``): every BatchNormalization is folded into the
    preceding Conv, which gains a bias.  ``fold_bn=False`` keeps the
    BatchNormalization nodes (constant folding off); the exporter then routes
    some weights through ``Identity`` nodes, which are replaced here by
    initializers so every Conv/Gemm weight is an initializer (as quantizers
    require).  Input ``input`` float32 ``[N, 1, 28, 28]``, output ``logits``.
    """
    import io
    import warnings

    import onnx
    import torch
    from onnx import helper, numpy_helper

    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model, (torch.zeros(1, net.in_ch, net.size, net.size),), buf, dynamo=False,
            opset_version=17, training=torch.onnx.TrainingMode.EVAL,
            do_constant_folding=fold_bn, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    m = onnx.load_from_string(buf.getvalue())
    inits = {t.name: t for t in m.graph.initializer}
    keep = []
    for node in m.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            arr = numpy_helper.to_array(inits[node.input[0]])
            m.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    used = {i for n in m.graph.node for i in n.input}
    live = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(live)
    m.doc_string = net.doc + ("" if fold_bn else " [BatchNormalization kept]")
    m.producer_name, m.producer_version = "fxp-models", "1"
    helper.set_model_props(m, metadata)
    onnx.checker.check_model(m, full_check=True)
    return m


# ---------------------------------------------------------------------------- misc_small
MISC_SMALL = Net(
    "misc_small",
    "Op-coverage net (random weights): conv8@3x3/s2-leakyrelu(0.1), concat of two branches "
    "with different scales (conv6@1x1-relu | conv6@3x3-leakyrelu(0.2)), SE gate "
    "(global avgpool, conv12@1x1, sigmoid, mul), conv16@3x3/s2-relu, global avgpool, fc10",
)
"""Not in :data:`NETS` (``models/train.py`` does not train it): built with random weights
by ``models/misc_small/build.py`` to cover Concat, Sigmoid, LeakyRelu and Mul."""


def build_misc_small(seed: int = 0):
    """``torch.nn.Module`` of :data:`MISC_SMALL` with torch's default init under ``seed``."""
    import torch
    from torch import nn

    class MiscSmall(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.LeakyReLU(0.1))
            self.branch_a = nn.Sequential(nn.Conv2d(8, 6, 1), nn.ReLU())
            self.branch_b = nn.Sequential(nn.Conv2d(8, 6, 3, 1, 1), nn.LeakyReLU(0.2))
            self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(12, 12, 1),
                                      nn.Sigmoid())
            self.head = nn.Sequential(nn.Conv2d(12, 16, 3, 2, 1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

        def forward(self, x):
            x = self.stem(x)
            x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
            return self.head(x * self.gate(x))

    torch.manual_seed(seed)
    return MiscSmall()
