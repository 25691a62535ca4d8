"""Rewrite of a binarized ONNX model's sign patterns, and the plan that runs it exactly.

See :mod:`fxp.frontends.onnx_binary` for the patterns and the semantics.
:func:`convert_binarized` walks the ONNX graph once in order, tracking the
grid of every tensor (``"bin"``: values +-1; an integer ``F``: values are
integers times ``2**-F``), turns each ``layer -> sign`` pattern into one
integer threshold per channel, rewrites the ONNX model (rescaled layer,
``Clip(-1, 1)`` in place of the pattern), imports it with the standard
importer and builds the plan.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import FxpError, ModelImportError, UnsupportedOpError
from fxp.frontends.onnx_binary import SignFold, find_sign_folds, integer_threshold
from fxp.plan.plan import LayerPlan, Plan, TensorSpec

__all__ = ["INPUT_FORMAT_KEY", "convert_binarized", "exact_frac_bits"]

INPUT_FORMAT_KEY = "fxp.binary.input_format"
"""Model metadata: the input's format (default ``fixed<16,16>``: integer inputs)."""
MAX_FRAC = 30
MAX_WEIGHT_BITS = 16
"""Widest weight codes a non-binary layer may need to be exact."""
_PASS = ("MaxPool", "Flatten", "Reshape", "Identity", "Dropout")
_TWO = QFormat(2, 2, signed=False)  # alpha = 2 (the float view's factor)
_PM1 = QFormat.integer(3)  # +-1 from a fixed layer's Clip(-1, 1): a clamp, not a saturation


def exact_frac_bits(values: np.ndarray) -> int | None:
    """Fewest fraction bits ``F`` (0..30) with every value an integer times ``2**-F``.

    >>> exact_frac_bits(np.array([1.5, -2.0, 0.25])), exact_frac_bits(np.array([0.1]))
    (2, None)
    """
    v = np.asarray(values, np.float64)
    for f in range(MAX_FRAC + 1):
        s = v * 2.0**f
        if np.all(s == np.round(s)) and np.all(np.abs(s) < 2.0**52):
            return f
    return None


def _codes_bits(codes: np.ndarray) -> int:
    """Signed width holding every code."""
    return max(2, int(np.max(np.abs(codes), initial=0)).bit_length() + 1)


def _layer_weight(n: Any, consts: dict) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """``(W [Co, ...], bias or None, transB)`` of a Conv/Gemm, float64."""
    w = consts.get(n.input[1]) if len(n.input) > 1 else None
    if w is None:
        raise ModelImportError(f"node {n.name!r} ({n.op_type}): weight {n.input[1]!r} must be "
                               f"an initializer in a binarized model")
    b = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
    if len(n.input) > 2 and n.input[2] and b is None:
        raise ModelImportError(f"node {n.name!r}: bias {n.input[2]!r} must be an initializer")
    trans = True
    if n.op_type == "Gemm":
        attrs = {a.name: a for a in n.attribute}
        for key in ("alpha", "beta"):
            if key in attrs and attrs[key].f != 1.0:
                raise UnsupportedOpError(f"node {n.name!r} (Gemm): {key}={attrs[key].f} in a "
                                         f"binarized model (only 1.0)")
        trans = "transB" in attrs and attrs["transB"].i == 1
        w = w if trans else w.T
    w = np.asarray(w, np.float64)
    b = None if b is None else np.asarray(b, np.float64).reshape(-1)
    if b is not None and b.size != w.shape[0]:
        raise ModelImportError(f"node {n.name!r}: bias has {b.size} values for {w.shape[0]} "
                               f"output channels")
    return w, b, trans


def _binary_magnitudes(w: np.ndarray) -> np.ndarray | None:
    """Per-channel ``a[c] > 0`` if ``W[c] = +-a[c]`` everywhere, else None."""
    a = np.abs(w.reshape(w.shape[0], -1))
    return a[:, 0] if np.all(a > 0) and np.all(a == a[:, :1]) else None


def _thresholds(fold: SignFold, node: Any, bias: np.ndarray, scale: list[Fraction]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Integer ``(t, d)`` per channel: ``+1 iff d*(A - t) >= 0`` on the integer accumulator ``A``.

    The layer's value is ``y = A / scale[c] + bias[c]``; the pattern tests
    ``gain * (y + offset) >= 0`` (``> 0`` if strict).
    """
    ts, ds = [], []
    for c in range(len(scale)):
        r = -(Fraction(float(bias[c])) + Fraction(float(fold.offset[c]))) * scale[c]
        if fold.gain[c] == 0:
            raise UnsupportedOpError(f"node {node.name!r}: the sign pattern multiplies channel "
                                     f"{c} by 0 (a constant output)")
        if fold.sign_op and r.denominator == 1:
            raise UnsupportedOpError(
                f"node {node.name!r}: Sign after this layer can return 0 (channel {c}: the "
                f"accumulator can equal {r}); fxp's sign has sign(0) = +1: export "
                f"Where(x >= 0, 1, -1) instead")
        t, d = integer_threshold(r, fold.strict, float(fold.gain[c]))
        ts.append(t)
        ds.append(d)
    return np.array(ts, np.int64), np.array(ds, np.int64)


def convert_binarized(onnx: Any, model: Any, folder: str | None):
    """``(Graph, Plan)`` of a binarized ONNX ``model`` (see :func:`load_binarized`)."""
    from onnx import helper, numpy_helper

    from fxp.frontends.onnx_import import _convert
    from fxp.frontends.onnx_tensors import tensor_to_array
    from fxp.ir.passes import canonicalize

    g = model.graph
    consts = {t.name: tensor_to_array(t, folder) for t in g.initializer}
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        in_fmt = QFormat.parse(meta.get(INPUT_FORMAT_KEY, "fixed<16,16>"))
    except FxpError as e:
        raise ModelImportError(f"metadata {INPUT_FORMAT_KEY}: {e}") from None
    ranks, chans = {}, {}
    for n in g.node:
        if n.op_type in ("Conv", "Gemm"):
            w, _, _ = _layer_weight(n, consts)
            ranks[n.output[0]], chans[n.output[0]] = (4 if n.op_type == "Conv" else 2), w.shape[0]
    folds = {f.layer: f for f in find_sign_folds(g, consts, ranks, chans)}
    skip = {i for f in folds.values() for i in f.nodes}
    inputs = [v.name for v in g.input if v.name not in consts]
    grid: dict[str, Any] = {t: in_fmt.frac_bits for t in inputs}
    xmax: dict[str, int] = {t: max(-in_fmt.min_code, in_fmt.max_code) for t in inputs}
    new_w: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    layers: dict[str, LayerPlan] = {}
    for i, n in enumerate(g.node):
        if i in skip:
            continue
        name = n.name or f"{n.op_type}_{n.output[0]}"
        x = n.input[0] if n.input else None
        if n.op_type in _PASS:
            grid[n.output[0]], xmax[n.output[0]] = grid.get(x), xmax.get(x)
            continue
        if n.op_type == "Relu":
            grid[n.output[0]] = 0 if grid.get(x) == "bin" else grid.get(x)
            xmax[n.output[0]] = xmax.get(x)
            continue
        if n.op_type not in ("Conv", "Gemm"):
            raise UnsupportedOpError(
                f"node {name!r} ({n.op_type}): a binarized model may hold Conv, Gemm, MaxPool, "
                f"Flatten, Reshape and Relu besides its sign patterns")
        if grid.get(x) is None:
            raise ModelImportError(f"node {name!r}: its input {x!r} is not on a power-of-two "
                                   f"grid the plan can code exactly")
        w, b, _ = _layer_weight(n, consts)
        bias = np.zeros(w.shape[0]) if b is None else b
        fold, out = folds.get(n.output[0]), (folds[n.output[0]].out if n.output[0] in folds
                                             else n.output[0])
        mags = _binary_magnitudes(w)
        k = int(np.prod(w.shape[1:]))
        if grid[x] == "bin" and mags is not None and fold is not None:
            t, d = _thresholds(fold, n, bias, [1 / Fraction(float(a)) for a in mags])
            t = np.clip(t, -(k + 1), k + 1)  # |dot| <= K: beyond, always or never
            signs = np.where(w < 0, -1.0, 1.0)
            new_w[i] = (2.0 * d.reshape((-1,) + (1,) * (w.ndim - 1)) * signs, 1.0 - 2.0 * d * t)
            layers[name] = LayerPlan(name, weight=TensorSpec.binary(), alpha=TensorSpec(_TWO),
                                     binary_output="threshold", acc_bits=32,
                                     pad_value=0 if n.op_type == "Conv" else None)
            grid[out], xmax[out] = "bin", 1
            continue
        fin = 0 if grid[x] == "bin" else grid[x]
        fw = exact_frac_bits(w)
        if fw is None:
            raise ModelImportError(f"node {name!r}: weights are not on a power-of-two grid "
                                   f"(2**-{MAX_FRAC} or coarser), e.g. {w.ravel()[0]!r}")
        if _codes_bits(np.round(w * 2.0**fw)) > MAX_WEIGHT_BITS:
            raise ModelImportError(
                f"node {name!r}: weights are exact only as {_codes_bits(np.round(w * 2.0**fw))}"
                f"-bit codes (2**-{fw} grid), above {MAX_WEIGHT_BITS}: not the integer codes of a "
                f"quantized layer (export them as integers, scale folded into the threshold)")
        fa = fin + fw
        if fold is not None:
            t, d = _thresholds(fold, n, bias, [Fraction(2) ** fa] * w.shape[0])
            dd = d.reshape((-1,) + (1,) * (w.ndim - 1)).astype(np.float64)
            w2, b2 = 2.0 * dd * w * 2.0**fa, 1.0 - 2.0 * d * t
            f2 = exact_frac_bits(w2)  # 0: 2*d*codes*2**fin are integers
            codes = np.round(w2 * 2.0**f2).astype(np.int64)
            new_w[i] = (w2, b2)
            acc_frac, out_spec = fin + f2, TensorSpec(_PM1)
            grid[out], xmax[out] = "bin", 1
        else:
            fb = exact_frac_bits(bias)
            if fb is None:
                raise ModelImportError(f"node {name!r}: bias is not on a power-of-two grid "
                                       f"(2**-{MAX_FRAC} or coarser), e.g. {bias[0]!r}")
            fw = max(fw, fb - fin)  # finer weight LSB: the accumulator holds the bias exactly
            codes = np.round(w * 2.0**fw).astype(np.int64)
            f2, acc_frac = fw, fin + fw
            out_spec = None
        worst = int(np.max(np.abs(codes.reshape(codes.shape[0], -1)).sum(axis=1))) * xmax[x]
        worst += int(np.max(np.abs(new_w[i][1] if i in new_w else bias))) << acc_frac
        acc_bits = max(32, worst.bit_length() + 1)
        if acc_bits > 64:
            raise ModelImportError(f"node {name!r}: the accumulator can reach {worst}, beyond "
                                   f"64 bits")
        if out_spec is None:
            out_spec = TensorSpec(QFormat.from_frac(acc_bits, acc_frac))
            grid[out], xmax[out] = acc_frac, (1 << (acc_bits - 1))
        layers[name] = LayerPlan(name, weight=TensorSpec(QFormat.from_frac(_codes_bits(codes), f2)),
                                 output=out_spec, acc_bits=acc_bits, rounding="half_even")
    rewritten = _rewrite(onnx, helper, numpy_helper, model, folds, new_w, skip)
    graph = canonicalize(_convert(onnx, rewritten, folder))
    plan = Plan(input=TensorSpec(in_fmt), layers=tuple(
        layers[n.name] for n in graph.nodes if n.name in layers), name="binarized-onnx")
    return graph, plan


def _rewrite(onnx: Any, helper: Any, numpy_helper: Any, model: Any, folds: dict,
             new_w: dict, skip: set) -> Any:
    """A copy of ``model`` with the rescaled layers and ``Clip(-1, 1)`` for each pattern."""
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=0)
    if opset < 11:
        raise UnsupportedOpError(f"binarized models need opset >= 11 (Clip with inputs); got "
                                 f"{opset}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    del g.node[:]
    inits = list(g.initializer)
    lo_hi = ("fxp.sign.lo", "fxp.sign.hi")
    inits += [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in zip((-1, 1), lo_hi)]
    for i, n in enumerate(model.graph.node):
        if i in skip:
            continue
        node = onnx.NodeProto()
        node.CopyFrom(n)
        node.name = n.name or f"{n.op_type}_{n.output[0]}"
        if i in new_w:
            w, b = new_w[i]
            trans = n.op_type == "Conv" or any(a.name == "transB" and a.i == 1 for a in n.attribute)
            wname, bname = f"{node.name}.fxp_weight", f"{node.name}.fxp_bias"
            inits.append(numpy_helper.from_array((w if trans else w.T).astype(np.float32), wname))
            inits.append(numpy_helper.from_array(b.astype(np.float32), bname))
            del node.input[:]
            node.input.extend([n.input[0], wname, bname])
        g.node.append(node)
        fold = folds.get(n.output[0])
        if fold is not None:
            g.node.append(helper.make_node("Clip", [n.output[0], *lo_hi], [fold.out],
                                           name=f"{node.name}.sign"))
    del g.initializer[:]
    g.initializer.extend(inits)
    return m
