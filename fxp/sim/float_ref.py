"""Float32 reference executor for :class:`~fxp.ir.graph.Graph`.

This is the "ideal" model every fixed-point run is compared against.  It is
vectorised numpy (im2col through ``sliding_window_view`` + batched matmul; no
Python loops over pixels).  Semantics follow onnxruntime's float32 CPU
kernels: activations are float32 between layers; convolution and dense inner
products are accumulated in float64 and rounded once to float32 (within
about 1e-6 relative of onnxruntime's float32 accumulation); pools,
BatchNorm and Softmax compute in float64 and round to float32.

>>> import numpy as np
>>> from fxp.ir.graph import Graph
>>> from fxp.ir.nodes import Dense
>>> g = Graph(nodes=(Dense(name="fc", inputs=("x",), outputs=("y",),
...                        weight=np.array([[1.0, -2.0]], np.float32),
...                        bias=np.array([0.5], np.float32), fused_activation="relu"),),
...           inputs=("x",), input_shapes={"x": (None, 2)}, outputs=("y",))
>>> run_float(g, np.array([[3.0, 1.0], [0.0, 1.0]], np.float32))
array([[1.5],
       [0. ]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from fxp.errors import DataError, GraphError
from fxp.ir.graph import Graph
from fxp.ir.nodes import (
    Activation,
    Add,
    AvgPool2D,
    BatchNorm,
    Clip,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    HardSwish,
    Identity,
    LeakyRelu,
    MaxPool2D,
    Mul,
    Node,
    Pad,
    ReLU,
    Requantize,
    Reshape,
    Sigmoid,
    Softmax,
    Tanh,
)

__all__ = ["apply_activation", "iter_batches", "run_float"]

F32 = npt.NDArray[np.float32]


def apply_activation(x: np.ndarray, act: Activation) -> np.ndarray:
    """Apply a fused activation (``None``, ``"relu"`` or ``(min, max)``)."""
    if act is None:
        return x
    if act == "relu":
        return np.maximum(x, 0)
    lo, hi = act  # type: ignore[misc]
    return np.clip(x, lo, hi)


def _windows(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int],
             dilations: tuple[int, int]) -> np.ndarray:
    """View ``[N, C, OH, OW, kh, kw]`` of the (already padded) input ``x``."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    win = sliding_window_view(x, span, axis=(2, 3))
    return win[:, :, ::sh, ::sw, ::dh, ::dw]


def _pad(x: np.ndarray, pads: tuple[int, int, int, int], value: float) -> np.ndarray:
    top, left, bottom, right = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


_CHUNK_ELEMENTS = 1 << 24
"""Largest im2col buffer (float64 elements, 128 MiB) built at once; batches are chunked."""
MAX_SAMPLE_IM2COL = 1 << 27
"""Largest im2col buffer of one sample (float64 elements, 1 GiB): the reference never splits
a sample, so a layer above it is refused before anything is allocated."""


def _conv2d(node: Conv2D, x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    g = node.groups
    cout, cg, kh, kw = node.weight.shape
    win = _windows(_pad(x, node.pads, 0.0), (kh, kw), node.strides, node.dilations)
    oh, ow = win.shape[2:4]
    per_sample = g * oh * ow * cg * kh * kw
    if per_sample > MAX_SAMPLE_IM2COL:
        raise DataError(f"layer {node.name!r}: the float reference needs {per_sample:,} im2col "
                        f"elements ({per_sample * 8 / 2**30:.1f} GiB) per sample, above the "
                        f"limit of {MAX_SAMPLE_IM2COL:,} (output {oh}x{ow}, kernel {kh}x{kw}, "
                        f"{cg * g} input channels)")
    w = node.weight.astype(np.float64).reshape(g, cout // g, cg * kh * kw).transpose(0, 2, 1)
    step = max(1, _CHUNK_ELEMENTS // (g * oh * ow * cg * kh * kw))
    out = np.empty((n, cout, oh, ow), np.float32)
    for start in range(0, n, step):  # chunks of samples, bounding memory; never pixels
        part = win[start:start + step]
        m = part.shape[0]
        # im2col: [G, M*OH*OW, Cg*kh*kw], accumulated in float64 by one batched matmul
        cols = part.reshape(m, g, cg, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
        cols = cols.astype(np.float64, order="C").reshape(g, m * oh * ow, cg * kh * kw)
        acc = np.matmul(cols, w).reshape(g, m, oh, ow, cout // g)
        acc = acc.transpose(1, 0, 4, 2, 3).reshape(m, cout, oh, ow)
        if node.bias is not None:
            acc = acc + node.bias.astype(np.float64)[:, None, None]
        out[start:start + m] = acc
    return apply_activation(out, node.fused_activation)


def _dense(node: Dense, x: np.ndarray) -> np.ndarray:
    acc = x.astype(np.float64) @ node.weight.astype(np.float64).T
    if node.bias is not None:
        acc = acc + node.bias.astype(np.float64)
    return apply_activation(acc.astype(np.float32), node.fused_activation)


def _maxpool(node: MaxPool2D, x: np.ndarray) -> np.ndarray:
    win = _windows(_pad(x, node.pads, -np.inf), node.kernel, node.strides, (1, 1))
    out = win[..., 0, 0].copy()  # one elementwise maximum per kernel offset (max is exact)
    for ky in range(win.shape[4]):
        for kx in range(win.shape[5]):
            if ky or kx:
                np.maximum(out, win[..., ky, kx], out=out)
    return out


def _avgpool(node: AvgPool2D, x: np.ndarray) -> np.ndarray:
    win = _windows(_pad(x.astype(np.float64), node.pads, 0.0), node.kernel, node.strides, (1, 1))
    total = win.sum(axis=(4, 5))
    if node.count_include_pad:
        count: np.ndarray | int = node.kernel[0] * node.kernel[1]
    else:
        ones = np.ones((1, 1) + x.shape[2:], np.float64)
        count = _windows(_pad(ones, node.pads, 0.0), node.kernel, node.strides,
                         (1, 1)).sum(axis=(4, 5))
    return (total / count).astype(np.float32)


def _batchnorm(node: BatchNorm, x: np.ndarray) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    s = node.scale.astype(np.float64) / np.sqrt(node.var.astype(np.float64) + node.epsilon)
    y = (x - node.mean.astype(np.float64).reshape(shape)) * s.reshape(shape)
    return (y + node.bias.astype(np.float64).reshape(shape)).astype(np.float32)


def _sigmoid(node: Sigmoid, x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float64, rounded once to float32 (no overflow warning)."""
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _hard_swish(node: HardSwish, x: np.ndarray) -> np.ndarray:
    """``x * min(max(x + 3, 0), 6) / 6`` in float32 (TFLite's float HARD_SWISH)."""
    x = np.asarray(x, np.float32)
    f3, f6 = np.float32(3), np.float32(6)
    return (x * np.minimum(f6, np.maximum(np.float32(0), x + f3)) / f6).astype(np.float32)


def _leaky_relu(node: LeakyRelu, x: np.ndarray) -> np.ndarray:
    """``x if x >= 0 else float32(alpha) * x`` in float32 (onnxruntime's kernel)."""
    x = np.asarray(x, np.float32)
    return np.where(x >= 0, x, np.float32(node.alpha) * x).astype(np.float32)


def _softmax(node: Softmax, x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64)
    z = np.exp(z - z.max(axis=node.axis, keepdims=True))
    return (z / z.sum(axis=node.axis, keepdims=True)).astype(np.float32)


_Kernel = Callable[..., np.ndarray]
_KERNELS: dict[type, _Kernel] = {
    Conv2D: _conv2d,
    Dense: _dense,
    MaxPool2D: _maxpool,
    AvgPool2D: _avgpool,
    GlobalAvgPool: lambda n, x: x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    .astype(np.float32),
    ReLU: lambda n, x: np.maximum(x, np.float32(0)),
    Clip: lambda n, x: np.clip(x, np.float32(n.min_value), np.float32(n.max_value)),
    Add: lambda n, a, b: a + b,
    Mul: lambda n, a, b: a * b,
    Concat: lambda n, *xs: np.concatenate(xs, axis=n.axis),
    Flatten: lambda n, x: x.reshape(x.shape[0], -1),
    Reshape: lambda n, x: x.reshape((x.shape[0], *n.shape)),
    Softmax: _softmax,
    Sigmoid: _sigmoid,
    LeakyRelu: _leaky_relu,
    Tanh: lambda n, x: np.tanh(x.astype(np.float64)).astype(np.float32),
    HardSwish: _hard_swish,
    Pad: lambda n, x: _pad(x, n.pads, n.value),
    Requantize: lambda n, x: x,
    BatchNorm: _batchnorm,
    Dropout: lambda n, x: x,
    Identity: lambda n, x: x,
}


def run_node(node: Node, *inputs: np.ndarray) -> np.ndarray:
    """Execute one node on float32 inputs; returns float32."""
    try:
        kernel = _KERNELS[type(node)]
    except KeyError:
        raise GraphError(f"node {node.name!r}: float reference has no kernel for "
                         f"{node.op_type}") from None
    return np.asarray(kernel(node, *inputs), dtype=np.float32)


def run_float(graph: Graph, x: np.ndarray | dict[str, np.ndarray], *,
              taps: bool = False, tensors: Iterable[str] | None = None
              ) -> np.ndarray | dict[str, np.ndarray]:
    """Run ``graph`` in float32 on a batch.

    Parameters
    ----------
    graph : Graph
    x : array ``[N, ...]`` or dict input name -> array
        The batch (any ``N >= 1``); per-sample dims must equal the graph input
        shape.  Converted to float32.
    taps : bool
        If True return every tensor (inputs included) by name.
    tensors : iterable of str, optional
        Return only these tensors (a dict by name); every other tensor is freed
        after its last use, so memory holds the live tensors only.

    Returns
    -------
    ndarray or dict
        The output array for a single-output graph; a dict output name ->
        array for several outputs; with ``taps=True`` a dict of all tensors.

    Raises
    ------
    DataError
        Wrong rank or per-sample shape, empty batch, missing input, or
        non-finite input values.
    """
    feeds = x if isinstance(x, dict) else {graph.inputs[0]: x} if len(graph.inputs) == 1 else None
    if feeds is None or set(feeds) != set(graph.inputs):
        raise DataError(f"expected inputs {list(graph.inputs)}, got "
                        f"{list(x) if isinstance(x, dict) else 'one array'}")
    env: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        env[name] = _check_input(name, feeds[name], graph.input_shapes[name])
    tensors = None if tensors is None else list(tensors)
    unknown = [t for t in tensors or () if t not in graph.shapes]
    if unknown:
        raise GraphError(f"unknown tensors {unknown[:10]} (not in graph {graph.name!r})")
    last_use = {t: i for i, n in enumerate(graph.nodes) for t in n.inputs}
    keep = set(graph.outputs) | set(tensors or ())
    for i, node in enumerate(graph.nodes):
        env[node.output] = run_node(node, *(env[t] for t in node.inputs))
        if not taps:
            for t in set(node.inputs):
                if last_use[t] == i and t not in keep:
                    del env[t]
    if taps:
        return env
    if tensors is not None:
        return {t: env[t] for t in tensors}
    if len(graph.outputs) == 1:
        return env[graph.outputs[0]]
    return {t: env[t] for t in graph.outputs}


def _check_input(name: str, value: np.ndarray, shape: tuple) -> F32:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != len(shape) or arr.shape[1:] != tuple(shape[1:]):
        raise DataError(f"input {name!r}: expected shape (N, {', '.join(map(str, shape[1:]))}), "
                        f"got {arr.shape}")
    if arr.shape[0] < 1:
        raise DataError(f"input {name!r}: empty batch (N = 0)")
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise DataError(f"input {name!r}: non-finite value {arr[bad]} at index {bad}")
    return arr


def iter_batches(graph: Graph, data: np.ndarray | Iterable[np.ndarray], *,
                 batch_size: int = 256) -> Iterator[np.ndarray]:
    """Yield :func:`run_float` outputs batch by batch, bounding memory.

    Parameters
    ----------
    graph : Graph
        Single-input, single-output graph.
    data : array ``[N, ...]`` or iterable of batches
        An array is cut into consecutive slices of ``batch_size`` samples.
    batch_size : int
        Samples per batch (>= 1) when ``data`` is an array.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if len(graph.outputs) != 1:
        raise GraphError(f"iter_batches needs a single-output graph, got {graph.outputs}")
    if isinstance(data, np.ndarray):
        array = data
        batches: Iterable[np.ndarray] = (array[i:i + batch_size]
                                         for i in range(0, array.shape[0], batch_size))
    else:
        batches = data
    for batch in batches:
        yield run_float(graph, batch)  # type: ignore[misc]
