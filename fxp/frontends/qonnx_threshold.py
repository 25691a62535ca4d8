"""QONNX ``MultiThreshold`` read as a layer's output requantization, where that is exact.

Semantics are qonnx 1.0's own (``qonnx/custom_op/general/multithreshold.py``)::

    MultiThreshold(v, thresholds[C or 1, T]; out_scale, out_bias, data_layout):
        count = number of j with v >= thresholds[c, j]      (channel c: axis 1, NCHW / NC)
        out = out_scale * count + out_bias

fxp reads it when the thresholds of every channel are evenly spaced by one
power-of-two step ``d = 2**-F`` (``t[c, j] = t0[c] + j * d``), ``T = 2**n - 1``
of them, ``t0[c] > 0``, ``out_scale == d`` and ``out_bias == 0``.  Then, for
any value ``v``::

    count = clip(floor((v + d - t0[c]) / d), 0, T)

which is an unsigned ``n``-bit FLOOR requantization of ``v`` into step
``d`` once ``d - t0[c]`` is added to the producing layer's bias (per
channel): the plan entry fxp already has, with value ``count * d`` equal to
qonnx's.  ``t0 > 0`` makes the map send 0 to 0, so it commutes with a ReLU
before it (and MaxPool, Flatten, Reshape).  Everything else (unevenly or
differently spaced thresholds, ``T`` not ``2**n - 1``, a scale or bias on the
count, thresholds of a graph input) is refused naming the node.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fxp.errors import ModelImportError
from fxp.frontends.qonnx_ops import QuantInfo

__all__ = ["read_multithreshold"]


def _attrs(node: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == a.STRING:
            out[a.name] = a.s.decode("utf-8", "replace")
        elif a.type == a.FLOAT:
            out[a.name] = float(a.f)
        elif a.type == a.INT:
            out[a.name] = int(a.i)
    return out


def read_multithreshold(node: Any, consts: dict[str, np.ndarray]) -> QuantInfo:
    """The quantizer a ``MultiThreshold`` node is (see the module docstring).

    Returns a :class:`QuantInfo` (unsigned, FLOOR, scale ``d``) whose
    ``shift`` (``d - t0``, one value or one per channel) the plan adds to the
    producing layer's bias.

    Raises
    ------
    ModelImportError
        Non-constant or non-finite thresholds, or any case outside the exact
        mapping (the message names the node and the value).
    """
    name = node.name or node.output[0]
    where = f"node {name[:200]!r} (MultiThreshold)"
    tn = node.input[1] if len(node.input) > 1 else ""
    if tn not in consts:
        raise ModelImportError(f"{where}: its thresholds ({tn[:200]!r}) must be an initializer")
    th = np.asarray(consts[tn], np.float64)
    if th.ndim != 2 or th.size == 0 or not np.all(np.isfinite(th)):
        raise ModelImportError(f"{where}: thresholds of shape {list(th.shape)} must be a finite "
                               f"[channels, steps] matrix")
    at = _attrs(node)
    o_scale, o_bias = at.get("out_scale", 1.0), at.get("out_bias", 0.0)
    layout = at.get("data_layout", "")
    c, t = th.shape
    n = t.bit_length()
    if t + 1 != 1 << n:
        raise ModelImportError(f"{where}: {t} thresholds per channel; fxp codes need 2**n - 1 "
                               f"(a count in 0..{t} is no unsigned format)")
    steps = np.diff(th, axis=1)
    d = float(steps.ravel()[0]) if t > 1 else float(o_scale)
    mant, _ = np.frexp(d)
    if d <= 0 or mant != 0.5 or np.any(steps != d):
        raise ModelImportError(f"{where}: thresholds {th.ravel().tolist()[:6]} are not evenly "
                               f"spaced by one power-of-two step (steps "
                               f"{np.unique(steps).tolist()[:4]})")
    if o_scale != d or o_bias != 0:
        raise ModelImportError(f"{where}: out_scale {o_scale!r} / out_bias {o_bias!r} must be "
                               f"the threshold step {d!r} / 0 (fxp's value is count * step)")
    t0 = th[:, 0]
    if np.any(t0 <= 0):
        raise ModelImportError(f"{where}: first thresholds {t0.tolist()[:6]} must be > 0 (the "
                               f"count of 0 must be 0, as fxp's codes of 0 are)")
    if c > 1 and np.any(t0 != t0[0]) and layout not in ("", "NCHW", "NC"):
        raise ModelImportError(f"{where}: per-channel thresholds with data_layout "
                               f"{layout[:20]!r}; fxp reads channel axis 1 (NCHW, NC)")
    shift = d - t0 if np.any(t0 != t0[0]) else np.array([d - t0[0]])
    return QuantInfo(name, n, False, False, "FLOOR", np.float32([d]), 0, False,
                     shift=shift.astype(np.float64))
