"""Differential tests: ``run_float(load_onnx(m), x)`` against onnxruntime.

Tolerance (float32 both sides): ``rtol = 1e-5`` and ``atol = 1e-5 * max|ref|``
(see :func:`tests.builders.assert_close_to_ort`).  onnxruntime runs with graph
optimizations disabled so that it executes the model as written.
"""

from __future__ import annotations

import numpy as np
import pytest

from fxp.frontends.onnx_import import load_onnx
from fxp.ir import nodes as ir
from fxp.ir.passes import canonicalize
from fxp.sim.float_ref import run_float
from tests.builders import (
    OnnxBuilder,
    assert_close_to_ort,
    batchnorm,
    clip,
    conv,
    dense,
    flatten,
    pool,
    random_model,
    run_ort,
)

N_RANDOM = 240


@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_random_model_matches_onnxruntime(seed: int) -> None:
    """Random small CNN/MLP: the import, and its canonical form, match ORT."""
    model, x = random_model(seed)
    ref = run_ort(model, x)
    graph = load_onnx(model)
    assert_close_to_ort(run_float(graph, x), ref)
    assert_close_to_ort(run_float(canonicalize(graph), x), ref)


def _check(b: OnnxBuilder, y: str, batch: int = 2, seed: int = 0) -> ir.Node:
    model = b.model(y)
    x = np.random.default_rng(seed).normal(size=(batch, *b.shapes["x"])).astype(np.float32)
    graph = load_onnx(model)
    assert_close_to_ort(run_float(graph, x), run_ort(model, x))
    return graph


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize(("hw", "kernel", "stride"), [((6, 7), (1, 1), (2, 2)),
                                                      ((5, 6), (3, 2), (2, 3)),
                                                      ((4, 4), (2, 2), (1, 1))])
def test_conv_auto_pad_same(mode: str, hw: tuple, kernel: tuple, stride: tuple) -> None:
    """SAME padding puts the odd pixel at the end (UPPER) or the start (LOWER)."""
    b = OnnxBuilder((3, *hw))
    _check(b, conv(b, "x", 4, kernel=kernel, strides=stride, auto_pad=mode))


def test_depthwise_conv_with_multiplier_and_asymmetric_pads() -> None:
    b = OnnxBuilder((3, 7, 6))
    graph = _check(b, conv(b, "x", 6, kernel=(3, 2), group=3, pads=(0, 2, 1, 0),
                           dilations=(2, 1)))
    (layer,) = graph.nodes
    assert (layer.groups, layer.pads, layer.dilations) == (3, (0, 2, 1, 0), (2, 1))


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_avgpool_count_include_pad(count_include_pad: int) -> None:
    b = OnnxBuilder((2, 5, 5))
    y = pool(b, "x", "AveragePool", kernel=(3, 3), strides=(2, 2), pads=(1, 2, 0, 1),
             count_include_pad=count_include_pad)
    graph = _check(b, y)
    assert graph.nodes[0].count_include_pad is bool(count_include_pad)


@pytest.mark.parametrize("opset", [7, 10, 13])
def test_clip_bounds_attributes_and_inputs(opset: int) -> None:
    """Clip takes attributes before opset 11 and optional inputs from 11 on."""
    b = OnnxBuilder((2, 3, 3), opset=opset)
    y = clip(b, clip(b, "x", 0.0, 6.0), -0.5, None)
    graph = _check(b, y)
    assert [(n.min_value, n.max_value) for n in graph.nodes] == [(0.0, 6.0), (-0.5, np.inf)]


def test_matmul_add_folds_bias_and_gemm_transposes() -> None:
    b = OnnxBuilder((6,))
    y = dense(b, dense(b, "x", 5, style="matmul"), 3, style="gemm")
    graph = _check(b, y, batch=4)
    assert [type(n) for n in graph.nodes] == [ir.Dense, ir.Dense]
    assert graph.nodes[0].bias is not None and graph.nodes[0].output == b.nodes[1].output[0]


def test_conv_then_constant_add_becomes_conv_bias() -> None:
    b = OnnxBuilder((2, 4, 4))
    y = conv(b, "x", 3, bias=False)
    y = b.node("Add", [b.init(np.arange(3, dtype=np.float32).reshape(3, 1, 1)), y],
               b.shapes[y])
    graph = _check(b, y)
    assert len(graph.nodes) == 1 and graph.nodes[0].bias is not None


def test_constant_nodes_provide_weights() -> None:
    from onnx import helper, numpy_helper

    b = OnnxBuilder((3,))
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    b.nodes.append(helper.make_node("Constant", [], ["wc"], name="const_w",
                                    value=numpy_helper.from_array(w)))
    b.nodes.append(helper.make_node("Constant", [], ["bc"], name="const_b",
                                    value_floats=[0.5, -0.5]))
    y = b.node("MatMul", ["x", "wc"], (2,))
    y = b.node("Add", [y, "bc"], None)
    graph = _check(b, y)
    np.testing.assert_array_equal(graph.nodes[0].weight, w.T)


def test_reshape_and_noop_transpose_act_as_flatten() -> None:
    b = OnnxBuilder((3, 4, 4))
    y = b.node("GlobalAveragePool", ["x"], (3, 1, 1))
    y = b.node("Transpose", [y], (1, 1, 3), perm=[0, 2, 3, 1])
    y = flatten(b, y, "reshape0")
    graph = _check(b, y, batch=3)
    assert [n.op_type for n in graph.nodes] == ["GlobalAvgPool", "Reshape", "Flatten"]
    assert graph.shapes[y] == (None, 3)


def test_bn_on_vectors_and_softmax() -> None:
    b = OnnxBuilder((5,))
    y = batchnorm(b, dense(b, "x", 4))
    y = b.node("Softmax", [y], None, axis=-1)
    _check(b, y)


def test_fixed_batch_model_still_runs_any_batch() -> None:
    """A model declared with batch 1 imports with a free batch."""
    b = OnnxBuilder((2, 5, 5), batch=1)
    y = conv(b, "x", 2)
    graph = load_onnx(b.model(y))
    assert graph.input_shapes["x"] == (None, 2, 5, 5)
    x = np.ones((3, 2, 5, 5), np.float32)
    out = run_float(graph, x)
    assert out.shape == (3, 2, 5, 5)
    np.testing.assert_array_equal(out[0], out[2])


def test_metadata_props_are_copied() -> None:
    b = OnnxBuilder((1, 3, 3))
    meta = {"fxp.preprocess.scale": "0.00392156862745098", "fxp.preprocess.mean": "0.1307",
            "fxp.preprocess.std": "0.3081", "fxp.input_layout": "NCHW"}
    graph = load_onnx(b.model(b.node("Relu", ["x"], None), metadata=meta))
    assert dict(graph.metadata) == meta


def test_load_from_path_and_bytes(tmp_path) -> None:
    b = OnnxBuilder((2, 4, 4))
    model = b.model(conv(b, "x", 3))
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    g1, g2 = load_onnx(path), load_onnx(str(path))
    g3 = load_onnx(model.SerializeToString())
    for g in (g2, g3):
        np.testing.assert_array_equal(g.nodes[0].weight, g1.nodes[0].weight)


def test_external_data_inside_the_model_folder_loads(tmp_path) -> None:
    import onnx

    b = OnnxBuilder((2, 4, 4))
    model = b.model(conv(b, "x", 3))
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0])
    onnx.save_model(model, tmp_path / "m.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    graph = load_onnx(tmp_path / "m.onnx")
    assert (tmp_path / "weights.bin").is_file()
    np.testing.assert_array_equal(graph.nodes[0].weight, weight)


def test_reshape_to_declared_batch_is_a_flatten() -> None:
    """``Reshape(x, [4, -1])`` is a flatten when the model declares batch 4."""
    b = OnnxBuilder((2, 3, 3), batch=4)
    y = b.node("Reshape", ["x", b.init(np.array([4, -1], np.int64), "shape")], (18,))
    graph = _check(b, y, batch=4)
    assert [n.op_type for n in graph.nodes] == ["Flatten"]
