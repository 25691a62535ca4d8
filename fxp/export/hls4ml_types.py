"""hls4ml precision types for every layer hls4ml creates, from a compiled fxp plan.

hls4ml builds more layers than fxp keeps after canonicalization: a ReLU that
fxp fuses into its Conv2D/Dense is a separate ``Activation`` layer there, and
pooling, flatten (``Reshape``) and inserted ``Transpose`` layers carry their
own ``result``/``accum`` types, which default to the model precision when a
config leaves them out.  :func:`hls4ml_slots` lists, in graph order, one
:class:`Slot` per layer hls4ml is expected to build, with the types that make
hls4ml's C simulation compute fxp's integers:

* ``Input``: ``result`` = the plan input format with fxp's input conversion
  (round half to even, saturate: ``RND_CONV,SAT``);
* ``Conv2D``/``Dense``: ``weight`` and ``bias`` in fxp's formats with the
  plan's ``weight_rounding`` / ``weight_overflow`` (default ``RND_CONV,SAT``:
  without modes hls4ml truncates and wraps them, up to a sign flip) and
  ``bias_*`` modes, ``accum`` = ``acc_bits`` with ``F_x + F_w`` fraction bits
  and ``TRN`` (or ``acc_frac_bits`` with ``acc_rounding``) and the accumulator
  overflow mode, ``result`` = the output format with the layer's rounding and
  output overflow -- or, when fxp fused a ReLU that hls4ml keeps separate,
  the plan's ``result`` type (hls4ml's two casts) or else a signed type wide
  enough that rounding cannot overflow, and the ReLU's ``result`` carries the
  output format and overflow (fxp rounds, clamps, then applies the overflow;
  hls4ml rounds, then the ReLU clamps and casts).  hls4ml prints weights and
  biases as decimal text with as many places as fraction bits; a layer whose
  codes that text changes must say ``param_decimals`` (else PlanError);
* pooling (max), ``Reshape``/``Flatten``, ``Transpose``: ``result`` (and the
  pooling ``accum``) = the incoming format, so values pass unchanged;
* ``Softmax``: with a table softmax in the plan (``LayerPlan.softmax``,
  :mod:`fxp.plan.softmax`), its ``result`` (the output format with the
  layer's rounding and overflow), ``exp_table``, ``inv_table``, ``inv_inp``,
  ``accum`` types and the layer keys ``TableSize``, ``Implementation`` and
  ``exp_table_t`` / ``inv_table_t`` / ``inv_inp_t`` (:attr:`Slot.extra`; hls4ml
  1.3.0 ignores table types under ``Precision`` and reads these), so hls4ml
  computes fxp's integers; without one, left
  to hls4ml's defaults (fxp computes a float softmax; compare the logits).

The ``Input`` type carries the plan's input conversion
(``Plan.input_rounding`` / ``Plan.input_overflow``): hls4ml converts the
float input with the input type's modes.

``ap_type`` strings use hls4ml's own spelling, ``fixed<W,I,RND,SAT>`` /
``ufixed<...>`` (``I`` includes the sign bit, as in ``ap_fixed<W,I>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import PlanError, UnsupportedOpError
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Reshape, Softmax
from fxp.sim.compile import CompiledModel

__all__ = ["O_MODES", "Q_MODES", "Slot", "hls4ml_slots", "hls_type", "transpose_slot"]

Q_MODES = {RoundingMode.FLOOR: "TRN", RoundingMode.TO_ZERO: "TRN_ZERO",
           RoundingMode.HALF_UP: "RND", RoundingMode.HALF_TO_ZERO: "RND_ZERO",
           RoundingMode.HALF_DOWN: "RND_MIN_INF", RoundingMode.HALF_AWAY: "RND_INF",
           RoundingMode.HALF_EVEN: "RND_CONV"}
"""fxp rounding mode -> ap_fixed quantization mode (without the ``AP_`` prefix)."""
O_MODES = {OverflowMode.WRAP: "WRAP", OverflowMode.SATURATE: "SAT",
           OverflowMode.SATURATE_SYMMETRIC: "SAT_SYM", OverflowMode.SATURATE_ZERO: "SAT_ZERO"}
"""fxp overflow mode -> ap_fixed overflow mode (without the ``AP_`` prefix)."""


def hls_type(fmt: QFormat, rounding: RoundingMode | str = RoundingMode.FLOOR,
             overflow: OverflowMode | str = OverflowMode.WRAP, where: str = "type") -> str:
    """hls4ml's spelling of ``fmt`` with modes: ``fixed<W,I,Q,O>`` / ``ufixed<W,I,Q,O>``.

    >>> hls_type(QFormat(8, 3), "half_up", "saturate")
    'fixed<8,3,RND,SAT>'

    Raises
    ------
    PlanError
        A rounding mode ap_fixed does not have (``where`` names the layer and type).
    """
    q = Q_MODES.get(RoundingMode.from_string(rounding))
    if q is None:
        raise PlanError(f"{where}: rounding {str(rounding)!r} has no ap_fixed quantization mode "
                        f"(use one of {sorted(m.value for m in Q_MODES)})")
    o = O_MODES[OverflowMode.from_string(overflow)]
    return f"{'' if fmt.signed else 'u'}fixed<{fmt.bits},{fmt.int_bits},{q},{o}>"


@dataclass
class Slot:
    """One layer hls4ml builds, with the fxp tensor its output equals.

    ``kind``: ``input``, ``weighted`` (Conv2D/Dense), ``relu`` (a ReLU fxp
    fused), ``pool``, ``reshape``, ``softmax`` or ``transpose`` (one a
    frontend inserts, :func:`transpose_slot`).  ``tensor`` is the fxp
    tensor whose codes equal this layer's output (None for a softmax).
    """

    kind: str
    fxp_name: str
    precision: dict[str, str] = field(default_factory=dict)
    tensor: str | None = None
    node_class: str = ""
    fmt: QFormat | None = None
    fused: bool = False
    """A ReLU fxp fused into the layer before (hls4ml keeps it separate)."""
    extra: dict = field(default_factory=dict)
    """Layer keys of the hls4ml config besides ``Precision`` (a table softmax's
    ``TableSize`` and ``Implementation``)."""


def _pass_type(fmt: QFormat) -> str:
    return hls_type(fmt, RoundingMode.FLOOR, OverflowMode.WRAP)


def transpose_slot(name: str, before: Slot) -> Slot:
    """A ``Transpose`` layer a frontend inserts after ``before``: its codes pass unchanged.

    hls4ml's ONNX frontend keeps the ``Transpose`` nodes qonnx's channels-last
    conversion leaves (e.g. on the input); hls4ml gives it the incoming type
    (its ``Transpose`` layer ignores a configured one), so its ``result`` is
    ``before``'s, modes included.
    """
    if before.fmt is None or "result" not in before.precision:
        raise UnsupportedOpError(f"Transpose {name!r} follows {before.fxp_name!r}, whose "
                                 "output fxp leaves to hls4ml (a float softmax)")
    return Slot("transpose", name, {"result": before.precision["result"]}, before.tensor,
                "Transpose", before.fmt)


def hls4ml_slots(model: CompiledModel, *, input_rounding: RoundingMode | str | None = None,
                 input_overflow: OverflowMode | str | None = None) -> list[Slot]:
    """The layers hls4ml builds for ``model``, in order, with their types (module docstring).

    Raises
    ------
    PlanError
        A layer is float or affine (scaled), or uses a mode ap_fixed lacks.
    UnsupportedOpError
        A binary layer, or a node or fused activation this mapping does not cover.
    """
    plan = model.plan
    if not plan.input.is_pow2:
        raise PlanError("hls4ml export needs a power-of-two plan (ap_fixed has no scale); "
                        f"plan {plan.name!r} codes its input with a scale")
    g = model.graph
    input_rounding = plan.input_rounding if input_rounding is None else input_rounding
    input_overflow = plan.input_overflow if input_overflow is None else input_overflow
    slots = [Slot("input", g.inputs[0], {"result": hls_type(plan.input.fmt, input_rounding,
                                                             input_overflow, "input")},
                  g.inputs[0], "Input", plan.input.fmt)]
    for step in model.steps:
        node, lp = step.node, step.plan
        where = f"layer {node.name!r}"
        if lp is not None and lp.float_layer:
            raise PlanError(f"{where} is a float layer; hls4ml export needs every layer in "
                            "fixed point")
        if isinstance(node, (Conv2D, Dense)):
            slots += _weighted_slots(step, where)
        elif isinstance(node, Softmax):
            slots.append(_softmax_slot(step, where))
        elif isinstance(node, (MaxPool2D, Flatten, Reshape, ReLU)):
            fmt = step.out_spec.fmt
            if isinstance(node, ReLU):
                slots.append(Slot("relu", node.name, {"result": _pass_type(fmt)}, node.output,
                                  "Activation", fmt))
            elif isinstance(node, MaxPool2D):
                slots.append(Slot("pool", node.name, {"result": _pass_type(fmt),
                                                      "accum": _pass_type(fmt)},
                                  node.output, "Pooling2D", fmt))
            else:
                slots.append(Slot("reshape", node.name, {"result": _pass_type(fmt)}, node.output,
                                  "Reshape", fmt))
        else:
            raise UnsupportedOpError(f"{where}: {type(node).__name__} has no hls4ml mapping in "
                                     "fxp (supported: Conv2D, Dense, ReLU, MaxPool2D, Flatten, "
                                     "Reshape, a final Softmax)")
    return slots


def _softmax_slot(step, where: str) -> Slot:
    lp = step.plan
    if lp is None or lp.softmax is None:
        return Slot("softmax", step.node.name, {}, None, "Softmax")
    sp, out = lp.softmax, step.out_spec.fmt
    prec = {"result": hls_type(out, lp.rounding, lp.output_overflow, f"{where} result"),
            "exp_table": sp.exp_table_t.hls4ml(), "inv_table": sp.inv_table_t.hls4ml(),
            "inv_inp": sp.inv_inp_t.hls4ml(), "accum": sp.accum_t.hls4ml()}
    # hls4ml 1.3.0 reads only result/accum from Precision; the table types are layer keys
    # ending in _t (Layer.__init__), so they are written there too
    extra = {"TableSize": sp.table_size, "Implementation": sp.strategy,
             **{f"{k}_t": prec[k] for k in ("exp_table", "inv_table", "inv_inp")}}
    return Slot("softmax", step.node.name, prec, step.node.output, "Softmax", out, extra=extra)


def _weighted_slots(step, where: str) -> list[Slot]:
    node, lp = step.node, step.plan
    if lp.is_binary:
        raise UnsupportedOpError(f"{where} is binary (XNOR-popcount); hls4ml export writes "
                                 "fixed-point layers only")
    if not (lp.weight.is_pow2 and lp.output.is_pow2 and step.in_specs[0].is_pow2):
        raise PlanError(f"{where} is affine (scaled); hls4ml export needs power-of-two formats")
    if lp.weight.channel_formats is not None:  # hls4ml quantizes the float weights itself
        widths = sorted({f.bits for f in lp.weight.channel_formats})
        raise PlanError(f"{where} has per-channel weight widths {widths[:8]}; hls4ml has one "
                        f"weight type per layer and would re-quantize every channel in "
                        f"{lp.weight.fmt}, so the export is refused (use 'fxp export c', or "
                        "one weight format per layer)")
    act = getattr(node, "fused_activation", None)
    if act not in (None, "relu"):
        raise UnsupportedOpError(f"{where}: fused activation {act!r} has no hls4ml mapping in "
                                 "fxp (only ReLU)")
    from fxp.sim.compile_pow2 import decimal_text_changes

    if not lp.param_decimals and decimal_text_changes(node, lp):
        raise PlanError(f"{where}: hls4ml writes its weights as decimal text with as many "
                        "places as fraction bits, which changes some of their codes; set "
                        "the layer's param_decimals so fxp computes what hls4ml builds")
    out = lp.output.fmt
    if lp.acc_frac_bits is None:
        acc, acc_rnd = step.acc_fmt, "floor"
    else:
        acc, acc_rnd = QFormat.from_frac(lp.acc_bits, lp.acc_frac_bits), lp.acc_rounding
    b_fmt = lp.bias.fmt if lp.bias is not None else acc
    prec = {"weight": hls_type(lp.weight.fmt, lp.weight_rounding, lp.weight_overflow,
                               f"{where} weight"),
            "bias": hls_type(b_fmt, lp.bias_rounding, lp.bias_overflow, f"{where} bias"),
            "accum": hls_type(acc, acc_rnd, lp.acc_overflow, f"{where} accum")}
    kind = "Conv2D" if isinstance(node, Conv2D) else "Dense"
    if act is None:
        prec["result"] = hls_type(out, lp.rounding, lp.output_overflow, f"{where} result")
        return [Slot("weighted", node.name, prec, node.output, kind, out)]
    if lp.result is not None:  # hls4ml's own two casts
        prec["result"] = hls_type(lp.result.fmt, lp.rounding, lp.result_overflow,
                                  f"{where} result")
        relu = {"result": hls_type(out, lp.rounding, lp.output_overflow, f"{where} relu")}
        return [Slot("weighted", node.name, prec, None, kind, lp.result.fmt),
                Slot("relu", node.name, relu, node.output, "Activation", out, fused=True)]
    # rounding into a signed type one integer bit above the accumulator cannot overflow
    ib = step.acc_fmt.int_bits + 1
    wide = QFormat(ib + out.frac_bits, ib, True)
    prec["result"] = hls_type(wide, lp.rounding, "saturate", f"{where} result")
    relu = {"result": hls_type(out, "floor", lp.output_overflow, f"{where} relu")}
    return [Slot("weighted", node.name, prec, None, kind, wide),
            Slot("relu", node.name, relu, node.output, "Activation", out, fused=True)]
