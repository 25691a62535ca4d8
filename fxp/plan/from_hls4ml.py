"""An fxp Plan from an hls4ml config: ``fxp plan MODEL --from-hls4ml CONFIG`` (issue 15).

The config is the dict ``hls4ml.utils.config_from_pytorch_model`` produces
(JSON or YAML): ``Model`` defaults and ``LayerName`` per-layer ``Precision``
entries.  Each type is resolved with hls4ml's own precedence
(``ModelGraph``'s ``get_precision``): the layer's variable, the layer's
``default``, the model's variable, the model's ``default``.  ``LayerName``
keys are matched to fxp's layers by the names hls4ml's PyTorch or ONNX
frontend gives them (:func:`fxp.export.hls4ml.hls4ml_layer_name`), or, when
the config lists exactly the layers hls4ml builds, in graph order (as
:func:`~fxp.export.hls4ml.patch_hls4ml_config` matches them).  A config of
hls4ml's ONNX frontend (qonnx names: ``global_in``, ``Conv_0``,
``Conv_0_param0``, ...) is matched by op type, in order
(:func:`fxp.export.hls4ml_onnx.onnx_slot_entries`): ``Transpose`` and
``Constant`` entries are skipped (hls4ml types neither from the config), and a
``MatMul`` with its bias ``Add`` is one Dense whose ``result`` is the ``Add``'s
(the ``MatMul``'s must be ``"auto"``, as hls4ml fuses them only then; see
:mod:`fxp.export.hls4ml_onnx`).  ``graph`` is fxp's graph of the original
model, not the qonnx-cleaned one.

What a type becomes (the inverse of :mod:`fxp.export.hls4ml_types`):

* ``Input`` ``result``: the plan input, ``input_rounding`` / ``input_overflow``;
* Conv2D/Dense: ``weight`` / ``bias`` formats (fxp quantizes them half to
  even, saturating, so they must say ``RND_CONV,SAT``; the bias must have
  ``F_x + F_w`` fraction bits), ``accum`` -> ``acc_bits`` (its fraction
  bits must be at least ``F_x + F_w``, so no product is truncated) and
  ``acc_overflow``; ``acc_order`` is ``"hls4ml"`` for a saturating
  accumulator (for a wrapping one both orders give the same integers and
  ``"fxp"`` is kept); ``result`` -> ``output``, ``rounding``,
  ``output_overflow``; with a ReLU fxp fused, the layer's ``result`` gives
  the rounding (it must be signed, one integer bit wider than the
  accumulator and have the ReLU's fraction bits, so nothing is lost there)
  and the ReLU's ``result`` the output format and overflow;
* max pooling, flatten and a standalone ReLU pass codes unchanged: their
  ``result`` must be the incoming format (a pooling ``accum`` must hold it);
* Softmax: hls4ml always computes a table softmax, so it becomes one
  (:class:`~fxp.plan.softmax.SoftmaxTable`; hls4ml's table defaults where a
  key is missing; the table types are read from the layer keys
  ``exp_table_t`` / ``inv_table_t`` / ``inv_inp_t`` as hls4ml 1.3.0 does) --
  except an entry whose ``Precision`` is ``{}`` with no table keys, which is how
  ``fxp export hls4ml`` marks fxp's float softmax: it stays float (hls4ml
  itself would still build its default tables; compare the logits then).

Anything fxp cannot compute bit for bit as hls4ml would -- ``"auto"``
(resolved by hls4ml's precision-inference pass), ``LayerType`` entries, a
weight type without ``RND_CONV,SAT``, a narrower accumulator fraction -- is a
one-line :class:`~fxp.errors.PlanError` naming the layer and the value.  So is
hls4ml's own default config (``fixed<16,6>`` everywhere): it truncates the
weights and every product, which no fxp plan expresses.
"""

from __future__ import annotations

import json
from pathlib import Path

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode
from fxp.errors import FormatError, FxpError, PlanError
from fxp.export.hls4ml import _classify, _names
from fxp.export.hls4ml_onnx import is_onnx_config, onnx_slot_entries
from fxp.export.hls4ml_types import Slot, hls4ml_slots
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense
from fxp.plan.plan import LayerPlan, Plan, TensorSpec
from fxp.plan.softmax import ApType, SoftmaxTable
from fxp.sim.compile import compile_plan
from fxp.sim.compile_pow2 import decimal_text_changes

__all__ = ["load_hls4ml_config", "parse_hls4ml_type", "plan_from_hls4ml"]

_TABLE_KEYS = ("exp_table", "inv_table", "inv_inp")


def parse_hls4ml_type(text: object, where: str) -> ApType:
    """``fixed<W,I,RND,SAT>`` / ``ap_fixed<W,I,AP_RND,AP_SAT>`` as format + modes.

    >>> t = parse_hls4ml_type("fixed<8,3,RND_CONV,SAT>", "x")
    >>> (str(t.fmt), t.rounding.value, t.overflow.value)
    ('fixed<8,3>', 'half_even', 'saturate')

    Raises
    ------
    PlanError
        ``"auto"`` (hls4ml infers it), or not an ap_fixed type (``where`` names it).
    """
    if isinstance(text, str) and text.strip().lower() == "auto":
        raise PlanError(f"{where} is 'auto' (hls4ml infers it in its precision pass); give an "
                        "explicit type such as 'fixed<16,6,RND_CONV,SAT>'")
    return ApType.parse(text, where)


def load_hls4ml_config(path: str | Path) -> dict:
    """Read an hls4ml config file: JSON, or YAML (``.yml`` / ``.yaml``, needs PyYAML).

    Raises
    ------
    FormatError
        Unreadable, not JSON/YAML, or not an object.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"hls4ml config {str(p)[:200]!r}: cannot read it ({exc})") from None
    errors: tuple[type[Exception], ...] = (json.JSONDecodeError,)
    try:
        if p.suffix.lower() in (".yml", ".yaml"):
            import yaml
            errors = (yaml.YAMLError,)
            cfg = yaml.safe_load(text)
        else:
            cfg = json.loads(text)
    except ImportError:
        raise FormatError(f"hls4ml config {str(p)[:200]!r}: YAML needs PyYAML "
                          "(pip install pyyaml), or give it as JSON") from None
    except errors as exc:
        msg = " ".join(str(exc).split())[:200]
        raise FormatError(f"hls4ml config {str(p)[:200]!r} is not valid JSON/YAML: "
                          f"{msg}") from None
    if not isinstance(cfg, dict):
        raise FormatError(f"hls4ml config {str(p)[:200]!r}: expected an object with 'Model' "
                          f"and 'LayerName', got {type(cfg).__name__}")
    return cfg


def _precision(obj: object, where: str) -> dict:
    prec = obj.get("Precision", {}) if isinstance(obj, dict) else None
    if isinstance(prec, str):
        return {"default": prec}
    if not isinstance(prec, dict):
        raise PlanError(f"{where}: 'Precision' must be an object or a type string, got "
                        f"{str(prec)[:100]!r}")
    return prec


class _Resolver:
    """hls4ml's precedence: layer var, layer default, model var, model default."""

    def __init__(self, config: dict) -> None:
        model = config.get("Model", {})
        if not isinstance(model, dict):
            raise PlanError(f"hls4ml config 'Model' must be an object, got {str(model)[:100]!r}")
        if config.get("LayerType"):
            raise PlanError(f"hls4ml config 'LayerType' entries {list(config['LayerType'])[:5]} "
                            "are not read by fxp; give per-layer types under 'LayerName'")
        self.model = _precision(model, "hls4ml config Model")

    def __call__(self, entry: dict, var: str, layer: str) -> ApType:
        prec = _precision(entry, f"hls4ml layer {layer!r}")
        for src, key, who in ((prec, var, f"layer {layer!r}"), (prec, "default", f"layer {layer!r}"),
                              (self.model, var, "Model"), (self.model, "default", "Model")):
            if key in src:
                return parse_hls4ml_type(src[key], f"hls4ml {who} Precision {key!r} (for "
                                         f"{layer!r} {var})")
        raise PlanError(f"hls4ml layer {layer!r}: no {var!r} precision and no Model default")


def _match(graph: Graph, slots: list[Slot], layers: dict) -> list[tuple[str | None, dict]]:
    """``(config key, entry)`` per slot; ``(None, {})`` for a layer without an entry."""
    if is_onnx_config({"LayerName": layers}):  # qonnx names: matched by op type, in order
        try:
            return onnx_slot_entries({"LayerName": layers}, slots)
        except FormatError as exc:
            raise PlanError(str(exc)) from None
    for frontend in ("pytorch", "onnx"):
        try:
            names = _names(slots, frontend, graph)
        except PlanError:
            continue
        if set(layers) <= set(names):
            return [(n, layers[n]) if n in layers else (None, {}) for n in names]
    items = list(layers.items())
    if len(items) == len(slots):  # hls4ml's own names (e.g. qonnx 'Conv_0'): graph order
        for i, ((key, entry), s) in enumerate(zip(items, slots, strict=True)):
            try:
                kind = _classify(i, entry, str(key))
            except FormatError as exc:
                raise PlanError(str(exc)) from None
            if kind != s.kind and not (s.kind in ("softmax", "relu") and kind == "reshape"):
                raise PlanError(f"hls4ml layer {str(key)[:200]!r} looks like a {kind} layer; "
                                f"fxp's layer {s.fxp_name[:200]!r} is a {s.kind}")
        return [(str(k), e) for k, e in items]
    try:
        names = _names(slots, "pytorch", graph)
    except PlanError:
        names = []
    bad = sorted(str(k)[:60] for k in layers if k not in names)
    raise PlanError(f"hls4ml config LayerName {bad[:5]} match no layer of the model (its "
                    f"PyTorch names: {names[:12]}; or list all {len(slots)} layers in order)")


def _scaffold(graph: Graph) -> Plan:
    """A plan that compiles, only to learn which layers hls4ml builds (the slots)."""
    from fxp.ir.passes import canonicalize
    g = canonicalize(graph)
    f = TensorSpec(QFormat(16, 6))
    return Plan(f, tuple(LayerPlan(n.name, weight=f, output=f) for n in g.nodes
                         if isinstance(n, (Conv2D, Dense))))


def _holds(big: QFormat, fmt: QFormat) -> bool:
    """Every value of ``fmt`` is exact in ``big``."""
    extra = 0 if big.signed == fmt.signed else 1
    return (big.signed or not fmt.signed) and big.frac_bits >= fmt.frac_bits \
        and big.int_bits >= fmt.int_bits + extra


def _accumulator(key: str, a: ApType, b: ApType, f_p: int) -> dict:
    """``acc_bits`` / ``acc_frac_bits`` / ``bias`` of the accum and bias types.

    Products exact (``F_acc >= F_x + F_w``) with the bias in the products' LSB
    is written as before (no ``acc_frac_bits``, the accumulator re-based to
    ``F_x + F_w`` fraction bits: the same integers); anything else keeps the
    accum type as it is.
    """
    if not a.fmt.signed:
        raise PlanError(f"layer {key!r} accum {a.hls4ml()!r}: fxp's accumulator is signed; "
                        f"give fixed<{a.fmt.bits + 1},{a.fmt.int_bits + 1},...>")
    if a.fmt.frac_bits >= f_p and b.fmt.frac_bits == f_p:
        try:
            acc = QFormat(a.fmt.int_bits + f_p, a.fmt.int_bits)
        except FxpError as exc:
            raise PlanError(f"layer {key!r} accum {a.hls4ml()!r}: {str(exc)[:200]}") from None
        return dict(acc_bits=acc.bits, bias=None if b.fmt == acc else TensorSpec(b.fmt))
    acc = QFormat.from_frac(a.fmt.bits, a.fmt.frac_bits)
    return dict(acc_bits=a.fmt.bits, acc_frac_bits=a.fmt.frac_bits,
                acc_rounding=a.rounding, bias=None if b.fmt == acc else TensorSpec(b.fmt))


def _weighted(res: _Resolver, key: str, entry: dict, relu: tuple | None, s: Slot,
              cur: QFormat, node) -> tuple[LayerPlan, QFormat]:
    w, b = res(entry, "weight", key), res(entry, "bias", key)
    a, r = res(entry, "accum", key), res(entry, "result", key)
    f_p = cur.frac_bits + w.fmt.frac_bits
    kw = _accumulator(key, a, b, f_p)
    kw.update(weight=TensorSpec(w.fmt), weight_rounding=w.rounding, weight_overflow=w.overflow,
              bias_rounding=b.rounding, bias_overflow=b.overflow, acc_overflow=a.overflow,
              acc_order="fxp" if a.overflow is OverflowMode.WRAP else "hls4ml",
              output=TensorSpec(r.fmt), rounding=r.rounding, output_overflow=r.overflow)
    if relu is not None:
        rkey, rt = relu
        bits = a.fmt.int_bits  # the accumulator's integer bits (sign included)
        wide = r.fmt.signed and r.fmt.int_bits >= bits + 1  # rounding cannot overflow
        clamps = r.overflow is rt.overflow is OverflowMode.SATURATE and _holds(r.fmt, rt.fmt)
        if r.fmt.frac_bits == rt.fmt.frac_bits and (wide or clamps):
            kw.update(output=TensorSpec(rt.fmt), output_overflow=rt.overflow)  # fused, exact
        elif rt.fmt.frac_bits < r.fmt.frac_bits and rt.rounding is not r.rounding:
            raise PlanError(f"layer {key!r} result {r.hls4ml()!r} and ReLU {rkey!r} "
                            f"{rt.hls4ml()!r}: the ReLU drops fraction bits with another "
                            f"rounding ({rt.rounding.value}, the layer's is {r.rounding.value}); "
                            "fxp rounds both casts alike: give them the same rounding")
        else:  # hls4ml's two casts: the result type, then the ReLU's
            kw.update(result=TensorSpec(r.fmt), result_overflow=r.overflow,
                      output=TensorSpec(rt.fmt), output_overflow=rt.overflow)
    try:
        lp = LayerPlan(s.fxp_name, **kw)
        if decimal_text_changes(node, lp):
            lp = lp.with_(param_decimals=True)
    except FxpError as exc:
        raise PlanError(f"hls4ml layer {key!r}: {str(exc)[:300]}") from None
    return lp, lp.output.fmt


def _softmax(res: _Resolver, key: str, entry: dict, s: Slot) -> LayerPlan | None:
    prec = _precision(entry, f"hls4ml layer {key!r}")
    if entry.get("Precision", None) == {} and not any(f"{k}_t" in entry for k in _TABLE_KEYS):
        return None  # fxp's export of a float softmax: fxp computes it in float
    kw = {}
    for k in _TABLE_KEYS:  # hls4ml 1.3.0 reads the layer keys exp_table_t ..., not Precision
        if f"{k}_t" in entry:
            kw[f"{k}_t"] = parse_hls4ml_type(entry[f"{k}_t"], f"hls4ml layer {key!r} {k}_t")
        if k in prec and parse_hls4ml_type(prec[k], f"hls4ml layer {key!r} {k}") != \
                kw.get(f"{k}_t", getattr(SoftmaxTable, f"{k}_t")):
            raise PlanError(f"hls4ml layer {key!r} Precision {k!r} {str(prec[k])[:60]!r}: "
                            f"hls4ml 1.3.0 ignores it and uses the layer key '{k}_t'; give "
                            "that key the same type")
    kw["accum_t"] = res(entry, "accum", key)  # hls4ml: get_precision, as for other layers
    r = res(entry, "result", key)
    try:
        sp = SoftmaxTable(strategy=entry.get("Implementation", "stable"),
                          table_size=entry.get("TableSize", 1024), **kw)
        return LayerPlan(s.fxp_name, output=TensorSpec(r.fmt), rounding=r.rounding,
                         output_overflow=r.overflow, softmax=sp)
    except FxpError as exc:
        raise PlanError(f"hls4ml layer {key!r}: {str(exc)[:300]}") from None


def plan_from_hls4ml(graph: Graph, config: dict, *, name: str = "hls4ml") -> Plan:
    """The fxp Plan that computes what hls4ml builds from ``config`` (module docstring).

    Parameters
    ----------
    graph : Graph
        fxp's graph of the model hls4ml converts (e.g. its ONNX export).
    config : dict
        hls4ml's config (``Model``, ``LayerName``), e.g. :func:`load_hls4ml_config`.
    name : str
        The plan's name.

    Raises
    ------
    PlanError
        A type fxp cannot reproduce bit for bit, ``"auto"``, or a layer name
        that matches no layer (each message names the layer and the value).
    """
    if not isinstance(config, dict):
        raise PlanError(f"hls4ml config must be an object, got {type(config).__name__}")
    layers = config.get("LayerName", {})
    if not isinstance(layers, dict):
        raise PlanError(f"hls4ml config 'LayerName' must be an object, got "
                        f"{str(layers)[:100]!r}")
    res = _Resolver(config)
    model = compile_plan(graph, _scaffold(graph))
    slots = hls4ml_slots(model)
    matched = _match(model.graph, slots, layers)
    try:  # a layer without an entry is named as hls4ml's PyTorch frontend names it
        known = _names(slots, "pytorch", model.graph)
    except PlanError:
        known = [s.fxp_name for s in slots]
    keys = [k if k is not None else n for (k, _), n in zip(matched, known, strict=True)]
    t_in = res(matched[0][1], "result", keys[0])
    cur, out_layers = t_in.fmt, []
    i = 1
    while i < len(slots):
        s, (_, entry), key = slots[i], matched[i], keys[i]
        if s.kind == "weighted":
            relu = None
            if i + 1 < len(slots) and slots[i + 1].fused:
                relu = (keys[i + 1], res(matched[i + 1][1], "result", keys[i + 1]))
            lp, cur = _weighted(res, key, entry, relu, s, cur, model.graph.layer(s.fxp_name))
            out_layers.append(lp)
            i += 2 if relu is not None else 1
            continue
        if s.kind == "softmax":
            lp = _softmax(res, key, entry, s)
            if lp is not None:
                out_layers.append(lp)
        else:  # pool, flatten, standalone ReLU: codes pass unchanged
            if s.kind == "pool" and not _holds(res(entry, "accum", key).fmt, cur):
                raise PlanError(f"hls4ml layer {key!r} accum "
                                f"{res(entry, 'accum', key).hls4ml()!r} cannot hold its input "
                                f"{cur} exactly (hls4ml casts the maximum into it)")
            for var in ("result",):
                t = res(entry, var, key)
                if t.fmt != cur:
                    raise PlanError(f"hls4ml layer {key!r} {var} {t.hls4ml()!r}: fxp passes "
                                    f"the {s.kind} layer's codes unchanged in {cur}; give "
                                    f"that format")
        i += 1
    try:
        return Plan(TensorSpec(t_in.fmt), tuple(out_layers), name,
                    input_rounding=t_in.rounding, input_overflow=t_in.overflow)
    except FxpError as exc:
        raise PlanError(f"hls4ml input {keys[0]!r}: {str(exc)[:300]}") from None
