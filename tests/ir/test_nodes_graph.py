"""Typed nodes and the Graph: construction checks, queries, rewriting helpers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fxp.errors import GraphError
from fxp.ir import Graph, layer_stats, node_macs, param_count
from fxp.ir import nodes as ir

W = np.ones((4, 2, 3, 3), np.float32)


def conv(name: str = "c", x: str = "x", y: str = "y", **kw: object) -> ir.Conv2D:
    kw.setdefault("weight", W)
    return ir.Conv2D(name=name, inputs=(x,), outputs=(y,), **kw)


def small_graph() -> Graph:
    """x -> conv -> relu -> (add with conv output) -> gap -> flatten -> dense."""
    nodes = (conv("c1", "x", "a", pads=(1, 1, 1, 1)),
             ir.ReLU(name="r", inputs=("a",), outputs=("b",)),
             ir.Add(name="add", inputs=("a", "b"), outputs=("s",)),
             ir.GlobalAvgPool(name="gap", inputs=("s",), outputs=("g",)),
             ir.Flatten(name="f", inputs=("g",), outputs=("v",)),
             ir.Dense(name="fc", inputs=("v",), outputs=("y",),
                      weight=np.ones((3, 4), np.float32), bias=np.zeros(3, np.float32)))
    return Graph(nodes=nodes, inputs=("x",), input_shapes={"x": (1, 2, 6, 5)}, outputs=("y",))


# ------------------------------------------------------------------ nodes
def test_conv_shape_and_fields() -> None:
    c = conv(strides=(2, 1), pads=(0, 1, 1, 0), dilations=(1, 2))
    assert c.infer_shape((None, 2, 7, 8)) == (None, 4, 3, 5)  # (7+1-3)//2+1, 8+1-5+1
    assert c.kernel == (3, 3) and c.op_type == "Conv2D"
    assert not c.weight.flags.writeable
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.groups = 2  # type: ignore[misc]


@pytest.mark.parametrize(("kw", "match"), [
    ({"weight": np.ones((4, 2, 3), np.float32)}, r"weight must be \[Cout"),
    ({"bias": np.ones(3, np.float32)}, r"bias shape \(3,\) != \(4,\)"),
    ({"groups": 3}, "groups=3 must be >= 1 and divide Cout=4"),
    ({"strides": (0, 1)}, r"strides must be 2 integers >= 1, got \(0, 1\)"),
    ({"pads": (1, 1, -1, 0)}, "pads must be 4 integers >= 0"),
    ({"fused_activation": "gelu"}, "fused_activation must be None, 'relu' or"),
    ({"fused_activation": (6.0, 0.0)}, ".*min <= max"),
])
def test_conv_rejects_bad_attributes(kw: dict, match: str) -> None:
    with pytest.raises(GraphError, match=r"node 'c' \(Conv2D\): " + match):
        conv(**kw)


def test_conv_rejects_bad_input_shapes() -> None:
    with pytest.raises(GraphError, match="input has 3 channels, weight expects 2"):
        conv().infer_shape((None, 3, 5, 5))
    with pytest.raises(GraphError, match="larger than the padded input"):
        conv().infer_shape((None, 2, 2, 5))
    with pytest.raises(GraphError, match="expected input rank"):
        conv().infer_shape((None, 2, 5))


def test_depthwise_conv_shape() -> None:
    dw = conv(weight=np.ones((6, 1, 3, 3), np.float32), groups=3)
    assert dw.infer_shape((None, 3, 5, 5)) == (None, 6, 3, 3)


def test_other_node_checks() -> None:
    with pytest.raises(GraphError, match=r"need min_value <= max_value, got \(2.0, 1.0\)"):
        ir.Clip(name="k", inputs=("x",), outputs=("y",), min_value=2, max_value=1)
    with pytest.raises(GraphError, match=r"cannot reshape per-sample shape \(2, 3\) to \(4,\)"):
        ir.Reshape(name="r", inputs=("x",), outputs=("y",), shape=(4,)).infer_shape((None, 2, 3))
    with pytest.raises(GraphError, match="differ outside axis 1"):
        ir.Concat(name="c", inputs=("a", "b"), outputs=("y",)).infer_shape(
            (None, 2, 3, 3), (None, 2, 3, 4))
    with pytest.raises(GraphError, match="var \\+ epsilon must be > 0"):
        ir.BatchNorm(name="bn", inputs=("x",), outputs=("y",), scale=[1.0], bias=[0.0],
                     mean=[0.0], var=[-1.0])
    with pytest.raises(GraphError, match="pads .* must be smaller than the kernel"):
        ir.MaxPool2D(name="p", inputs=("x",), outputs=("y",), kernel=(2, 2), pads=(2, 0, 0, 0))
    with pytest.raises(GraphError, match="expected 2 input"):
        ir.Add(name="a", inputs=("x",), outputs=("y",))
    with pytest.raises(GraphError, match="input shapes differ"):
        ir.Add(name="a", inputs=("x", "z"), outputs=("y",)).infer_shape((None, 2), (None, 3))
    with pytest.raises(GraphError, match="softmax over the batch axis"):
        ir.Softmax(name="s", inputs=("x",), outputs=("y",), axis=0).infer_shape((None, 3))
    assert ir.Concat(name="c", inputs=("a", "b"), outputs=("y",), axis=2).infer_shape(
        (None, 2, 3), (None, 2, 4)) == (None, 2, 7)


# ------------------------------------------------------------------ graph
def test_graph_shapes_and_queries() -> None:
    g = small_graph()
    assert g.input_shapes["x"] == (None, 2, 6, 5)  # batch is free
    assert g.shapes["a"] == (None, 4, 6, 5) and g.shapes["y"] == (None, 3)
    assert g.producer("a").name == "c1" and g.producer("x") is None
    assert [n.name for n in g.consumers("a")] == ["r", "add"]
    assert g.consumers("y") == ()
    assert g.layer("gap").op_type == "GlobalAvgPool"
    assert g.is_sole_use("g") and not g.is_sole_use("a") and not g.is_sole_use("y")
    assert g.validate() is g
    with pytest.raises(GraphError, match="no layer named 'nope'; layers are: 'c1'"):
        g.layer("nope")
    with pytest.raises(GraphError, match="unknown tensor 'q'"):
        g.consumers("q")


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda ns: ns + [ir.ReLU(name="r", inputs=("y",), outputs=("z",))],
     "duplicate node name 'r'"),
    (lambda ns: ns + [ir.ReLU(name="r2", inputs=("y",), outputs=("b",))],
     "tensor 'b' is written twice"),
    (lambda ns: ns[1:] + ns[:1], r"node 'r' \(ReLU\) reads tensor 'a' that is not"),
    (lambda ns: [], "graph has no nodes"),
])
def test_graph_structure_errors(mutate, match: str) -> None:
    g = small_graph()
    with pytest.raises(GraphError, match=match):
        g.with_nodes(mutate(list(g.nodes)))


def test_graph_output_must_be_produced_and_shapes_checked() -> None:
    g = small_graph()
    with pytest.raises(GraphError, match="graph output 'zz' is not produced"):
        g.with_nodes(g.nodes, outputs=("zz",))
    with pytest.raises(GraphError, match="input has 3 channels"):
        Graph(nodes=g.nodes, inputs=("x",), input_shapes={"x": (1, 3, 6, 5)}, outputs=("y",))


def test_rewriting_helpers_return_new_graphs() -> None:
    g = small_graph()
    g2 = g.replace_nodes({"r": ir.Clip(name="r6", inputs=("a",), outputs=("b",),
                                       min_value=0, max_value=6)})
    assert g.layer("r").op_type == "ReLU" and g2.layer("r6").op_type == "Clip"
    g3 = g.rename_tensor("y", "logits")
    assert g3.outputs == ("logits",) and g3.producer("logits").name == "fc"
    with pytest.raises(GraphError, match="cannot rename graph input 'x'"):
        g.rename_tensor("x", "image")
    with pytest.raises(GraphError, match="no layer named 'zz'"):
        g.replace_nodes({"zz": None})


# ------------------------------------------------------------------ stats
def test_layer_stats_counts_params_and_macs() -> None:
    rows = {r.name: r for r in layer_stats(small_graph())}
    assert rows["c1"].params == 4 * 2 * 9 and rows["c1"].macs == 4 * 6 * 5 * 2 * 9
    assert rows["fc"].params == 12 + 3 and rows["fc"].macs == 12
    assert rows["gap"].params == rows["gap"].macs == 0
    bn = ir.BatchNorm(name="bn", inputs=("x",), outputs=("y",), scale=[1, 1], bias=[0, 0],
                      mean=[0, 0], var=[1, 1])
    assert param_count(bn) == 8 and node_macs(bn, (None, 2, 3, 3)) == 0
