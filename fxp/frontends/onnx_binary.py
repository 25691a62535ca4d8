"""Binarized ONNX models (``Sign`` / ``Where`` activations) read into ``(Graph, Plan)``.

A binarized network exported to plain ONNX (``models/bnn/train_bnn.py``,
``fxp train bnn``, or any exporter writing the same patterns) computes a sign
activation after a Conv/Gemm with ordinary ops.  :func:`load_binarized`
recognises, right after a ``Conv`` or ``Gemm`` whose output has no other
reader::

    [Sub(T) | Add(-T)]? -> [Mul(D)]? -> GreaterOrEqual(0) | Greater(0) -> Where(+1, -1)
    [Sub(T) | Add(-T)]? -> [Mul(D)]? -> Sign

(``T``, ``D`` constants per output channel or scalars; ``Where(-1, +1)``
flips the test), and folds each into one exact integer threshold per channel
on the layer's accumulator (the BatchNorm + sign folding of
:func:`fxp.quant.binary.sign_thresholds`, already done by the exporter).

How the layers become plan entries (:mod:`fxp.frontends.onnx_binary_plan`):

* a layer whose input is a sign output (through MaxPool / Flatten /
  Reshape) and whose weights are ``+-a[c]`` per output channel is an
  XNOR-popcount layer (binary weight, ``pad_value`` 0 since ONNX pads with
  zeros); followed by a sign it writes ``binary_output`` ``threshold``;
* any other Conv/Gemm is a power-of-two integer layer whose weights, bias and
  input are exact on a power-of-two grid (the exporter's integer codes); its
  output is the exact accumulator, or a +-1 sign when one follows.

The graph input is taken as integer-valued, coded in ``fixed<16,16>`` (the
exporters feed raw pixels 0..255), or in the format named by the model's
``fxp.binary.input_format`` metadata entry.

Float view.  The graph keeps ONNX's function: a threshold ``+1 iff
D*(A - t) >= 0`` on the integer accumulator ``A`` is written as the layer
with weights ``2*D*W/g`` and bias ``1 - 2*D*t`` (``g`` the accumulator's LSB)
and a fused ``Clip(-1, 1)``: ``2*D*(A - t) + 1`` is an odd integer, so the
clip is exactly its sign.  A binary layer's plan takes the factor 2 as its
XNOR-Net ``alpha`` (``ufixed<2,2>``), so the popcount threshold is the same.

``Sign`` returns 0 at 0 (a third value): it is accepted only where the
layer's value cannot be 0 (no integer accumulator meets the threshold
exactly); elsewhere the importer asks for ``Where(x >= 0, 1, -1)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from math import ceil, floor
from typing import Any

import numpy as np

from fxp.errors import ModelImportError, UnsupportedOpError

__all__ = ["SIGN_OPS", "SignFold", "find_sign_folds", "is_binarized_model", "load_binarized"]

SIGN_OPS = ("Where", "Sign")
"""Ops that mark a binarized model (a plain ONNX graph with sign activations)."""
_LAYERS = ("Conv", "Gemm")
_COMPARES = {"GreaterOrEqual": ">=", "Greater": ">"}


@dataclass(frozen=True)
class SignFold:
    """One recognised ``layer -> sign`` pattern.

    Attributes
    ----------
    layer : str
        Output tensor of the Conv/Gemm.
    out : str
        Output tensor of the pattern (the +-1 tensor).
    nodes : tuple of int
        Indices of the pattern's nodes (after the layer) in ``graph.node``.
    offset, gain : ndarray [C] float64
        The test is ``gain[c] * (y + offset[c]) >= 0`` (``> 0`` when ``strict``)
        on the layer's output ``y``; ``gain`` sign only matters.
    strict : bool
        ``Greater`` (or a flipped ``Where``) instead of ``GreaterOrEqual``.
    sign_op : bool
        The pattern ends in ``Sign`` (0 at 0): allowed only where 0 cannot occur.
    """

    layer: str
    out: str
    nodes: tuple[int, ...]
    offset: np.ndarray
    gain: np.ndarray
    strict: bool
    sign_op: bool


def is_binarized_model(model: Any) -> bool:
    """True if a default-domain ``Where`` or ``Sign`` node is in an ``onnx.ModelProto``."""
    return any(n.op_type in SIGN_OPS and n.domain in ("", "ai.onnx") for n in model.graph.node)


def _channel_vector(arr: np.ndarray, channels: int, rank: int, what: str) -> np.ndarray | None:
    """``arr`` as a length-``channels`` vector if it is a scalar or per-channel (axis 1) constant."""
    a = np.asarray(arr, np.float64)
    if a.ndim > rank:
        return None
    full = a.reshape((1,) * (rank - a.ndim) + a.shape)
    if any(d != 1 for i, d in enumerate(full.shape) if i != 1) or full.shape[1] not in (1, channels):
        return None
    if not np.all(np.isfinite(full)):
        raise ModelImportError(f"{what}: non-finite constant in a sign pattern")
    return np.broadcast_to(full.reshape(-1), (channels,)).astype(np.float64)


def find_sign_folds(g: Any, consts: dict[str, np.ndarray], ranks: dict[str, int],
                    channels: dict[str, int]) -> list[SignFold]:
    """Every ``Conv/Gemm -> sign`` pattern of ``g`` (see the module docstring).

    ``ranks`` / ``channels`` give, for each layer output tensor, its rank and
    number of channels.  A ``Where`` or ``Sign`` outside a pattern raises
    :class:`~fxp.errors.UnsupportedOpError` naming it.
    """
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(g.node):
        for t in n.input:
            readers.setdefault(t, []).append(i)
    outputs = {o.name for o in g.output}

    def only_reader(t: str) -> int | None:
        r = readers.get(t, [])
        return r[0] if len(r) == 1 and t not in outputs else None

    def const_operand(n: Any, t: str) -> np.ndarray | None:
        others = [x for x in n.input if x != t]
        return consts.get(others[0]) if len(n.input) == 2 and len(others) == 1 else None

    folds, used = [], set()
    for n in g.node:
        if n.op_type not in _LAYERS or n.output[0] not in ranks:
            continue
        t, c, rank = n.output[0], channels[n.output[0]], ranks[n.output[0]]
        offset, gain, idx, cur = np.zeros(c), np.ones(c), [], t
        j = only_reader(cur)
        for op in ("Sub", "Add", "Mul"):  # optional, in this order (Sub or Add, then Mul)
            if j is None or g.node[j].op_type != op or (op == "Add" and idx):
                continue
            m = g.node[j]
            k = const_operand(m, cur)
            v = None if k is None else _channel_vector(k, c, rank, f"node {m.name!r}")
            if v is None or (op == "Sub" and m.input[0] != cur):
                break
            if op == "Mul":
                gain = v
            else:
                offset = -v if op == "Sub" else v
            idx.append(j)
            cur = m.output[0]
            j = only_reader(cur)
        if j is None:
            continue
        m = g.node[j]
        if m.op_type == "Sign":
            folds.append(SignFold(t, m.output[0], (*idx, j), offset, gain, False, True))
            used.add(j)
            continue
        if m.op_type not in _COMPARES or m.input[0] != cur:
            continue
        zero = consts.get(m.input[1])
        w = only_reader(m.output[0])
        if zero is None or np.size(zero) != 1 or float(np.ravel(zero)[0]) != 0.0 or w is None:
            continue
        where = g.node[w]
        if where.op_type != "Where" or where.input[0] != m.output[0]:
            continue
        a, b = consts.get(where.input[1]), consts.get(where.input[2])
        if a is None or b is None or np.size(a) != 1 or np.size(b) != 1:
            continue
        a, b = float(np.ravel(a)[0]), float(np.ravel(b)[0])
        strict = m.op_type == "Greater"
        if (a, b) == (-1.0, 1.0):  # +1 iff not (z >= 0): z < 0, i.e. -z > 0
            gain, strict = -gain, not strict
        elif (a, b) != (1.0, -1.0):
            continue
        folds.append(SignFold(t, where.output[0], (*idx, j, w), offset, gain, strict, False))
        used.add(w)
    for i, n in enumerate(g.node):
        if n.op_type in SIGN_OPS and i not in used:
            raise UnsupportedOpError(
                f"node {n.name[:200]!r} ({n.op_type}): only a sign activation right after a "
                f"Conv/Gemm is supported: [Sub(T)] -> [Mul(D)] -> GreaterOrEqual(0) -> "
                f"Where(1, -1), or Sign, with per-channel constants")
    return folds


def integer_threshold(r: Fraction, strict: bool, gain: float) -> tuple[int, int]:
    """``(t, d)`` with ``gain*(A - r) >= 0`` (``> 0`` if ``strict``) iff ``d*(A - t) >= 0``.

    ``A`` is an integer; ``d`` is +1 (``A >= t``) or -1 (``A <= t``).

    >>> integer_threshold(Fraction(5, 2), False, 1.0), integer_threshold(Fraction(3), True, -2.0)
    ((3, 1), (2, -1))
    """
    if gain > 0:
        return (floor(r) + 1 if strict else ceil(r)), 1
    return (ceil(r) - 1 if strict else floor(r)), -1


def load_binarized(source: str | os.PathLike | bytes | Any, *, max_bytes: int | None = None):
    """Read a binarized ONNX model into ``(Graph, Plan)`` (see the module docstring).

    Returns
    -------
    graph : Graph
        Canonical graph (the sign patterns as ``Clip(-1, 1)`` on rescaled layers).
    plan : Plan
        XNOR-popcount layers where the input is a sign output and the weights
        are ``+-a[c]``, exact power-of-two integer layers elsewhere.

    Raises
    ------
    ModelImportError
        A layer's weights, bias or input off every power-of-two grid; a
        threshold the integers cannot express.
    UnsupportedOpError
        A ``Where``/``Sign`` outside the patterns; ``Sign`` where the value can
        be 0; ops the plan builder does not handle.
    """
    from fxp.frontends.onnx_binary_plan import convert_binarized
    from fxp.frontends.onnx_import import MAX_MODEL_BYTES, read_and_convert

    return read_and_convert(source, convert_binarized, base_dir=None,
                            max_bytes=MAX_MODEL_BYTES if max_bytes is None else max_bytes)
