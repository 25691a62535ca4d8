"""Every class of bad ONNX input is refused with a named, typed error.

Each test asserts the exception type and that the message names the file,
node (name and op_type), tensor or value at fault.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fxp.errors import FxpError, ModelImportError, UnsupportedOpError
from fxp.frontends.onnx_import import load_onnx
from tests.builders import OnnxBuilder, conv, dense, flatten, pool


def _conv_model() -> onnx.ModelProto:
    b = OnnxBuilder((2, 5, 5))
    return b.model(conv(b, "x", 3))


# --------------------------------------------------------------- files
def test_truncated_file_names_the_file(tmp_path) -> None:
    data = _conv_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    for cut in (1, 7, len(data) // 3, len(data) // 2, len(data) - 3):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelImportError, match="cut.onnx"):
            load_onnx(path)


def test_corrupt_bytes_rejected() -> None:
    with pytest.raises(ModelImportError, match=r"<bytes>: not a valid ONNX ModelProto"):
        load_onnx(b"\xff\xff\xff\xff garbage \x00\x01")


@pytest.mark.parametrize("content", [b"", None])
def test_empty_or_missing_file(tmp_path, content: bytes | None) -> None:
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelImportError, match="m.onnx"):
        load_onnx(path)


def test_oversized_model_refused() -> None:
    with pytest.raises(ModelImportError, match="above the limit 100"):
        load_onnx(_conv_model().SerializeToString(), max_bytes=100)


def test_wrong_source_type() -> None:
    with pytest.raises(TypeError, match="path, bytes or onnx.ModelProto"):
        load_onnx(3.5)


# ----------------------------------------------------------- model header
def test_unsupported_opset_and_ir_version() -> None:
    m = _conv_model()
    m.opset_import[0].version = 3
    with pytest.raises(ModelImportError, match="opset 3 is outside"):
        load_onnx(m)
    m = _conv_model()
    m.ir_version = 99
    with pytest.raises(ModelImportError, match="ir_version 99"):
        load_onnx(m)


def test_empty_graph() -> None:
    m = _conv_model()
    del m.graph.node[:]
    with pytest.raises(ModelImportError, match="no nodes"):
        load_onnx(m)


def test_multiple_inputs_refused() -> None:
    m = _conv_model()
    m.graph.input.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2]))
    with pytest.raises(ModelImportError, match=r"2 inputs \['x', 'y'\]"):
        load_onnx(m)


@pytest.mark.parametrize(("dims", "match"), [(["N", "C", 5, 5], "dim 1 is symbolic 'C'"),
                                             (["N", 2, "H", 5], "dim 2 is symbolic 'H'"),
                                             ([1, 2, 5, 0], "dim 3 is 0")])
def test_dynamic_non_batch_dims_refused(dims: list, match: str) -> None:
    b = OnnxBuilder((2, 5, 5))
    b.input_dims = dims
    with pytest.raises(ModelImportError, match=match):
        load_onnx(b.model(conv(b, "x", 3)))


def test_symbolic_batch_dim_accepted() -> None:
    b = OnnxBuilder((2, 5, 5), batch="batch_size")
    assert load_onnx(b.model(conv(b, "x", 3))).input_shapes["x"] == (None, 2, 5, 5)


# --------------------------------------------------------------- tensors
def test_missing_initializer_names_tensor_and_node() -> None:
    m = _conv_model()
    del m.graph.initializer[0]
    with pytest.raises(ModelImportError, match=r"node 'conv\d+' \(Conv\): weight 'w1' .*missing "
                                               r"initializer"):
        load_onnx(m)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight_names_tensor_and_index(bad: float) -> None:
    m = _conv_model()
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w[1, 0, 2, 1] = bad
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w1"))
    with pytest.raises(ModelImportError, match=r"tensor 'w1' has non-finite value .* at index "
                                               r"\(1, 0, 2, 1\)"):
        load_onnx(m)


def test_raw_data_length_mismatch() -> None:
    m = _conv_model()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-4]
    with pytest.raises(ModelImportError, match=r"tensor 'w1': raw_data has \d+ bytes"):
        load_onnx(m)


def test_unsupported_initializer_dtype() -> None:
    m = _conv_model()
    m.graph.initializer[0].data_type = TensorProto.BFLOAT16
    with pytest.raises(ModelImportError, match="tensor 'w1' has unsupported element type 16"):
        load_onnx(m)


def _external(m: onnx.ModelProto, location: str) -> onnx.ModelProto:
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    return m


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"])
def test_external_data_leaving_the_folder_refused(tmp_path, location: str) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    path.write_bytes(_external(_conv_model(), location).SerializeToString())
    with pytest.raises(ModelImportError, match=r"tensor 'w1': external data location .* leaves "
                                               r"the model folder"):
        load_onnx(path)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_external_data_symlink_escaping_refused(tmp_path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").symlink_to(tmp_path / "secret.bin")
    path = folder / "m.onnx"
    path.write_bytes(_external(_conv_model(), "w.bin").SerializeToString())
    with pytest.raises(ModelImportError, match="outside the model folder"):
        load_onnx(path)


def test_external_data_too_short_or_without_folder(tmp_path) -> None:
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    m = _external(_conv_model(), "w.bin")
    (tmp_path / "m.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(ModelImportError, match=r"tensor 'w1': external data offset 0"):
        load_onnx(tmp_path / "m.onnx")
    with pytest.raises(ModelImportError, match="needs the model's folder"):
        load_onnx(m)


# ----------------------------------------------------------------- ops
def test_unsupported_op_lists_supported_set() -> None:
    b = OnnxBuilder((2, 5, 5))
    y = b.node("Elu", ["x"], None, alpha=0.1)
    with pytest.raises(UnsupportedOpError, match=r"node 'elu1' \(Elu\): op_type "
                                                 r"'Elu' is not supported; supported op "
                                                 r"types: \['Add', 'AveragePool'"):
        load_onnx(b.model(y))


def test_custom_domain_refused() -> None:
    m = _conv_model()
    m.graph.node[0].domain = "qonnx.custom_op.general"
    with pytest.raises(UnsupportedOpError, match="domain 'qonnx.custom_op.general'"):
        load_onnx(m)


def _pool_model(**attrs: object) -> onnx.ModelProto:
    b = OnnxBuilder((2, 6, 6))
    return b.model(pool(b, "x", "MaxPool", **attrs))


@pytest.mark.parametrize(("model", "exc", "match"), [
    (lambda: _pool_model(ceil_mode=1), UnsupportedOpError, r"\(MaxPool\): ceil_mode=1"),
    (lambda: _pool_model(pads=(2, 0, 0, 0)), ModelImportError, r"pads \[2, 0, 0, 0\] must be "
                                                                 r"smaller"),
    (lambda: _pool_model(kernel=(1, 1), strides=(2, 2), auto_pad="SAME_UPPER"),
     UnsupportedOpError, "negative padding"),
    (lambda: _pool_model(storage_order=1), UnsupportedOpError, "storage_order=1"),
    (lambda: _pool_model(foo=3), UnsupportedOpError, r"attribute 'foo' is not supported"),
])
def test_unsupported_pool_attributes(model, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        load_onnx(model())


def test_conv_attribute_errors() -> None:
    b = OnnxBuilder((4, 5, 5))
    y = conv(b, "x", 4, group=2)
    m = b.model(y)
    next(a for a in m.graph.node[0].attribute if a.name == "group").i = 3
    with pytest.raises(ModelImportError, match=r"node 'conv\d+' \(Conv\): group=3 does not "
                                               r"fit"):
        load_onnx(m)
    b = OnnxBuilder((4, 5, 5))
    with pytest.raises(UnsupportedOpError, match="auto_pad=SAME_UPPER with dilations"):
        load_onnx(b.model(conv(b, "x", 2, dilations=(2, 2), auto_pad="SAME_UPPER")))
    m = _conv_model()
    m.graph.node[0].attribute.append(helper.make_attribute("auto_pad", "BOGUS"))
    with pytest.raises(UnsupportedOpError, match="auto_pad='BOGUS'"):
        load_onnx(m)
    b = OnnxBuilder((2, 2, 2))
    with pytest.raises(ModelImportError, match="larger than the padded input"):
        load_onnx(b.model(conv(b, "x", 2, pads=(0, 0, 0, 0))))


def test_gemm_trans_a_and_dynamic_weight_refused() -> None:
    b = OnnxBuilder((4,))
    y = b.node("Gemm", ["x", b.weight(4, 3)], (3,), transA=1)
    with pytest.raises(UnsupportedOpError, match=r"\(Gemm\): transA=1"):
        load_onnx(b.model(y))
    b = OnnxBuilder((4,))
    y = b.node("MatMul", ["x", "x"], (4,))
    with pytest.raises(UnsupportedOpError, match="B 'x' must be a constant"):
        load_onnx(b.model(y))


def test_constant_add_outside_a_bias_position_refused() -> None:
    b = OnnxBuilder((2, 3, 3))
    y = b.node("Relu", ["x"], None)
    y = b.node("Add", [y, b.init(np.ones((2, 1, 1), np.float32))], None)
    with pytest.raises(UnsupportedOpError, match=r"node 'add\d+' \(Add\): adding constant"):
        load_onnx(b.model(y))


@pytest.mark.parametrize(("build", "match"), [
    (lambda b: b.node("Transpose", ["x"], (3, 2, 4), perm=[0, 2, 1, 3]), "moves data"),
    (lambda b: b.node("Reshape", ["x", b.init(np.array([2, -1], np.int64))], (12,)),
     r"target shape \[2, -1\]"),
    (lambda b: b.node("Concat", ["x", "x"], None, axis=0), "axis=0 is not a non-batch axis"),
    (lambda b: b.node("Flatten", ["x"], (24,), axis=2), "axis=2 is not supported"),
])
def test_layout_ops_that_move_data_refused(build, match: str) -> None:
    b = OnnxBuilder((2, 3, 4))
    with pytest.raises(UnsupportedOpError, match=match):
        load_onnx(b.model(build(b)))


def test_old_softmax_over_flattened_dims_refused() -> None:
    b = OnnxBuilder((2, 3, 4), opset=11)
    with pytest.raises(UnsupportedOpError, match=r"opset-11 Softmax over flattened dims"):
        load_onnx(b.model(b.node("Softmax", ["x"], None, axis=1)))


def test_dropout_training_mode_and_used_mask_refused() -> None:
    b = OnnxBuilder((3,))
    y = b.node("Dropout", ["x", "", b.init(np.array(True))], None)
    with pytest.raises(UnsupportedOpError, match="training_mode=True"):
        load_onnx(b.model(y))
    b = OnnxBuilder((3,))
    y = b.node("Dropout", ["x"], None, n_outputs=2)
    with pytest.raises(UnsupportedOpError, match="extra output 'dropout1_out1' is used"):
        load_onnx(b.model([y, "dropout1_out1"]))


def test_graph_defects_named() -> None:
    b = OnnxBuilder((3,))
    y = dense(b, "x", 2)
    m = b.model(y)
    m.graph.output[0].name = "nowhere"
    with pytest.raises(ModelImportError, match="graph output 'nowhere' is not produced"):
        load_onnx(m)
    b = OnnxBuilder((3,))
    b.nodes.append(helper.make_node("Relu", ["ghost"], ["relu1_out"], name="relu1"))
    with pytest.raises(ModelImportError, match=r"input 'ghost' is not produced before this "
                                               r"node"):
        load_onnx(b.model("relu1_out"))


def test_every_rejection_is_an_fxp_error_without_chained_traceback() -> None:
    b = OnnxBuilder((2, 3, 4))
    with pytest.raises(FxpError) as info:
        load_onnx(b.model(flatten(b, b.node("Resize", ["x"], None))))
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_non_finite_constant_node_refused() -> None:
    b = OnnxBuilder((2,))
    b.nodes.append(helper.make_node("Constant", [], ["k"], name="const_k",
                                    value_floats=[1.0, float("nan")]))
    y = b.node("Add", [dense(b, "x", 2), "k"], None)
    with pytest.raises(ModelImportError, match=r"node 'const_k' \(Constant\): tensor 'k' has "
                                               r"non-finite value nan at index \(1,\)"):
        load_onnx(b.model(y))
