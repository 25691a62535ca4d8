"""fxp reproduces onnxruntime's integer outputs exactly (correctness anchors G7, P5-P7, P14).

The QOperator models are built here from the zoo's float models with
``onnxruntime.quantization.quantize_static`` (MinMax calibration on the first
200 mnist5k images, ``QuantFormat.QOperator``, int8 weights with
``reduce_range=True``), per tensor and per channel, int8 activations (and one
uint8 configuration).  Softmax is left out of ``op_types_to_quantize`` so it
stays float (``QGemm -> DequantizeLinear -> Softmax``); the default
``QLinearSoftmax`` is tested separately.

Comparison: the same float images go to onnxruntime (CPUExecutionProvider,
2 threads, every quantized tensor added as a graph output) and to fxp
(:func:`load_qoperator` + ``compile_plan`` + ``run_integer(keep=True)``; the
input is quantized by fxp itself with onnxruntime's float32 division, so the
chain is compared from the float input on).  Every integer tensor --
``QuantizeLinear`` output, every QLinearConv / QGemm output, pools, flatten,
the logits -- must have 0 differing elements; the final DequantizeLinear output
must be bit-identical; a float Softmax output is compared to 1e-6.

P7 (VPMADDUBSW int16 pair saturation on u8s8 x86 kernels without VNNI): with
``reduce_range=True`` the weight codes lie in [-64, 64], so a pair sum is at
most 2 * 255 * 64 = 32640 < 32767 on any CPU; the test asserts that bound and
records the CPU flags (``record_property`` and the failure messages).

Extent: mnist5k: mnist_cnn and lenet5 on all 5,000 images, vgg7 on the first
1,000 (all 5,000 with ``FXP_ORT_FULL=1``); MNIST t10k (``../shared``), all
10,000 images: lenet5 per tensor and per channel (every configuration,
mnist_cnn and vgg7 included, with ``FXP_ORT_FULL=1``).  Time goes to fxp's
engine (about 2,000 images/s for lenet5, 700-1,000 for mnist_cnn, 250 for
vgg7 on 2 idle cores) and to onnxruntime with every tensor as an output.
"""

from __future__ import annotations

import logging
import os
import platform
import warnings

import numpy as np
import pytest

from fxp.core.format import QFormat
from fxp.data import Preprocess, load_dataset
from fxp.errors import ModelImportError, PrecisionWarning, UnsupportedOpError
from fxp.frontends.onnx_qoperator import load_qoperator, qoperator_tensor_map, quantize_linear_f32
from fxp.sim.compile import BIAS_CODES_KEY, compile_plan
from fxp.sim.integer import run_integer
from fxp.sim.values import quantize_spec
from tests.conftest import ROOT

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
quant = pytest.importorskip("onnxruntime.quantization")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

pytestmark = pytest.mark.slow

FULL = os.environ.get("FXP_ORT_FULL", "") not in ("", "0")
CHUNK = 250  # images per fxp / ORT call (the engine is fastest around here)
CALIB = 200
NOT_SOFTMAX = ["Conv", "Gemm", "MatMul", "MaxPool", "Flatten", "Relu", "Reshape"]

# (model, per_channel, activation type, mnist5k images, t10k images or 0)
CONFIGS = [
    ("mnist_cnn", False, "s8", 5000, 0),
    ("mnist_cnn", True, "s8", 5000, 0),
    ("lenet5", False, "s8", 5000, 10000),
    ("lenet5", True, "s8", 5000, 10000),
    ("lenet5", True, "u8", 5000, 0),
    ("vgg7", False, "s8", 1000, 0),
    ("vgg7", True, "s8", 1000, 0),
]
if FULL:
    CONFIGS = [(m, pc, a, 5000, 10000) for m, pc, a, _, _ in CONFIGS]


def _cfg_id(cfg) -> str:
    return f"{cfg[0]}-{'pc' if cfg[1] else 'pt'}-{cfg[2]}"


def cpu_flags() -> str:
    """The SIMD flags that decide MLAS's int8 kernels (VNNI or VPMADDUBSW)."""
    want = ("sse4_1", "avx", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
            "avx_vnni_int8", "amx_int8")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        flags = []
    have = [w for w in want if w in flags]
    return f"{platform.machine()} [{' '.join(have) or 'flags unknown'}] ort {ort.__version__}"


# --------------------------------------------------------------------------- building models
_CACHE: dict = {}


def _session(model) -> object:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _preprocessed(spec: str, limit: int | None, graph) -> np.ndarray:
    ds = load_dataset(spec, limit=limit)
    return Preprocess.from_metadata(graph.metadata).apply(ds.x)


class _Reader(quant.CalibrationDataReader):
    def __init__(self, x: np.ndarray) -> None:
        self.batches = iter([{"input": x[i:i + 50]} for i in range(0, len(x), 50)])

    def get_next(self):
        return next(self.batches, None)


def build_qoperator(tmp_dir, model: str, per_channel: bool, act: str,
                    op_types=NOT_SOFTMAX) -> str:
    """quantize_static a zoo model into a QOperator file; returns its path (cached)."""
    key = (model, per_channel, act, tuple(op_types or ()))
    if key in _CACHE:
        return _CACHE[key]
    from fxp.frontends.onnx_import import load_onnx

    src = str(ROOT / "models" / model / f"{model}.onnx")
    calib = _preprocessed("mnist5k", CALIB, load_onnx(src))
    out = str(tmp_dir / f"{model}_{'pc' if per_channel else 'pt'}_{act}_{len(_CACHE)}.onnx")
    qt = quant.QuantType.QInt8 if act == "s8" else quant.QuantType.QUInt8
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # ORT's "consider pre-processing" advice
    try:
        quant.quantize_static(src, out, _Reader(calib), quant_format=quant.QuantFormat.QOperator,
                              per_channel=per_channel, activation_type=qt,
                              weight_type=quant.QuantType.QInt8, reduce_range=True,
                              op_types_to_quantize=list(op_types) if op_types else None)
    finally:
        logging.getLogger().setLevel(level)
    _CACHE[key] = out
    return out


@pytest.fixture(scope="module")
def qdir(tmp_path_factory):
    return tmp_path_factory.mktemp("qoperator")


def _with_outputs(model, names):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in names:
        if t not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=t))
    return m


# --------------------------------------------------------------------------- the comparison
def compare_with_ort(path: str, x: np.ndarray, imported=None) -> dict:
    """Run ORT and fxp on ``x``; per-tensor (elements, mismatches) and final-output checks.

    The probe session (every quantized tensor is a graph output) runs on all of
    ``x``; the unmodified model runs on the first chunk only, to show that
    adding outputs does not change onnxruntime's results.
    """
    model = onnx.load(path)
    graph, plan = imported if imported is not None else load_qoperator(path)
    compiled = compile_plan(graph, plan)
    tmap = qoperator_tensor_map(graph)
    final = [o.name for o in model.graph.output]
    probe = _session(_with_outputs(model, tmap))
    plain = _session(model)
    out_names = [o.name for o in probe.get_outputs()]
    stats = {t: [0, 0] for t in tmap}
    worst_float = 0.0
    float_exact = True
    for s in range(0, len(x), CHUNK):
        xb = x[s:s + CHUNK]
        theirs = dict(zip(out_names, probe.run(None, {"input": xb})))
        mine = run_integer(compiled, xb, keep=True)
        for onnx_name, ir_name in tmap.items():
            a = np.asarray(theirs[onnx_name])  # int8/uint8; compared without a copy
            b = mine.values[ir_name].codes
            assert b.shape == a.shape and a.dtype.kind in "iu", (onnx_name, a.shape, b.shape)
            stats[onnx_name][0] += a.size
            stats[onnx_name][1] += int(np.count_nonzero(a != b))
        if s == 0:  # the plain model (no extra outputs) gives the same final outputs
            ref = plain.run(None, {"input": xb})
            for name, r in zip(final, ref):
                assert np.array_equal(np.asarray(theirs[name]), r), f"{name}: probe != plain"
        got = np.asarray(mine.output, np.float32)
        r0 = np.asarray(theirs[final[0]], np.float32)
        float_exact &= bool(np.array_equal(got.view(np.uint32), r0.view(np.uint32)))
        worst_float = max(worst_float, float(np.max(np.abs(got - r0))))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer
               if t.name.endswith("weight_quantized")]
    return {"tensors": stats, "float_exact": float_exact, "float_max_abs": worst_float,
            "softmax": _ends_in_softmax(graph),
            "max_abs_weight": max(int(np.abs(w.astype(np.int64)).max()) for w in weights),
            "images": len(x)}


def _ends_in_softmax(graph) -> bool:
    from fxp.ir.nodes import Softmax

    return isinstance(graph.producer(graph.outputs[0]), Softmax)


def _check(res: dict, label: str, record_property) -> None:
    flags = cpu_flags()
    record_property("cpu_flags", flags)
    total = sum(n for n, _ in res["tensors"].values())
    bad = {t: m for t, (_, m) in res["tensors"].items() if m}
    record_property("elements_compared", total)
    record_property("mismatches", sum(bad.values()))
    print(f"\n{label}: {res['images']} images, {len(res['tensors'])} integer tensors, "
          f"{total} elements, {sum(bad.values())} mismatches; final float max|diff| "
          f"{res['float_max_abs']:.3g} (bit-exact: {res['float_exact']}); CPU {flags}")
    # P7: weights in [-64, 64] keep u8s8 VPMADDUBSW pair sums below 2**15 on any CPU
    assert res["max_abs_weight"] <= 64, f"{label}: weights exceed [-64, 64]; CPU {flags}"
    assert not bad, f"{label}: differing elements per tensor {bad}; CPU {flags}"
    if res["softmax"]:
        assert res["float_max_abs"] <= 1e-6, f"{label}: softmax differs by {res['float_max_abs']}"
    else:
        assert res["float_exact"], f"{label}: dequantized outputs differ; CPU {flags}"


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c[3]], ids=_cfg_id)
def test_matches_onnxruntime_mnist5k(cfg, qdir, record_property):
    model, pc, act, n, _ = cfg
    path = build_qoperator(qdir, model, pc, act)
    imported = load_qoperator(path)
    x = _preprocessed("mnist5k", n, imported[0])
    _check(compare_with_ort(path, x, imported), f"mnist5k {_cfg_id(cfg)}", record_property)


@pytest.mark.needs_shared
@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c[4]], ids=_cfg_id)
def test_matches_onnxruntime_mnist_t10k(cfg, qdir, shared_dir, record_property):
    model, pc, act, _, n = cfg
    mnist = shared_dir / "datasets" / "mnist"
    images, labels = mnist / "t10k-images-idx3-ubyte.gz", mnist / "t10k-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        pytest.skip(f"MNIST t10k IDX files are not in {mnist}")
    path = build_qoperator(qdir, model, pc, act)
    imported = load_qoperator(path)
    x = _preprocessed(f"idx:{images},{labels}", n, imported[0])
    assert len(x) == n
    _check(compare_with_ort(path, x, imported), f"t10k {_cfg_id(cfg)}", record_property)


# --------------------------------------------------------------------------- details
def test_default_quantization_qlinear_softmax(qdir, record_property):
    """Default op types give QLinearSoftmax: imported as float Softmax; logits stay exact."""
    path = build_qoperator(qdir, "mnist_cnn", True, "s8", op_types=None)
    assert any(n.op_type == "QLinearSoftmax" for n in onnx.load(path).graph.node)
    with pytest.warns(PrecisionWarning, match="QLinearSoftmax"):
        graph, _ = load_qoperator(path)
    x = _preprocessed("mnist5k", 500, graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        res = compare_with_ort(path, x)
    bad = {t: m for t, (_, m) in res["tensors"].items() if m}
    assert not bad and res["tensors"]["fc1_quantized"][0] == 5000, bad
    # ORT's probabilities are 8-bit codes of a lookup-table softmax (scale 1/256)
    assert res["float_max_abs"] <= 2 / 256, res["float_max_abs"]


def _qop_input(scale: float, zp: int, ty) -> tuple:
    return (helper.make_tensor("s", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("z", ty, [], [zp]))


def test_input_quantization_is_float32_division():
    """ORT's QuantizeLinear divides in float32; quantize_linear_f32 matches, float64 does not."""
    rng = np.random.default_rng(7)
    n_f64_diff = 0
    for ty, zp, fmt in ((TensorProto.INT8, -7, QFormat.integer(8)),
                        (TensorProto.UINT8, 131, QFormat.integer(8, False))):
        s = float(np.float32(rng.uniform(0.002, 0.05)))
        g = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", ty, [None])],
                              list(_qop_input(s, zp, ty)))
        sess = _session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
        k = rng.integers(-300, 300, 100_000)
        ties = ((k + 0.5) * s).astype(np.float32)
        x = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)),
                            np.nextafter(ties, np.float32(-np.inf)),
                            rng.normal(0, 3, 50_000).astype(np.float32)])
        y = sess.run(None, {"x": x})[0].astype(np.int64)
        mine, _ = quantize_linear_f32(x, s, zp, fmt)
        assert np.array_equal(mine, y)
        from fxp.plan.plan import TensorSpec

        spec = TensorSpec(fmt, (s,), zp)
        assert np.array_equal(quantize_spec(x, spec, arithmetic="float32")[0], y)
        n_f64_diff += int(np.count_nonzero(quantize_spec(x, spec)[0] != y))
    assert n_f64_diff > 0  # the float32 path is needed: exact division differs near ties


# --------------------------------------------------------------------------- hand-built models
def _model(nodes, inits, in_shape, out_name="y", out_ty=TensorProto.FLOAT, ms=False):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     in_shape)],
                          [helper.make_tensor_value_info(out_name, out_ty, None)], inits)
    ops = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = 8
    return m


def _t(name, arr, ty=None):
    return numpy_helper.from_array(np.asarray(arr), name)


def _conv_model(bias_codes, w_scale=0.002):
    rng = np.random.default_rng(3)
    w = rng.integers(-64, 65, (4, 2, 3, 3)).astype(np.int8)
    inits = [_t("xs", np.float32(0.02)), _t("xz", np.int8(-5)), _t("w", w),
             _t("ws", np.full(4, w_scale, np.float32)), _t("wz", np.zeros(4, np.int8)),
             _t("ys", np.float32(0.05)), _t("yz", np.int8(3)),
             _t("b", np.asarray(bias_codes, np.int32))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                              ["yq"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    return _model(nodes, inits, [None, 2, 6, 6])


def test_large_bias_codes_travel_in_metadata():
    """int32 bias codes beyond float32 precision are exact (metadata), and checked at compile."""
    big = [(1 << 30) + 1, -(1 << 30) - 3, 12345, 0]
    model = _conv_model(big, w_scale=1e-9)
    graph, plan = load_qoperator(model)
    assert "conv" in graph.metadata[BIAS_CODES_KEY]
    compiled = compile_plan(graph, plan)
    assert compiled.steps[0].b_codes.tolist() == big
    x = np.random.default_rng(0).normal(0, 1, (64, 2, 6, 6)).astype(np.float32)
    theirs = _session(_with_outputs(model, ["yq"])).run(["yq"], {"x": x})[0]
    mine = run_integer(compiled, x, keep=True).values["y"].codes
    assert np.array_equal(mine, theirs.astype(np.int64))
    # editing the float bias after import makes the metadata stale: it is not used, the
    # edited float bias is quantized instead (never the stale codes)
    node = graph.nodes[0]
    from dataclasses import replace

    edited = graph.replace_nodes({node.name: replace(node, bias=node.bias * 2)})
    codes = compile_plan(edited, plan).steps[0].b_codes.tolist()
    assert codes != big
    bscale = np.float64(plan.input.scales[0]) * plan.layer(node.name).weight.scale_array()
    want = np.rint(np.asarray(node.bias * 2, np.float64) / bscale).astype(np.int64)
    assert codes == want.tolist()


def test_qlinear_matmul_and_uint8_zero_points():
    rng = np.random.default_rng(5)
    b = rng.integers(-64, 65, (12, 5)).astype(np.int8)
    inits = [_t("xs", np.float32(0.03)), _t("xz", np.uint8(120)), _t("b", b),
             _t("bs", rng.uniform(0.001, 0.01, 5).astype(np.float32)),
             _t("bz", np.zeros(5, np.int8)), _t("ys", np.float32(0.04)), _t("yz", np.uint8(7)),
             _t("shape", np.array([-1, 12], np.int64))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("Reshape", ["xq", "shape"], ["xr"]),
             helper.make_node("QLinearMatMul", ["xr", "xs", "xz", "b", "bs", "bz", "ys", "yz"],
                              ["yq"], name="mm"),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    model = _model(nodes, inits, [None, 3, 4])
    graph, plan = load_qoperator(model)
    x = rng.normal(0, 2, (500, 3, 4)).astype(np.float32)
    theirs = _session(_with_outputs(model, ["xq", "yq"])).run(["xq", "yq"], {"x": x})
    vals = run_integer(compile_plan(graph, plan), x, keep=True).values
    assert np.array_equal(vals["x"].codes, theirs[0].astype(np.int64))
    assert np.array_equal(vals["y"].codes, theirs[1].astype(np.int64))


def test_rejects_unsupported_and_broken_models():
    model = _conv_model([0, 0, 0, 0])
    # a weight scale whose dequantized weights overflow float32: named initializer
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    for t in bad.graph.initializer:
        if t.name == "ws":
            t.CopyFrom(_t("ws", np.full(4, 1e37, np.float32)))
    with pytest.raises(ModelImportError, match="'w'"):
        load_qoperator(bad)
    # a scale that disagrees with the producer's
    bad.CopyFrom(model)
    bad.graph.node[1].input[1] = "ys"
    with pytest.raises(ModelImportError, match="differs from its producer"):
        load_qoperator(bad)
    # an op fxp has no integer kernel for (QLinearMul is supported since issue 14 part J)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.node.insert(2, helper.make_node("QLinearWhere", ["yq", "ys", "yz", "yq", "ys", "yz",
                                                           "ys", "yz"], ["yq2"],
                                            domain="com.microsoft"))
    m.graph.node[3].input[0] = "yq2"
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOpError, match="QLinearWhere"):
        load_qoperator(m)
    # a float model is not a QOperator model
    with pytest.raises((ModelImportError, UnsupportedOpError)):
        load_qoperator(str(ROOT / "models" / "lenet5" / "lenet5.onnx"))
