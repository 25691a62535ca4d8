"""Deterministic mutations of ONNX models, plans and data files for the fuzz suite.

Each mutator takes a ``numpy.random.Generator`` and returns the mutated
object with a one-line description (kept in failure messages).  The same
seed gives the same mutant on every machine: no wall clock, no hashing of
objects.  What the mutations cover (issue 22): truncated and flipped bytes,
wrong dtypes, NaN / Inf / huge weights, bad attributes (wrong type, count,
sign, size), broken graphs (dangling inputs, cycles, duplicate names, removed
nodes), memory-bomb shapes, external data pointing outside the model folder.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INT_ATTRS_BAD = [[0, 0], [-1, -1], [1 << 40, 1], [1], [1, 1, 1, 1, 1], [], [0], [-5, 3, 2, -1]]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _weights(m: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [t for t in m.graph.initializer if len(t.dims) > 0]


def truncate(m: onnx.ModelProto, rng) -> tuple[bytes, str]:
    data = m.SerializeToString()
    n = int(rng.integers(0, len(data)))
    return data[:n], f"truncated to {n} of {len(data)} bytes"


def flip_bytes(m: onnx.ModelProto, rng) -> tuple[bytes, str]:
    data = bytearray(m.SerializeToString())
    k = int(rng.integers(1, 9))
    where = rng.integers(0, len(data), k)
    for i in where:
        data[int(i)] = int(rng.integers(0, 256))
    return bytes(data), f"{k} random bytes at {sorted(int(i) for i in where)[:4]}"


def bad_values(m: onnx.ModelProto, rng) -> tuple[onnx.ModelProto, str]:
    m = copy.deepcopy(m)
    t = _pick(rng, _weights(m))
    a = numpy_helper.to_array(t).astype(np.float32).copy()
    kind = _pick(rng, ["nan", "inf", "-inf", "huge", "tiny", "all_nan"])
    flat = a.reshape(-1)
    i = int(rng.integers(flat.size))
    val = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 3e38, "tiny": 1e-45,
           "all_nan": np.nan}[kind]
    if kind == "all_nan":
        flat[:] = val
    else:
        flat[i] = val
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    return m, f"{kind} in initializer {t.name!r}"


def wrong_dtype(m: onnx.ModelProto, rng) -> tuple[onnx.ModelProto, str]:
    m = copy.deepcopy(m)
    t = _pick(rng, _weights(m))
    dt = _pick(rng, [TensorProto.DOUBLE, TensorProto.INT8, TensorProto.INT64, TensorProto.STRING,
                     TensorProto.BOOL, TensorProto.FLOAT16, TensorProto.UINT8, 0, 999])
    t.data_type = dt
    return m, f"initializer {t.name!r} data_type -> {dt}"


def bad_attribute(m: onnx.ModelProto, rng) -> tuple[onnx.ModelProto, str]:
    m = copy.deepcopy(m)
    nodes = [n for n in m.graph.node if n.attribute] or list(m.graph.node)
    node = _pick(rng, nodes)
    choices = [a.name for a in node.attribute] + ["strides", "pads", "kernel_shape", "group",
                                                   "dilations", "axis", "alpha", "transB"]
    name = _pick(rng, choices)
    kind = int(rng.integers(5))
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    if kind == 0:
        value = _pick(rng, INT_ATTRS_BAD)
        attr = helper.make_attribute(name, value, attr_type=onnx.AttributeProto.INTS) \
            if not value else helper.make_attribute(name, value)
    elif kind == 1:
        attr = helper.make_attribute(name, int(_pick(rng, [0, -1, -7, 1 << 40, 3])))
    elif kind == 2:
        attr = helper.make_attribute(name, float(_pick(rng, [1.5, np.nan, -2.0, 1e30])))
    elif kind == 3:
        attr = helper.make_attribute(name, "bogus\x00value")
    else:
        attr = helper.make_attribute(name, [1.5, 2.5])
    node.attribute.append(attr)
    return m, f"node {node.name!r} attribute {name!r} -> {attr}".replace("\n", " ")[:200]


def broken_graph(m: onnx.ModelProto, rng) -> tuple[onnx.ModelProto, str]:
    m = copy.deepcopy(m)
    nodes = m.graph.node
    i = int(rng.integers(len(nodes)))
    kind = int(rng.integers(6))
    if kind == 0:
        del nodes[i]
        return m, f"node {i} removed"
    if kind == 1 and nodes[i].input:
        nodes[i].input[0] = "no_such_tensor"
        return m, f"node {i} reads a missing tensor"
    if kind == 2 and nodes[i].input:
        nodes[i].input[0] = nodes[i].output[0]
        return m, f"node {i} reads its own output (cycle)"
    if kind == 3 and len(nodes) > 1:
        j = (i + 1) % len(nodes)
        nodes[j].output[0] = nodes[i].output[0]
        return m, f"nodes {i} and {j} write one tensor"
    if kind == 4:
        nodes[i].op_type = _pick(rng, ["NoSuchOp", "Loop", "If", "Scan", "LSTM", ""])
        return m, f"node {i} op_type -> {nodes[i].op_type!r}"
    perm = rng.permutation(len(nodes))
    reordered = [copy.deepcopy(nodes[int(k)]) for k in perm]
    del nodes[:]
    nodes.extend(reordered)
    return m, f"nodes shuffled {perm.tolist()[:6]}"


def bomb_shape(m: onnx.ModelProto, rng) -> tuple[onnx.ModelProto, str]:
    m = copy.deepcopy(m)
    inp = m.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    k = int(rng.integers(1, len(dims))) if len(dims) > 1 else 0
    val = int(_pick(rng, [0, -3, 1 << 20, 1 << 31, 1 << 62, 100000]))
    dims[k].ClearField("dim_param")
    dims[k].dim_value = val
    return m, f"input dim {k} -> {val}"


def external_data(m: onnx.ModelProto, rng) -> tuple[onnx.ModelProto, str]:
    m = copy.deepcopy(m)
    t = _pick(rng, _weights(m))
    loc = _pick(rng, ["../../etc/passwd", "/etc/passwd", "a\x00b", "missing.bin", "..",
                      "sub/../../x.bin", "C:\\x.bin", ""])
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    entry = t.external_data.add()
    entry.key, entry.value = "location", loc
    if rng.integers(2):
        e2 = t.external_data.add()
        e2.key, e2.value = "length", str(int(_pick(rng, [-1, 1 << 60, 0, 7])))
    return m, f"initializer {t.name!r} external data at {loc!r}"


def reshape_weight(m: onnx.ModelProto, rng) -> tuple[onnx.ModelProto, str]:
    m = copy.deepcopy(m)
    t = _pick(rng, _weights(m))
    a = numpy_helper.to_array(t)
    kind = int(rng.integers(3))
    if kind == 0:
        b = a.reshape(-1)
    elif kind == 1:
        b = np.concatenate([a.reshape(-1), a.reshape(-1)[:1]])
    else:
        b = a.reshape(-1)[: max(1, a.size // 2)]
    t.CopyFrom(numpy_helper.from_array(b.astype(a.dtype), t.name))
    return m, f"initializer {t.name!r} shape {a.shape} -> {b.shape}"


MODEL_MUTATORS = [truncate, flip_bytes, bad_values, wrong_dtype, bad_attribute, broken_graph,
                  bomb_shape, external_data, reshape_weight]


def mutate_model(m: onnx.ModelProto, seed: int) -> tuple[bytes, str]:
    """One mutant of ``m`` (serialized) and what was done, from ``seed`` alone."""
    rng = np.random.default_rng(seed)
    fn = MODEL_MUTATORS[seed % len(MODEL_MUTATORS)]
    out, what = fn(m, rng)
    data = out if isinstance(out, bytes) else out.SerializeToString()
    return data, f"{fn.__name__}: {what}"


# ----------------------------------------------------------------------------- plans
_BAD_SCALARS = [0, -1, 65, 1 << 70, 1.5, "8", None, float("nan"), float("inf"), True, [], {},
                "half_up\x00", "no_such_mode", -0.0, 1e308]


def _paths(obj, prefix=()):
    """Every (path, value) of a JSON tree, leaves and containers."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def _drop(obj, path):
    for k in path[:-1]:
        obj = obj[k]
    del obj[path[-1]]


def mutate_plan(plan: dict, seed: int) -> tuple[str, str]:
    """One mutant of a plan dict as JSON text, and what was done."""
    import json

    rng = np.random.default_rng(seed)
    p = copy.deepcopy(plan)
    paths = [pt for pt, _ in _paths(p) if pt]
    kind = seed % 6
    if kind == 0:  # a leaf or container replaced by a bad scalar
        path = _pick(rng, paths)
        val = _pick(rng, _BAD_SCALARS)
        _set(p, path, val)
        what = f"{path} -> {val!r}"
    elif kind == 1:  # a key removed
        path = _pick(rng, paths)
        _drop(p, path)
        what = f"{path} removed"
    elif kind == 2:  # numbers scaled or negated
        nums = [pt for pt, v in _paths(p) if pt and isinstance(v, (int, float))
                and not isinstance(v, bool)]
        path = _pick(rng, nums) if nums else _pick(rng, paths)
        factor = _pick(rng, [-1, 0, 1000, 1 << 40, 0.5, -1e-9])
        node = p
        for k in path[:-1]:
            node = node[k]
        try:
            node[path[-1]] = node[path[-1]] * factor
        except TypeError:
            node[path[-1]] = factor
        what = f"{path} x {factor}"
    elif kind == 3:  # an unknown key or layer name
        layers = p.get("layers") or [{}]
        target = _pick(rng, layers) if isinstance(layers, list) and layers else p
        if isinstance(target, dict):
            key = _pick(rng, ["name", "bogus_field", "weight", "output"])
            target[key] = _pick(rng, ["no_such_layer", {"fmt": "fixed<8,3>"}, "x" * 5000, 7])
            what = f"layer field {key!r} changed"
        else:
            what = "no layer to change"
    elif kind == 4:  # duplicated or emptied layer lists, wrong top-level type
        choice = int(rng.integers(4))
        if choice == 0 and p.get("layers"):
            p["layers"] = p["layers"] + p["layers"][:1]
            what = "a layer listed twice"
        elif choice == 1:
            p["layers"] = []
            what = "no layers"
        elif choice == 2:
            return json.dumps([p]), "plan wrapped in a list"
        else:
            p["schema_version"] = _pick(rng, [0, 99, "1", None])
            what = f"schema_version -> {p['schema_version']!r}"
    else:  # text-level damage
        text = json.dumps(p)
        n = int(rng.integers(len(text)))
        choice = int(rng.integers(3))
        if choice == 0:
            return text[:n], f"JSON truncated at {n}"
        if choice == 1:
            return text[:n] + "\ud800" + text[n:], f"lone surrogate at {n}"
        return "[" * 100000 + "]" * 100000, "deeply nested JSON"
    return json.dumps(p, allow_nan=True), what


# ----------------------------------------------------------------------------- data files
def mutate_data(x: np.ndarray, y: np.ndarray, path, seed: int) -> str:
    """Write a damaged ``.npz`` (or raw bytes) to ``path``; return what was done."""
    rng = np.random.default_rng(seed)
    x, y = x.copy(), y.copy()
    kind = seed % 12
    arrays = {"x": x, "y": y}
    if kind == 0:
        arrays["x"] = x.astype(np.float32)
        arrays["x"].reshape(-1)[int(rng.integers(x.size))] = _pick(rng, [np.nan, np.inf, -np.inf])
        what = "non-finite pixel"
    elif kind == 1:
        arrays["y"] = y.copy()
        arrays["y"][int(rng.integers(len(y)))] = _pick(rng, [-1, 10, 1 << 40, 255])
        what = "label out of range"
    elif kind == 2:
        arrays["y"] = y.astype(np.float64) + _pick(rng, [0.5, np.nan, 0.0])
        what = "float labels"
    elif kind == 3:
        arrays["y"] = y[: max(0, len(y) - int(rng.integers(1, 4)))]
        what = "fewer labels than images"
    elif kind == 4:
        arrays["x"] = x.reshape(len(x), -1)[:, : int(rng.integers(1, x[0].size))]
        what = "wrong image shape"
    elif kind == 5:
        del arrays[_pick(rng, ["x", "y"])]
        arrays["z"] = x
        what = "missing array"
    elif kind == 6:
        arrays["x"] = x.astype(_pick(rng, [np.complex64, np.bool_, "U3", np.float16]))
        what = f"x dtype {arrays['x'].dtype}"
    elif kind == 7:
        with open(path, "wb") as f:
            np.savez(f, x=np.array([{"a": 1}] * 3, dtype=object), y=y[:3])
        return "object array (pickle)"
    elif kind == 8:
        arrays = {"x": x[:0], "y": y[:0]}
        what = "empty arrays"
    elif kind == 9:
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        with open(path, "rb") as f:
            data = f.read()
        n = int(rng.integers(len(data)))
        with open(path, "wb") as f:
            f.write(data[:n])
        return f"npz truncated at {n}"
    elif kind == 10:
        with open(path, "wb") as f:
            f.write(bytes(rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8)))
        return "random bytes"
    else:
        arrays["x"] = np.broadcast_to(x[:1], (int(_pick(rng, [1, 2])), *x.shape[1:])) * 1e30
        what = "huge pixel values"
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return what
