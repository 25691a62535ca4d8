"""Runtime profiles of a ``.tflite`` model against the runtimes themselves (issue 16, item 2).

For each committed model (``models/tflite``, int8 and int16x8) and each of
``litert-ref`` (``BUILTIN_REF``), ``litert-opt`` (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``)
and ``xnnpack`` (``BUILTIN``, the XNNPACK delegate), the plan
``load_tflite(path, runtime)`` is run by fxp's engine on the first 1,000
``mnist5k`` digits and every tensor is compared with ``ai-edge-litert``'s
(``experimental_preserve_all_tensors=True``; with it the XNNPACK delegate
takes one operator per partition, so its intermediates are real and are
compared too).  0 differing elements everywhere.  Elements compared per
runtime (every operator output plus the input, end to end from the input
codes): mnist_cnn 38,778,000 and dw_avgpool 15,962,000 (int8 and int16x8
each), residual_mean 14,548,000 (int8 and int16x8 each; the int16x8 one
through TFLM's int16 ADD, which LiteRT's three profiles compute alike:
``pot_scale_int16`` is false in the model, so LiteRT takes the same
general-scale path with left shift 15).

What the measurement separates (``test_profiles_differ_where_predicted``,
with the TFLite Micro interpreter as the ``tflm`` reference, 1,000 digits,
end to end): against TFLM, XNNPACK differs on 23,869 of the 38,778,000
elements of mnist_cnn_int8, 569,895 of 15,962,000 (dw_avgpool_int8) and
26,735 of 14,548,000 (residual_mean_int8); LiteRT's reference kernels on 3 / 3
/ 37 (their FULLY_CONNECTED, and downstream of it), the optimized ones on
4 / 8 / 810 -- and fxp predicts each of those elements, no more, no fewer.

One-operator models built here with LiteRT's flatbuffer schema show the
kernels the committed models cannot tell apart: LiteRT's optimized int8
SOFTMAX (a float32 table) against its reference one, XNNPACK's and LiteRT's
optimized ADD against TFLite's on every pair of int8 codes (the optimized ADD
rounds once in blocks of 16 elements), the optimized keep-dims MEAN (blocks of
16 channels ruy, the rest gemmlowp) and the optimized DEPTHWISE_CONV_2D
without activation (blocks of 8 channels ruy, the rest gemmlowp).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite", reason="the .tflite reader needs the 'tflite' package")

from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.frontends.tflite import OPS_KEY, load_tflite, tflite_tensor_map, to_tflite_layout
from fxp.frontends.tflite_runtime import RUNTIME_KEY, RUNTIMES, get_runtime
from fxp.ir.graph import Graph
from fxp.plan.plan import Plan
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer

pytestmark = pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve")

MODELS = Path(__file__).resolve().parents[2] / "models" / "tflite"
NAMES = ["mnist_cnn_int8", "dw_avgpool_int8", "residual_mean_int8", "mnist_cnn_int16x8",
         "dw_avgpool_int16x8", "residual_mean_int16x8"]
RESOLVERS = {"litert-ref": "builtin_ref", "litert-opt": "builtin_no_xnnpack",
             "xnnpack": "builtin"}
N_INPUTS = 1000


def _litert():
    return pytest.importorskip("ai_edge_litert", reason="the runtime profiles are measured "
                               "against ai-edge-litert")


def _digits(plan: Plan) -> np.ndarray:
    """The first N_INPUTS mnist5k digits as the model's input codes, NCHW int64."""
    from fxp.data import load_dataset

    raw = load_dataset("mnist5k", limit=N_INPUTS).x.astype(np.float64)
    x = (raw / 255.0 - 0.1307) / 0.3081
    s, z, f = plan.input.scales[0], plan.input.zero_point, plan.input.fmt
    return np.clip(np.rint(x / s) + z, f.min_code, f.max_code).astype(np.int64)


def _nhwc(codes: np.ndarray, plan: Plan) -> np.ndarray:
    return np.transpose(codes, (0, 2, 3, 1)).astype(np.int8 if plan.input.fmt.bits == 8
                                                    else np.int16)


_CACHE: dict = {}


def _measured(name: str, runtime: str):
    """(graph, plan, input codes, the runtime's tensors) of model ``name`` under ``runtime``."""
    key = (name, runtime)
    if key not in _CACHE:
        path = MODELS / f"{name}.tflite"
        graph, plan = load_tflite(path, runtime)
        codes = _digits(plan)
        if runtime == "tflm":
            pytest.importorskip("tflite_micro", reason="the tflm reference needs tflite-micro")
            from tests.tflm_oracle import run_tflm

            tensors = run_tflm(path.read_bytes(), _nhwc(codes, plan))
        else:
            _litert()
            from tests.tflm_oracle import run_litert

            tensors = run_litert(path.read_bytes(), _nhwc(codes, plan),
                                 resolver=RESOLVERS[runtime])
        _CACHE[key] = graph, plan, codes, tensors
    return _CACHE[key]


_OURS: dict = {}


def _ours(name: str, runtime: str) -> dict[int, np.ndarray]:
    """fxp's engine under ``runtime`` on model ``name`` (cached): every TFLite tensor."""
    if (name, runtime) not in _OURS:
        graph, plan, codes, _ = _measured(name, runtime)
        _OURS[name, runtime] = _engine(graph, plan, codes)
    return _OURS[name, runtime]


def _engine(graph: Graph, plan: Plan, codes: np.ndarray) -> dict[int, np.ndarray]:
    """Every TFLite tensor as fxp's engine computes it from the input codes (TFLite layout)."""
    x = (codes - plan.input.zero_point) * np.float64(plan.input.scales[0])
    run = run_integer(compile_plan(graph, plan), x, keep=True)
    return {t: to_tflite_layout(run.values[ir].codes, layout)
            for t, (ir, layout) in tflite_tensor_map(graph).items()}


# --------------------------------------------------------------------------- measured
@pytest.mark.parametrize("runtime", sorted(RESOLVERS))
@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_matches_runtime(name: str, runtime: str) -> None:
    """0 differing elements on every tensor (1,000 digits), end to end from the input
    codes."""
    graph, plan, _codes, tensors = _measured(name, runtime)
    assert plan.name.endswith(f"@{runtime}") and graph.metadata[RUNTIME_KEY] == runtime
    ops = json.loads(graph.metadata[OPS_KEY])
    diffs = {t: int(np.count_nonzero(v != tensors[t].astype(np.int64)))
             for t, v in _ours(name, runtime).items()}
    assert len(diffs) == len(ops) + 1  # every operator output and the input
    assert diffs == dict.fromkeys(diffs, 0)


@pytest.mark.parametrize("name", ["mnist_cnn_int8", "dw_avgpool_int8", "residual_mean_int8"])
def test_profiles_differ_where_predicted(name: str) -> None:
    """TFLM and each LiteRT runtime differ on some elements; fxp's two profiles differ on
    exactly those elements (same tensors, same positions).  XNNPACK differs from TFLM on
    every int8 model."""
    tflm, ours_tflm = _measured(name, "tflm")[3], _ours(name, "tflm")
    counts = {}
    for runtime in sorted(RESOLVERS):
        measured, ours = _measured(name, runtime)[3], _ours(name, runtime)
        total = 0
        for t, v in ours.items():
            predicted = v != ours_tflm[t]
            observed = measured[t].astype(np.int64) != tflm[t].astype(np.int64)
            assert np.array_equal(predicted, observed), (runtime, t)
            total += int(np.count_nonzero(observed))
        counts[runtime] = total
    assert counts["xnnpack"] > 0
    if name == "mnist_cnn_int8":  # LiteRT's reference FC: float64 scale, ties away
        assert counts["litert-ref"] > 0


# --------------------------------------------------------------------------- one-operator models
def _one_op(op_code: int, options_type: int, options, inputs, output, consts=()) -> bytes:
    """A one-operator int8 model: ``inputs`` / ``output`` ``(shape, scales, zero points,
    quantized dimension)``, ``consts`` ``(shape, int8 / int32 array, scales, qdim)``."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S

    model, sg = S.ModelT(), S.SubGraphT()
    model.version, sg.tensors, model.buffers = 3, [], [S.BufferT()]
    code = S.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = op_code, min(op_code, 127), 1
    model.operatorCodes = [code]

    def tensor(shape, ttype, scales, zps, qdim, data=None):
        buf = S.BufferT()
        if data is not None:
            buf.data = np.ascontiguousarray(data).tobytes()
        model.buffers.append(buf)
        t, q = S.TensorT(), S.QuantizationParametersT()
        t.name, t.shape, t.type, t.buffer = f"t{len(sg.tensors)}".encode(), list(shape), ttype, \
            len(model.buffers) - 1
        q.scale, q.zeroPoint, q.quantizedDimension = [float(s) for s in scales], \
            [int(z) for z in zps], qdim
        t.quantization = q
        sg.tensors.append(t)

    for shape, scales, zps in inputs:
        tensor(shape, S.TensorType.INT8, scales, zps, 0)
    for shape, data, scales, qdim in consts:
        ttype = S.TensorType.INT8 if data.dtype == np.int8 else S.TensorType.INT32
        tensor(shape, ttype, scales, [0] * len(scales), qdim, data)
    tensor(output[0], S.TensorType.INT8, output[1], output[2], 0)
    op = S.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, list(range(len(sg.tensors) - 1)), \
        [len(sg.tensors) - 1]
    op.builtinOptionsType, op.builtinOptions = options_type, options
    sg.operators, sg.inputs, sg.outputs = [op], list(range(len(inputs))), op.outputs
    model.subgraphs = [sg]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _run_model(model: bytes, samples: list[list[np.ndarray]], runtime: str) -> np.ndarray:
    from ai_edge_litert import interpreter as lite

    kind = {"litert-ref": lite.OpResolverType.BUILTIN_REF, "xnnpack": lite.OpResolverType.BUILTIN,
            "litert-opt": lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[runtime]
    ip = lite.Interpreter(model_content=model, experimental_op_resolver_type=kind)
    ip.allocate_tensors()
    ins, out = ip.get_input_details(), ip.get_output_details()[0]
    res = []
    for sample in samples:
        for d, v in zip(ins, sample, strict=True):
            ip.set_tensor(d["index"], v)
        ip.invoke()
        res.append(ip.get_tensor(out["index"]).copy())
    return np.concatenate(res).astype(np.int64)


def _engine_on(model: bytes, runtime: str, x_codes: np.ndarray) -> np.ndarray:
    """The one-operator model read with ``runtime`` and run by fxp on input codes (TFLite
    layout); its output in TFLite layout."""
    graph, plan = load_tflite(model, runtime)
    nchw = np.transpose(x_codes, (0, 3, 1, 2)) if x_codes.ndim == 4 else x_codes
    return _engine(graph, plan, nchw)[json.loads(graph.metadata[OPS_KEY])[-1][4]]


def test_softmax_optimized_float_table_vs_reference() -> None:
    """int8 SOFTMAX: ``litert-opt`` (and ``xnnpack``, which leaves SOFTMAX to LiteRT) is the
    float32-table kernel, ``litert-ref`` TFLM's; fxp reproduces both on 3,000 rows, and they
    differ on some rows."""
    _litert()
    from ai_edge_litert import schema_py_generated as S

    opts = S.SoftmaxOptionsT()
    opts.beta = 1.0
    model = _one_op(S.BuiltinOperator.SOFTMAX, S.BuiltinOptions.SoftmaxOptions, opts,
                    [((1, 10), [0.1], [0])], ((1, 10), [1 / 256], [-128]))
    x = np.random.default_rng(0).integers(-128, 128, (3000, 10))
    out = {}
    for runtime in ("litert-ref", "litert-opt", "xnnpack"):
        out[runtime] = _run_model(model, [[r[None].astype(np.int8)] for r in x], runtime)
        assert np.array_equal(_engine_on(model, runtime, x), out[runtime]), runtime
    assert np.count_nonzero(out["litert-opt"] != out["litert-ref"]) > 0


@pytest.mark.parametrize("width", [256, 250])
def test_add_per_runtime_on_every_code_pair(width: int) -> None:
    """int8 ADD over every pair of codes (``width`` of the 256 first codes, all second ones)
    for two scale sets: ``litert-ref`` is TFLite's ADD, ``litert-opt`` LiteRT's optimized
    one (blocks of 16 elements with one input rounding, the ``width % 16`` rest as TFLite),
    ``xnnpack`` XNNPACK's 21-bit-multiplier ADD; each equals its fxp kernel, and both
    others differ from TFLite's on some pairs."""
    _litert()
    from ai_edge_litert import schema_py_generated as S

    from fxp.ops.litert import litert_add
    from fxp.ops.tflite import tflite_add
    from fxp.ops.xnnpack import xnnpack_add

    a, b = (v.astype(np.int64)
            for v in np.meshgrid(np.arange(-128, 128)[:width], np.arange(-128, 128)))
    samples = [[a[i:i + 1].astype(np.int8), b[i:i + 1].astype(np.int8)] for i in range(256)]
    differ = {"litert-opt": 0, "xnnpack": 0}
    for sa, za, sb, zb, sy, zy in ((0.0123, -7, 0.0456, 11, 0.0311, 3),
                                   (0.2, 100, 0.017, -90, 0.09, -20)):
        kw = {"a_scale": sa, "a_zero_point": za, "b_scale": sb, "b_zero_point": zb, "y_scale": sy,
                  "y_zero_point": zy}
        model = _one_op(S.BuiltinOperator.ADD, S.BuiltinOptions.AddOptions, S.AddOptionsT(),
                        [((1, width), [sa], [za]), ((1, width), [sb], [zb])],
                        ((1, width), [sy], [zy]))
        want = {"litert-ref": tflite_add(a, b, fmt=QFormat.integer(8), **kw)[0],
                "litert-opt": litert_add(a, b, **kw)[0], "xnnpack": xnnpack_add(a, b, **kw)}
        for runtime, ours in want.items():
            got = _run_model(model, samples, runtime).reshape(a.shape)
            assert np.array_equal(got, ours), runtime
            if runtime != "litert-ref":
                differ[runtime] += int(np.count_nonzero(got != want["litert-ref"]))
    assert differ["litert-opt"] > 0 and differ["xnnpack"] > 0


@pytest.mark.parametrize("channels", [20, 8, 3])
def test_mean_keep_dims_per_runtime(channels: int) -> None:
    """MEAN over H, W with keep_dims: each runtime's integers from fxp's profile (the
    optimized kernel mixes ruy blocks of 16 channels with gemmlowp for the rest)."""
    _litert()
    from ai_edge_litert import schema_py_generated as S

    opts = S.ReducerOptionsT()
    opts.keepDims = True
    h, w = 5, 7
    model = _one_op(S.BuiltinOperator.MEAN, S.BuiltinOptions.ReducerOptions, opts,
                    [((1, h, w, channels), [0.0334], [-23])],
                    ((1, 1, 1, channels), [0.0395], [80]),
                    consts=[((2,), np.array([1, 2], np.int32), [1.0], 0)])
    x = np.random.default_rng(channels).integers(-128, 128, (400, h, w, channels))
    got = {}
    for runtime in ("litert-ref", "litert-opt", "xnnpack"):
        got[runtime] = _run_model(model, [[s[None].astype(np.int8)] for s in x], runtime)
        assert np.array_equal(_engine_on(model, runtime, x), got[runtime]), runtime
    assert np.count_nonzero(got["litert-opt"] != got["litert-ref"]) > 0


@pytest.mark.parametrize("channels", [20, 8, 3])
def test_depthwise_without_activation_litert_opt(channels: int) -> None:
    """DEPTHWISE_CONV_2D without activation (negative ties visible): ``litert-opt`` rounds
    whole blocks of 8 channels as ruy and the rest as gemmlowp; fxp's profile reproduces it.
    With 8 or 20 channels it differs from TFLM's integers; with 3 (no whole block) it is
    TFLM's."""
    _litert()
    from ai_edge_litert import schema_py_generated as S

    rng = np.random.default_rng(channels + 100)
    sw = [float(np.float32(v)) for v in 10 ** rng.uniform(-3, -2, channels)]
    opts = S.DepthwiseConv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH, opts.depthMultiplier = S.Padding.VALID, 1, 1, 1
    opts.dilationWFactor = opts.dilationHFactor = 1
    weights = rng.integers(-127, 128, (1, 3, 3, channels)).astype(np.int8)
    bias = rng.integers(-2000, 2000, channels).astype(np.int32)
    model = _one_op(S.BuiltinOperator.DEPTHWISE_CONV_2D,
                    S.BuiltinOptions.DepthwiseConv2DOptions, opts,
                    [((1, 6, 6, channels), [0.05], [-3])], ((1, 4, 4, channels), [0.07], [5]),
                    consts=[((1, 3, 3, channels), weights, sw, 3),
                            ((channels,), bias, [0.05 * s for s in sw], 0)])
    x = rng.integers(-128, 128, (400, 6, 6, channels))
    measured = _run_model(model, [[s[None].astype(np.int8)] for s in x], "litert-opt")
    ours = _engine_on(model, "litert-opt", x)
    tflm = _engine_on(model, "tflm", x)
    assert np.array_equal(ours, measured)
    assert (np.count_nonzero(tflm != measured) > 0) == (channels >= 8)


# --------------------------------------------------------------------------- the API
def test_unknown_runtime_names_value_and_choices() -> None:
    """An unknown profile is a PlanError naming it and listing the five profiles."""
    with pytest.raises(PlanError, match=r"unknown TFLite runtime profile 'xnnpak'; choose one "
                                         r"of \['tflm', 'litert-ref', 'litert-opt', 'xnnpack', "
                                         r"'cmsis-nn'\]"):
        load_tflite(MODELS / "mnist_cnn_int8.tflite", "xnnpak")
    assert RUNTIMES == ("tflm", "litert-ref", "litert-opt", "xnnpack", "cmsis-nn")


def test_profiles_set_requant_per_operator() -> None:
    """Each profile writes its scheme per TFLite operator (the table of
    :mod:`fxp.frontends.tflite_runtime`); tflm is the default; cmsis-nn (default CMSIS-NN
    build: gemmlowp's integers) is all ``double`` and marked not measured."""
    path = MODELS / "residual_mean_int8.tflite"
    want = {"tflm": ["double"] * 8,
            "litert-ref": ["double"] * 6 + ["float64", "float64"],
            "litert-opt": ["ruy"] * 5 + ["double", "ruy", "ruy"],
            "xnnpack": ["xnnpack"] * 7 + ["ruy"],
            "cmsis-nn": ["double"] * 8}
    for runtime, schemes in want.items():
        _graph, plan = load_tflite(path, runtime)
        assert [lp.requant.value for lp in plan.layers] == schemes, runtime
        assert plan.name == f"tflite-int8@{runtime}"
    assert load_tflite(path)[1].name == "tflite-int8@tflm"
    assert not get_runtime("cmsis-nn").measured and get_runtime("xnnpack").measured
    fc16 = load_tflite(MODELS / "mnist_cnn_int16x8.tflite", "xnnpack")[1].layers[-1]
    assert fc16.requant.value == "float64" and fc16.acc_bits == 64
    from fxp.plan.io import plan_from_dict, plan_to_dict

    plan = load_tflite(path, "litert-opt")[1]  # the new schemes survive the plan JSON
    assert plan_from_dict(json.loads(json.dumps(plan_to_dict(plan))), "test") == plan


def test_load_model_and_cli_runtime(tmp_path: Path) -> None:
    """``fxp inspect|simulate --runtime`` name the profile; a runtime on an ONNX model and an
    unknown runtime are one-line errors with exit code 2."""
    from fxp.workflow import load_model

    with pytest.raises(PlanError, match=r"runtime profile \('xnnpack'\) applies to .tflite"):
        load_model("mnist_cnn", runtime="xnnpack")
    model = str(MODELS / "dw_avgpool_int8.tflite")

    def fxp(*args):
        return subprocess.run([sys.executable, "-m", "fxp", *args], capture_output=True,
                              check=False, text=True, timeout=300)

    r = fxp("inspect", model, "--runtime", "litert-opt")
    assert r.returncode == 0 and "runtime litert-opt: LiteRT BUILTIN_WITHOUT" in r.stdout
    r = fxp("inspect", model, "--runtime", "cmsis-nn", "--json")
    info = json.loads(r.stdout)
    assert info["runtime"] == "cmsis-nn" and any("not measured" in n
                                                 for n in info["runtime_notes"])
    r = fxp("simulate", model, "--runtime", "xnnpack", "--data", "mnist5k", "--limit", "20")
    assert r.returncode == 0 and "with plan tflite-int8@xnnpack" in r.stdout
    r = fxp("export", "golden", model, "--runtime", "nope", "--data", "mnist5k", "-n", "1",
            "--out", str(tmp_path / "g"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'nope'" in r.stderr
