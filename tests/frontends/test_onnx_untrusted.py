"""Hostile or malformed ONNX files: typed, one-line errors naming the node, never a traceback.

Each test is a reproducer from the fuzzing campaign of issue 24 (2,598
mutated models): attributes of the wrong type or range, NaN/Inf reaching the
weights, opset-dependent Clip bounds, several graph outputs, memory bombs,
identity Reshape/Transpose, long Identity chains and non-UTF-8 strings.  The
seeded mutation fuzzer over both importers is in ``test_onnx_fuzz.py``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fxp import workflow as fw
from fxp.errors import FxpError, ModelImportError, UnsupportedOpError
from fxp.frontends import onnx_context
from fxp.frontends.onnx_import import MAX_SAMPLE_ELEMENTS, load_onnx
from fxp.frontends.onnx_qoperator import load_qoperator
from fxp.ir import nodes as ir
from fxp.ir.passes import canonicalize
from fxp.sim.compile import compile_plan
from fxp.sim.float_ref import run_float
from fxp.sim.integer import run_integer
from tests.builders import OnnxBuilder, assert_close_to_ort, conv, dense, flatten, run_ort

RNG = np.random.default_rng(24)


def _raises(exc: type, model: onnx.ModelProto | bytes, node: str, *words: str,
            loader=load_onnx) -> str:
    """Import must raise exactly ``exc``, on one line naming ``node`` and ``words``."""
    with pytest.raises(FxpError) as info:
        loader(model)
    msg = str(info.value)
    assert type(info.value) is exc, (type(info.value), msg)
    assert "\n" not in msg and f"'{node}'" in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def _set_attr(model: onnx.ModelProto, node: str, name: str, value: object) -> onnx.ModelProto:
    """``model`` with attribute ``name`` of node ``node`` replaced by ``value`` (any type)."""
    n = next(n for n in model.graph.node if n.name == node)
    for a in list(n.attribute):
        if a.name == name:
            n.attribute.remove(a)
    n.attribute.append(helper.make_attribute(name, value))
    return model


def _conv_model(**kw: object) -> onnx.ModelProto:
    b = OnnxBuilder((4, 6, 6))
    return b.model(flatten(b, conv(b, "x", 4, **kw)))


def _gemm_model(out: int = 3, scale: float | None = None, **attrs: object) -> onnx.ModelProto:
    b = OnnxBuilder((4,))
    ins = ["x", b.weight(out, 4, scale=scale), b.init(RNG.normal(size=out).astype(np.float32))]
    return b.model(b.node("Gemm", ins, (out,), transB=1, **attrs))


def _x(b: OnnxBuilder, n: int = 3) -> np.ndarray:
    return RNG.normal(0, 2, (n, *b.shapes["x"])).astype(np.float32)


# ------------------------------------------------------------ 1. typed attributes
@pytest.mark.parametrize(("model", "node", "attr", "value", "want", "got"), [
    (_gemm_model, "gemm3", "transB", "0", "INT", "STRING"),  # "0" was read as true
    (_gemm_model, "gemm3", "alpha", 2, "FLOAT", "INT"),
    (_conv_model, "conv3", "group", [1, 2], "INT", "INTS"),
    (_conv_model, "conv3", "group", 1.0, "INT", "FLOAT"),
    (_conv_model, "conv3", "strides", 2, "INTS", "INT"),
    (_conv_model, "conv3", "pads", np.zeros(4, np.int64), "INTS", "TENSOR"),
    (_conv_model, "conv3", "auto_pad", 1, "STRING", "INT"),
])
def test_attribute_of_wrong_type_refused(model, node: str, attr: str, value: object,
                                         want: str, got: str) -> None:
    """A stored type other than the one ONNX defines is a malformed model, never coerced."""
    if isinstance(value, np.ndarray):
        value = numpy_helper.from_array(value, "t")
    _raises(ModelImportError, _set_attr(model(), node, attr, value), node,
            f"attribute {attr!r} must be of type {want}, got {got}")


@pytest.mark.parametrize(("model", "node", "attr", "value", "words"), [
    (_gemm_model, "gemm3", "transB", 2, ("transB=2", "not one of [0, 1]")),
    (_gemm_model, "gemm3", "transA", -1, ("transA=-1", "not one of [0, 1]")),
    (_conv_model, "conv3", "strides", [0, 1], ("strides=[0, 1]", ">= 1")),
    (_conv_model, "conv3", "dilations", [1, -2], ("dilations=[1, -2]", ">= 1")),
    (_conv_model, "conv3", "kernel_shape", [0, 3], ("kernel_shape=[0, 3]", ">= 1")),
    (_conv_model, "conv3", "pads", [1, -1, 1, 1], ("pads=[1, -1, 1, 1]", ">= 0")),
    (_conv_model, "conv3", "group", 0, ("group=0", ">= 1")),
    (_conv_model, "conv3", "group", 3, ("group=3 does not fit",)),
    (_conv_model, "conv3", "strides", [1, 1, 1], ("strides=[1, 1, 1] must be 2 integers",)),
])
def test_attribute_out_of_range_refused(model, node: str, attr: str, value: object,
                                        words: tuple[str, ...]) -> None:
    _raises(ModelImportError, _set_attr(model(), node, attr, value), node, *words)


def test_axis_out_of_range_refused() -> None:
    b = OnnxBuilder((2, 3, 4))
    _raises(UnsupportedOpError, b.model(b.node("Softmax", ["x"], None, axis=-9)), "softmax1",
            "axis=-9")
    b = OnnxBuilder((2, 3, 4))
    _raises(UnsupportedOpError, b.model(b.node("Concat", ["x", "x"], (4, 3, 4), axis=4)),
            "concat1", "axis=4")


# -------------------------------------------------------------- 2. finite values
@pytest.mark.parametrize(("attr", "value"), [("alpha", float("nan")), ("beta", float("inf")),
                                             ("alpha", float("-inf"))])
def test_non_finite_gemm_scalars_refused(attr: str, value: float) -> None:
    _raises(ModelImportError, _gemm_model(**{attr: value}), "gemm3", repr(attr),
            "must be finite")


def test_gemm_alpha_overflowing_float32_refused() -> None:
    """Finite alpha and finite weights whose product leaves float32: caught after scaling."""
    model = _gemm_model(scale=1e30, alpha=1e10)
    w = numpy_helper.to_array(model.graph.initializer[0])
    assert np.all(np.isfinite(w)) and np.abs(w.astype(np.float64) * 1e10).max() > 3.5e38
    _raises(ModelImportError, model, "gemm3", "alpha * B", "not finite in float32")


def _bn_model(eps: float, scale: float = 1.0, weight: float = 0.5,
              var: float = 1.0) -> onnx.ModelProto:
    b = OnnxBuilder((2, 4, 4))
    y = b.node("Conv", ["x", b.init(np.full((2, 2, 1, 1), weight, np.float32))], (2, 4, 4),
               kernel_shape=[1, 1])
    vec = [np.full(2, v, np.float32) for v in (scale, 0.5, 0.1, var)]
    y = b.node("BatchNormalization", [y, *(b.init(v) for v in vec)], None, epsilon=eps)
    return b.model(flatten(b, y))


@pytest.mark.parametrize(("kw", "words"), [
    ({"eps": float("nan")}, ("'epsilon' must be finite",)),
    ({"eps": -1.0}, ("var + epsilon must be > 0", "epsilon = -1.0")),         # eps = -var
    ({"eps": -1.5}, ("var + epsilon must be > 0",)),                           # sqrt(negative)
    ({"eps": 0.0, "var": 1e-44, "scale": 1e30}, ("scale / sqrt(var + epsilon)",)),
    ({"eps": 1e-5, "scale": 100.0, "weight": 1e37}, ("folding into 'conv2'",
                                                           "not finite in float32")),
])
def test_batchnorm_non_finite_or_overflowing_fold_refused(kw: dict, words: tuple) -> None:
    """NaN/negative epsilon, an overflowing scale and an overflowing fold are all refused."""
    _raises(ModelImportError, _bn_model(**kw), "batchnormalization7", *words)


@pytest.mark.parametrize("bad", [1e39, -1e300, np.inf, np.nan])
def test_float64_initializer_beyond_float32_refused(bad: float) -> None:
    model = _gemm_model()
    w = numpy_helper.to_array(model.graph.initializer[0]).astype(np.float64)
    w[2, 1] = bad
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w1"))
    with pytest.raises(ModelImportError, match=r"tensor 'w1' has .*at index \(2, 1\)") as info:
        load_onnx(model)
    assert "\n" not in str(info.value)


def test_bias_sum_overflowing_float32_refused() -> None:
    b = OnnxBuilder((3,))
    y = b.node("Gemm", ["x", b.weight(3, 2), b.init(np.full(2, 3e38, np.float32))], (2,))
    y = b.node("Add", [y, b.init(np.full(2, 3e38, np.float32))], None)
    _raises(ModelImportError, b.model(y), "add5", "bias of 'gemm3' + addend 'w4'",
            "not finite in float32: value 6.0000000109955115e+38 at index (0,)")


# -------------------------------------------------------------------- 3. Clip
def _clip_model(opset: int, *, inputs: tuple = (), **attrs: float) -> onnx.ModelProto:
    b = OnnxBuilder((6,), opset=opset)
    ins = ["x", *(b.init(np.float32(v)) if v is not None else "" for v in inputs)]
    return b.model(b.node("Clip", ins, None, **attrs))


@pytest.mark.parametrize(("opset", "inputs", "attrs"), [
    (9, (-0.5, 1.0), {}), (10, (None, 1.0), {}),      # inputs before opset 11: were dropped
    (11, (), {"min": -0.5, "max": 1.0}), (13, (), {"max": 1.0}),  # attributes from opset 11
])
def test_clip_bounds_given_the_wrong_way_refused(opset: int, inputs: tuple, attrs: dict) -> None:
    """Bounds in the form the opset does not define would import unbounded: refused."""
    words = ("as attributes", "inputs need opset >= 11") if inputs else \
        ("as inputs 1 and 2", "attributes need opset < 11")
    _raises(ModelImportError, _clip_model(opset, inputs=inputs, **attrs),
            f"clip{sum(v is not None for v in inputs) + 1}", *words)


@pytest.mark.parametrize(("opset", "inputs", "attrs"), [
    (9, (), {"min": -0.5, "max": 1.0}), (10, (), {"max": 0.25}),
    (11, (-0.5, 1.0), {}), (13, (None, 0.25), {}), (17, (-0.75,), {}),
])
def test_clip_bounds_read_for_each_opset_match_onnxruntime(opset: int, inputs: tuple,
                                                           attrs: dict) -> None:
    model = _clip_model(opset, inputs=inputs, **attrs)
    x = RNG.normal(0, 2, (8, 6)).astype(np.float32)
    got = run_float(load_onnx(model), x)
    assert_close_to_ort(got, run_ort(model, x))
    assert got.min() > x.min() or got.max() < x.max()  # some bound was applied


def test_clip_bound_computed_at_run_time_refused() -> None:
    b = OnnxBuilder((6,), opset=13)
    y = b.node("Clip", ["x", "x"], None)
    _raises(UnsupportedOpError, b.model(y), "clip1", "must be a constant")


# ------------------------------------------------------------- 4. graph outputs
def _two_layer() -> tuple[OnnxBuilder, str, str]:
    b = OnnxBuilder((3,))
    y1 = dense(b, "x", 4)
    return b, y1, dense(b, y1, 2)


def test_second_graph_output_refused() -> None:
    b, y1, y2 = _two_layer()
    with pytest.raises(ModelImportError, match=r"graph has 2 outputs \['gemm6_out', "
                                               r"'gemm3_out'\]; fxp supports exactly one"):
        load_onnx(b.model([y2, y1]))


def test_output_not_last_node_or_input_refused() -> None:
    b, y1, _ = _two_layer()
    with pytest.raises(ModelImportError, match=r"node 'gemm6' \(Dense\) does not feed the "
                                               r"graph output 'gemm3_out'"):
        load_onnx(b.model(y1))
    b, _, _ = _two_layer()
    with pytest.raises(ModelImportError, match="graph output 'x' is the graph input"):
        load_onnx(b.model("x"))


# ----------------------------------------------------------------- 5. sizes
def test_conv_pad_bomb_refused_at_import() -> None:
    """A few hundred bytes asking for 2**42 elements per channel stop at import."""
    b = OnnxBuilder((1, 4, 4))
    model = b.model(b.node("Conv", ["x", b.init(np.ones((1, 1, 1, 1), np.float32))],
                           (1, 1, 1), pads=[2 ** 20] * 4))
    assert len(model.SerializeToString()) < 400
    _raises(ModelImportError, model, "conv2", "(None, 1, 2097156, 2097156)",
            f"MAX_SAMPLE_ELEMENTS = {MAX_SAMPLE_ELEMENTS}")


def test_layer_mac_limit(monkeypatch) -> None:
    model = _conv_model(kernel=(3, 3))
    macs = 4 * 4 * 9 * 6 * 6  # Cin * Cout * kh * kw * OH * OW
    monkeypatch.setattr(onnx_context, "MAX_LAYER_MACS", macs)
    load_onnx(model)
    monkeypatch.setattr(onnx_context, "MAX_LAYER_MACS", macs - 1)
    _raises(ModelImportError, model, "conv3", f"{macs} multiply-accumulates",
            f"MAX_LAYER_MACS = {macs - 1}")


@pytest.mark.parametrize(("dims", "match"), [
    ([2 ** 33, 2 ** 31], "elements"),  # int64 product wraps to 0
    ([0, 2 ** 62], "above the limit"), ([1] * 40, "rank 40")])
def test_initializer_dims_bomb_refused(dims: list, match: str) -> None:
    model = _gemm_model()
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    del t.dims[:]
    t.dims.extend(dims)
    with pytest.raises(ModelImportError, match=f"tensor 'w1' .*{match}"):
        load_onnx(model)


def test_declared_input_bomb_refused() -> None:
    b = OnnxBuilder((2 ** 20, 2 ** 20, 3))
    with pytest.raises(ModelImportError, match=r"input 'x' has shape \[1048576, 1048576, 3\] "
                                               r"per sample, 3298534883328 elements, above"):
        load_onnx(b.model(b.node("Relu", ["x"], None)))


# ------------------------------------------------- 6. identity Transpose / Reshape
def _layout_pair(layout) -> tuple[onnx.ModelProto, onnx.ModelProto, np.ndarray]:
    """A CNN with ``layout(b, y)`` after its conv + ReLU, and the same model without it."""
    b = OnnxBuilder((2, 5, 5))
    y = b.node("Relu", [conv(b, "x", 3)], None)
    z = layout(b, y)
    out = dense(b, flatten(b, z), 4)
    with_op = b.model(out)
    without = onnx.ModelProto()
    without.CopyFrom(with_op)
    idx = next(i for i, n in enumerate(without.graph.node) if n.output[0] == z)
    del without.graph.node[idx]
    for n in without.graph.node:
        n.input[:] = [y if t == z else t for t in n.input]
    return with_op, without, _x(b, 16)


LAYOUTS = {
    "reshape[-1,C,H,W]": lambda b, y: b.node("Reshape", [y, b.init(np.array([-1, 3, 5, 5]))],
                                             None),
    "reshape[0,C,H,W]": lambda b, y: b.node("Reshape", [y, b.init(np.array([0, 3, 5, 5]))],
                                            None),
    "transpose identity": lambda b, y: b.node("Transpose", [y], None, perm=[0, 1, 2, 3]),
    "reshape[-1,C*H,W]": lambda b, y: b.node("Reshape", [y, b.init(np.array([-1, 15, 5]))],
                                             (15, 5)),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_ops_keep_every_dimension_in_the_integer_engine(name: str) -> None:
    """With or without the relabelling, the integer engine gives bit-identical codes.

    The integer engine used to drop the first per-sample dim of a Reshape
    (``reshape(N, *shape[1:])``) and crashed or mis-shaped.
    """
    with_op, without, x = _layout_pair(LAYOUTS[name])
    graph = load_onnx(with_op)
    kinds = {type(n) for n in graph.nodes}
    assert (ir.Reshape in kinds) == (name == "reshape[-1,C*H,W]")  # identities normalized
    data = fw.Data(x, np.zeros(len(x), np.int64), "random")
    outs = []
    for model in (with_op, without):
        g = canonicalize(load_onnx(model))
        outs.append(run_integer(compile_plan(g, fw.make_plan(g, data, bits=8)), x).output)
    assert outs[0].shape == (16, 4) and np.array_equal(outs[0], outs[1])
    assert_close_to_ort(run_float(graph, x), run_ort(with_op, x))


def test_trained_export_writes_the_per_sample_reshape() -> None:
    """fxp.train's ONNX writer wrote ``[0, *shape[1:]]`` (a dim short) for a Reshape node."""
    from fxp.train.export import graph_to_onnx

    with_op, _, x = _layout_pair(LAYOUTS["reshape[-1,C*H,W]"])
    graph = canonicalize(load_onnx(with_op))
    model = graph_to_onnx(graph)
    back = canonicalize(load_onnx(model))
    assert [(n.op_type, back.shapes[n.output]) for n in back.nodes] == \
        [(n.op_type, graph.shapes[n.output]) for n in graph.nodes]
    assert_close_to_ort(run_float(graph, x), run_ort(model, x))


def test_reshape_merging_a_declared_batch_refused() -> None:
    """``[1, -1]`` on a declared batch of 4 merges samples (it was read as a flatten)."""
    b = OnnxBuilder((2, 3), batch=4)
    y = b.node("Reshape", ["x", b.init(np.array([1, -1]))], (24,))
    _raises(UnsupportedOpError, b.model(y), "reshape2", "does not keep the batch dimension")


# ---------------------------------------------------------- 7. long Identity chains
@pytest.mark.parametrize("at_output", [False, True])
def test_long_identity_dropout_chains_import(at_output: bool) -> None:
    b = OnnxBuilder((3,))
    y = "x" if at_output else dense(b, "x", 4)
    if at_output:
        y = dense(b, y, 2)
    for i in range(250):
        y = b.node("Identity" if i % 2 else "Dropout", [y], None)
    if not at_output:
        y = dense(b, y, 2)
    model = b.model(y)
    graph = canonicalize(load_onnx(model))
    assert [n.op_type for n in graph.nodes] == (["Dense"] if at_output else ["Dense", "Dense"])
    assert graph.outputs == (y,)
    x = _x(b, 5)
    assert_close_to_ort(run_float(graph, x), run_ort(model, x))


# ------------------------------------------------------------ QOperator importer
def _q(name: str, value: object) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _qoperator_model(*, input_zero_point: bool = True, identity: bool = False,
                     y_scale: float = 0.05) -> onnx.ModelProto:
    """QuantizeLinear -> QLinearConv -> MaxPool [-> Transpose(identity)] -> Reshape ->
    QLinearMatMul -> DequantizeLinear, on [N, 2, 6, 6]."""
    r = np.random.default_rng(3)
    xz = np.int8(-5) if input_zero_point else np.uint8(0)  # ONNX default: uint8, 0
    w = r.integers(-64, 65, (4, 2, 3, 3))
    wt, wz = (np.int8, 0) if input_zero_point else (np.uint8, 128)  # ORT: s8s8 or u8u8
    at = np.int8 if input_zero_point else np.uint8  # activations
    inits = [_q("xs", np.float32(0.02)), _q("xz", xz), _q("w", (w + wz).astype(wt)),
             _q("ws", np.full(4, 0.002, np.float32)), _q("wz", np.full(4, wz, wt)),
             _q("ys", np.float32(y_scale)), _q("yz", at(3)),
             _q("b", np.array([5, -3, 0, 7], np.int32)), _q("shape", np.array([-1, 36])),
             _q("b2", r.integers(-64, 65, (36, 5)).astype(np.int8)),
             _q("bs2", r.uniform(0.001, 0.01, 5).astype(np.float32)),
             _q("bz2", np.zeros(5, np.int8)), _q("ys2", np.float32(0.04)),
             _q("yz2", at(7))]
    mk = helper.make_node
    nodes = [mk("QuantizeLinear", ["x", "xs", "xz"][:3 if input_zero_point else 2], ["xq"]),
             mk("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["yq"],
                pads=[1, 1, 1, 1], name="conv"),
             mk("MaxPool", ["yq"], ["pq"], kernel_shape=[2, 2], strides=[2, 2]),
             mk("Reshape", ["tq" if identity else "pq", "shape"], ["rq"]),
             mk("QLinearMatMul", ["rq", "ys", "yz", "b2", "bs2", "bz2", "ys2", "yz2"], ["mq"],
                name="mm"),
             mk("DequantizeLinear", ["mq", "ys2", "yz2"], ["y"])]
    if identity:
        nodes.insert(3, mk("Transpose", ["pq"], ["tq"], perm=[0, 1, 2, 3], name="same"))
    g = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [None, 2, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize(("zp", "identity"), [(False, False), (True, True)])
def test_qoperator_default_zero_point_and_identity_transpose_match_onnxruntime(
        zp: bool, identity: bool) -> None:
    """QuantizeLinear without a zero point (uint8, 0: it crashed with a NameError) and an
    identity Transpose (an alias, no node) give onnxruntime's integer codes exactly."""
    from fxp.frontends.onnx_qoperator import qoperator_tensor_map

    model = _qoperator_model(input_zero_point=zp, identity=identity)
    graph, plan = load_qoperator(model)
    assert plan.input.fmt.signed == zp and plan.input.zero_point == (-5 if zp else 0)
    assert "same" not in {n.name for n in graph.nodes}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.ValueInfoProto(name="mq"))
    import onnxruntime as ort

    x = RNG.normal(0, 1, (64, 2, 6, 6)).astype(np.float32)
    theirs = ort.InferenceSession(probe.SerializeToString(),
                                  providers=["CPUExecutionProvider"]).run(["mq"], {"x": x})[0]
    mine = run_integer(compile_plan(graph, plan), x, keep=True).values
    assert np.array_equal(mine[qoperator_tensor_map(graph)["mq"]].codes,
                          theirs.astype(np.int64))


def test_qoperator_requantization_scale_overflow_refused() -> None:
    """s_x * s_w / s_y = 0.02 * 0.002 / 1e-45 overflows float32: refused, not an inf scale."""
    _raises(ModelImportError, _qoperator_model(y_scale=1e-45), "conv",
            "requantization scale", "normal positive float32", loader=load_qoperator)


def test_qoperator_typed_attributes_and_single_output() -> None:
    model = _set_attr(_qoperator_model(), "conv", "group", [1])
    _raises(ModelImportError, model, "conv", "attribute 'group' must be of type INT, got INTS",
            loader=load_qoperator)
    model = _qoperator_model()
    model.graph.output.append(onnx.ValueInfoProto(name="yq"))
    with pytest.raises(ModelImportError, match=r"graph has 2 outputs \['y', 'yq'\]"):
        load_qoperator(model)


# ------------------------------------------------------------------ strings
@pytest.mark.parametrize("loader", [load_onnx, load_qoperator])
def test_non_utf8_names_refused(loader) -> None:
    """protobuf hands invalid UTF-8 strings back as ``bytes``; they are refused up front."""
    data = _conv_model().SerializeToString().replace(b"conv3", b"co\xffv3")
    with pytest.raises(ModelImportError, match=r"<bytes>: model\.graph\.node\.\w+ is not "
                                               r"valid UTF-8: b'co\\xffv3"):
        loader(data)


def test_control_characters_in_names_stay_on_one_line() -> None:
    model = _set_attr(_conv_model(), "conv3", "group", 3)
    model.graph.node[0].name = "conv\n3"
    model.graph.node[0].op_type = "Co\nnv"
    with pytest.raises(FxpError) as info:
        load_onnx(model)
    assert "\n" not in str(info.value) and r"'conv\n3'" in str(info.value)
