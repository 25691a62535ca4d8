"""Float reference executor: kernels against naive float64 loops, batching, taps, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.errors import DataError, GraphError
from fxp.ir import Graph
from fxp.ir import nodes as ir
from fxp.sim.float_ref import iter_batches, run_float, run_node

RNG = np.random.default_rng(7)


def naive_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides, pads, dil,
               groups: int) -> np.ndarray:
    """Direct definition of grouped 2-D cross-correlation, one output at a time (float64)."""
    n, cin, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    xp = np.zeros((n, cin, h + pads[0] + pads[2], wd + pads[1] + pads[3]))
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    oh = (xp.shape[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (xp.shape[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    y = np.zeros((n, cout, oh, ow))
    per_group = cout // groups
    for i, o, r, c in itertools.product(range(n), range(cout), range(oh), range(ow)):
        g = o // per_group
        acc = 0.0 if b is None else float(b[o])
        for ci, p, q in itertools.product(range(cg), range(kh), range(kw)):
            acc += float(w[o, ci, p, q]) * xp[i, g * cg + ci, r * strides[0] + p * dil[0],
                                              c * strides[1] + q * dil[1]]
        y[i, o, r, c] = acc
    return y


def naive_pool(x: np.ndarray, kernel, strides, pads, op: str, include_pad: bool) -> np.ndarray:
    n, c, h, w = x.shape
    oh = (h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
    y = np.zeros((n, c, oh, ow))
    for i, ch, r, col in itertools.product(range(n), range(c), range(oh), range(ow)):
        vals = []
        for p, q in itertools.product(range(kernel[0]), range(kernel[1])):
            rr, cc = r * strides[0] + p - pads[0], col * strides[1] + q - pads[1]
            if 0 <= rr < h and 0 <= cc < w:
                vals.append(float(x[i, ch, rr, cc]))
        if op == "max":
            y[i, ch, r, col] = max(vals)
        else:
            y[i, ch, r, col] = sum(vals) / (kernel[0] * kernel[1] if include_pad else len(vals))
    return y


@pytest.mark.parametrize(("groups", "cin", "cout", "strides", "pads", "dil", "bias"), [
    (1, 3, 4, (1, 1), (0, 0, 0, 0), (1, 1), True),
    (1, 2, 3, (2, 1), (1, 0, 2, 1), (1, 2), False),
    (2, 4, 6, (1, 2), (2, 2, 0, 1), (2, 1), True),
    (3, 3, 6, (2, 2), (1, 1, 1, 1), (1, 1), True),   # depthwise, multiplier 2
])
def test_conv_matches_naive_loops(groups, cin, cout, strides, pads, dil, bias) -> None:
    x = RNG.normal(size=(2, cin, 7, 6)).astype(np.float32)
    w = RNG.normal(size=(cout, cin // groups, 3, 2)).astype(np.float32)
    b = RNG.normal(size=cout).astype(np.float32) if bias else None
    node = ir.Conv2D(name="c", inputs=("x",), outputs=("y",), weight=w, bias=b,
                     strides=strides, pads=pads, dilations=dil, groups=groups)
    got = run_node(node, x)
    assert got.dtype == np.float32
    assert got.shape[1:] == node.infer_shape((None, cin, 7, 6))[1:]
    np.testing.assert_allclose(got, naive_conv(x, w, b, strides, pads, dil, groups),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["max", "avg_include", "avg_exclude"])
def test_pools_match_naive_loops(op: str) -> None:
    x = RNG.normal(size=(2, 3, 7, 6)).astype(np.float32)
    kernel, strides, pads = (3, 2), (2, 1), (1, 0, 2, 1)
    if op == "max":
        node: ir.Node = ir.MaxPool2D(name="p", inputs=("x",), outputs=("y",), kernel=kernel,
                                     strides=strides, pads=pads)
    else:
        node = ir.AvgPool2D(name="p", inputs=("x",), outputs=("y",), kernel=kernel,
                            strides=strides, pads=pads, count_include_pad=op == "avg_include")
    want = naive_pool(x, kernel, strides, pads, op[:3], op == "avg_include")
    np.testing.assert_allclose(run_node(node, x), want, rtol=1e-6, atol=1e-7)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       pads=st.tuples(*[st.integers(0, 2)] * 4), nan=st.booleans())
def test_maxpool_is_the_exact_window_maximum(seed, kernel, strides, pads, nan) -> None:
    """Every output is exactly the largest value of its window (padding never wins), and a
    window holding a NaN gives NaN, as ``np.max`` over the window does."""
    pads = tuple(min(p, k - 1) for p, k in zip(pads, kernel * 2, strict=True))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 3, 6, 7)).astype(np.float32)
    if nan:
        x[rng.random(x.shape) < 0.05] = np.nan
    node = ir.MaxPool2D(name="p", inputs=("x",), outputs=("y",), kernel=kernel, strides=strides,
                        pads=pads)
    got = run_node(node, x)
    want = np.full(got.shape, np.nan)
    for i, c, r, q in itertools.product(*map(range, got.shape)):
        r0, q0 = r * strides[0] - pads[0], q * strides[1] - pads[1]
        win = x[i, c, max(r0, 0):r0 + kernel[0], max(q0, 0):q0 + kernel[1]]
        want[i, c, r, q] = np.nan if np.isnan(win).any() else max(win.ravel().tolist())
    assert got.dtype == np.float32
    assert np.array_equal(got, want.astype(np.float32), equal_nan=True)


def test_elementwise_kernels() -> None:
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 7.0]], np.float32)
    io = {"inputs": ("x",), "outputs": ("y",)}
    np.testing.assert_array_equal(run_node(ir.ReLU(name="r", **io), x), [[0, 0, 0, 0.5, 7]])
    np.testing.assert_array_equal(
        run_node(ir.Clip(name="c", **io, min_value=0, max_value=6), x), [[0, 0, 0, 0.5, 6]])
    s = run_node(ir.Softmax(name="s", **io, axis=1), x)
    np.testing.assert_allclose(s, np.exp(x) / np.exp(x).sum(), rtol=1e-6)
    dense = ir.Dense(name="d", **io, weight=np.eye(5, dtype=np.float32)[:2],
                     fused_activation=(-1.0, 0.25))
    np.testing.assert_array_equal(run_node(dense, x), [[-1.0, -0.5]])


def _net() -> Graph:
    nodes = (ir.Conv2D(name="c", inputs=("x",), outputs=("a",), weight=RNG.normal(
                 size=(4, 2, 3, 3)), pads=(1, 1, 1, 1), fused_activation="relu"),
             ir.BatchNorm(name="bn", inputs=("a",), outputs=("b",), scale=[1, 2, 3, 4],
                          bias=[0, 1, 0, 1], mean=[0.1] * 4, var=[1, 2, 3, 4]),
             ir.MaxPool2D(name="p", inputs=("b",), outputs=("c2",), kernel=(2, 2),
                          strides=(2, 2)),
             ir.Concat(name="cat", inputs=("c2", "c2"), outputs=("d",), axis=1),
             ir.Flatten(name="f", inputs=("d",), outputs=("e",)),
             ir.Dense(name="fc", inputs=("e",), outputs=("y",), weight=RNG.normal(size=(3, 32))))
    return Graph(nodes=nodes, inputs=("x",), input_shapes={"x": (None, 2, 4, 4)}, outputs=("y",))


@pytest.mark.parametrize("n", [1, 5])
def test_batch_rows_are_independent(n: int) -> None:
    g = _net()
    x = RNG.normal(size=(n, 2, 4, 4)).astype(np.float32)
    y = run_float(g, x)
    assert y.shape == (n, 3) and y.dtype == np.float32
    for i in range(n):
        np.testing.assert_allclose(run_float(g, x[i:i + 1])[0], y[i], rtol=1e-6, atol=1e-6)


def test_taps_return_every_tensor_with_its_shape() -> None:
    g = _net()
    taps = run_float(g, np.ones((2, 2, 4, 4)), taps=True)
    assert set(taps) == set(g.shapes)
    for name, arr in taps.items():
        assert arr.shape[1:] == g.shapes[name][1:] and arr.dtype == np.float32


def test_multiple_outputs_and_dict_feeds() -> None:
    g = _net()
    g2 = g.with_nodes(g.nodes, outputs=("b", "y"))
    out = run_float(g2, {"x": np.ones((1, 2, 4, 4))})
    assert set(out) == {"b", "y"}
    np.testing.assert_array_equal(out["y"], run_float(g, np.ones((1, 2, 4, 4))))


def test_iter_batches_equals_one_run() -> None:
    g = _net()
    x = RNG.normal(size=(7, 2, 4, 4)).astype(np.float32)
    parts = list(iter_batches(g, x, batch_size=3))
    assert [p.shape[0] for p in parts] == [3, 3, 1]
    np.testing.assert_allclose(np.concatenate(parts), run_float(g, x), rtol=1e-6, atol=1e-6)
    with pytest.raises(DataError, match="batch_size must be >= 1, got 0"):
        next(iter_batches(g, x, batch_size=0))


@pytest.mark.parametrize(("x", "match"), [
    (np.ones((2, 4, 4)), r"expected shape \(N, 2, 4, 4\), got \(2, 4, 4\)"),
    (np.ones((1, 3, 4, 4)), r"got \(1, 3, 4, 4\)"),
    (np.ones((0, 2, 4, 4)), r"empty batch"),
    (np.full((1, 2, 4, 4), np.nan), r"non-finite value nan at index \(0, 0, 0, 0\)"),
    ({"image": np.ones((1, 2, 4, 4))}, r"expected inputs \['x'\], got \['image'\]"),
])
def test_bad_inputs_raise_data_error(x, match: str) -> None:
    with pytest.raises(DataError, match=match):
        run_float(_net(), x)


def test_unknown_node_type_is_a_graph_error() -> None:
    class Odd(ir.Node):
        op_type = "Odd"

    with pytest.raises(GraphError, match="no kernel for Odd"):
        run_node(Odd(name="o", inputs=("x",), outputs=("y",)), np.ones((1, 2), np.float32))


def test_conv_chunking_over_the_batch_gives_the_same_result(monkeypatch) -> None:
    import fxp.sim.float_ref as fr

    node = ir.Conv2D(name="c", inputs=("x",), outputs=("y",),
                     weight=RNG.normal(size=(4, 1, 3, 3)), groups=2, pads=(1, 1, 1, 1))
    x = RNG.normal(size=(5, 2, 6, 6)).astype(np.float32)
    whole = run_node(node, x)
    monkeypatch.setattr(fr, "_CHUNK_ELEMENTS", 1)  # one sample per chunk
    np.testing.assert_array_equal(run_node(node, x), whole)
