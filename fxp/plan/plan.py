"""The Plan: per-layer word lengths and arithmetic, frozen, beside an unchanged graph.

A :class:`Plan` says how every tensor of a model is coded and how every layer
computes.  It never modifies the :class:`~fxp.ir.graph.Graph`; the integer
executor reads both.  PTQ, the optimizer and a user's JSON file all produce
the same object (see :mod:`fxp.plan.io` for the file format).

Coding of a tensor (:class:`TensorSpec`)::

    real = scale * (code - zero_point)       code in [fmt.min_code, fmt.max_code]

* power-of-two (FPGA Qm.n): ``scales is None``, ``zero_point == 0`` and
  ``scale = 2**-fmt.frac_bits``;
* affine (MCU runtimes): ``fmt`` is an integer format (``frac_bits == 0``),
  ``scales`` holds float32 values, one per tensor or one per channel along
  ``axis``, and ``zero_point`` is a code;
* binary (``kind="binary"``, :meth:`TensorSpec.binary`, JSON
  ``{"format": "binary"}``): codes are exactly -1 and +1 (real -1 and +1),
  held as int64 in ``fixed<2,2>`` with no scales;
* shift (``kind="shift"``, :meth:`TensorSpec.shift`, JSON
  ``{"format": "fixed<W,I>", "kind": "shift"}``): power-of-two coding in
  ``fmt`` whose codes must each be 0 or ``+-2**k`` (weights only).

Shift-add layers: a Conv2D/Dense whose ``weight`` is shift is compiled with
its weight codes encoded as ``(sign, k)`` (:func:`fxp.ops.shift.encode_shift`;
a code that is not 0 or ``+-2**k`` is a :class:`~fxp.errors.ShiftWeightError`)
and runs on the shift-add kernel, ``acc += sign * ((x - zx) << k)`` with zero
weights skipped, in the same order, accumulator and overflow semantics as the
multiply path (:mod:`fxp.kernels.shift_add`): the integers are identical.
Everything else (bias, requantization, output) is that of a fixed layer;
``requant`` must be ``"pow2"``.

Binary layers (XNOR-popcount, :mod:`fxp.ops.binary`): a Conv2D/Dense whose
``weight`` is binary computes ``dot = sum sign(x) * sign(w)`` exactly by
XNOR-popcount.  Its input is binarized on the way in, ``H = sign(X)`` with
``sign(0) = +1`` (the sign of the incoming codes' real values; a binary input
is used as is).  ``pad_value`` (0, +1 or -1; no default) says what a padded
tap is.  ``binary_output`` picks the output transform:

* ``"scale"`` (default): ``y = alpha[c] * dot + b[c]`` rounded into
  ``output`` (power of two) with ``rounding`` / ``output_overflow``; ``alpha``
  is XNOR-Net's ``mean |W[c]|`` coded in the ``alpha`` format, or 1 when
  ``alpha`` is None (BNN); ``b`` is the layer's bias coded in ``bias``
  (default: ``acc_bits`` wide with ``max(frac(alpha), frac(output))``
  fractional bits; ``frac(alpha)`` is 0 without alpha).  A fused ReLU/Clip
  clamps after rounding, before the output overflow (as for fixed layers).
  With ``beta`` (XNOR-Net's input scaling ``K``), ``y = alpha[c] * beta *
  dot + b[c]``, ``beta = mean |X|`` over each receptive field in ``beta``'s
  format, from the incoming codes before binarization.
* ``"dot"``: the bare integer ``dot`` written into ``output`` (no alpha; the
  layer must have no nonzero bias).
* ``"threshold"``: a binary output, ``+1`` iff ``alpha[c]*dot + b[c] >= 0``,
  computed with exact integer thresholds (:func:`fxp.quant.binary.sign_thresholds`);
  ``b`` is the exact float bias, or its codes when ``bias`` is given.  No
  fused ReLU (``sign(relu(y))`` is always +1); a Clip with ``lo < 0 <= hi``
  keeps the sign and is allowed.

``groups`` must be 1.  A binary layer's popcount cannot overflow; ``acc_bits``
must hold ``K`` (``C*kh*kw`` or ``In``), else the compiler refuses the plan.
Binary tensors pass MaxPool (padding never wins), Flatten and Reshape as
binary; ReLU, Clip and average pools turn them into ``fixed<2,2>`` values.
Caution: ``sign`` of a ReLU output is always +1, so a binary layer fed by a
ReLU (e.g. ``mnist_cnn``'s conv2) sees a constant input.

A layer with weights (Conv2D, Dense) accumulates ``sum (x - zx) * (w - zw)``
in an ``acc_bits``-wide accumulator with ``acc_overflow`` (saturation order is
documented in :mod:`fxp.kernels.spec_layers`), adds the bias codes (which are
coded with scale ``s_x * s_w``), then requantizes into ``output`` with
``requant``: a power-of-two shift rounded with ``rounding``, a
multiplier+shift in double or single rounding, or a float32 scale.
``acc_bits=64`` with ``requant='double'`` or ``'single'`` is TFLite's int16x8
requantization: an int64 accumulator and bias, and
``MultiplyByQuantizedMultiplier(int64_t)`` with the multiplier rounded to 16
bits (:mod:`fxp.kernels.spec_requant64`); shift in [-31, 7].

Layers without weights (Add, Mul, Concat, pools, Sigmoid, LeakyRelu, ReLU, Clip)
may carry an ``output`` spec; with affine inputs ``requant`` picks the runtime
whose arithmetic they follow: ``float32`` onnxruntime's x86 kernels
(:mod:`fxp.ops.qlinear`, :mod:`fxp.ops.qlinear_pool`), ``double``/``single``
TFLite's reference kernels (:mod:`fxp.ops.tflite`); see :mod:`fxp.sim.residual`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import PlanError
from fxp.plan.softmax import SoftmaxTable
from fxp.plan.tensor_spec import SPEC_KINDS, RequantScheme, TensorSpec, _shown

__all__ = ["ACC_ORDERS", "BINARY_OUTPUTS", "PAD_VALUES", "SCHEMA_VERSION", "SPEC_KINDS", "LayerPlan", "Plan",
           "RequantScheme", "TensorSpec"]

SCHEMA_VERSION = 1
BINARY_OUTPUTS = ("scale", "dot", "threshold")
PAD_VALUES = (0, 1, -1)
ACC_ORDERS = ("fxp", "hls4ml")
"""Accumulation orders of a layer with weights (see :class:`LayerPlan`)."""


@dataclass(frozen=True)
class LayerPlan:
    """Arithmetic of one layer (a node of the graph, by name).

    Attributes
    ----------
    name : str
        Node name in the graph.
    float_layer : bool
        Run this layer in float: dequantize its input, compute in float32,
        quantize its output to ``output``.
    input : TensorSpec or None
        Coding of the layer's input: incoming float values (after a float
        layer) are quantized to it; incoming power-of-two codes are cast to
        it; None keeps the producer's coding.
    weight, bias : TensorSpec or None
        Weight and bias coding (layers with weights).
    output : TensorSpec or None
        Output coding (None keeps the input's coding, e.g. max-pool).
    acc_bits : int
        Accumulator width in bits (1..64).
    acc_overflow : OverflowMode
        Accumulator overflow (wrap or saturate, applied after each addition).
    rounding : RoundingMode
        Rounding of power-of-two requantization, casts and average pooling.
    output_overflow : OverflowMode
        Overflow when writing the output codes.
    requant : RequantScheme
        Requantization convention.
    pad_value : {0, 1, -1} or None
        Binary convolutions only: the value of a padded tap (0 = true zero
        padding, +1 = Larq's one-padding, -1).  Required when the layer pads.
    binary_output : {"scale", "dot", "threshold"} or None
        Binary layers only (default ``"scale"``): the output transform (see
        the module docstring).
    alpha : TensorSpec or None
        Binary layers only: power-of-two format of XNOR-Net's per-channel
        ``alpha = mean |W[c]|``; None for no scaling (BNN).
    beta : TensorSpec or None
        Binary layers with ``binary_output`` ``"scale"`` only: power-of-two
        format of XNOR-Net's input scaling ``beta = mean |X|`` over each
        receptive field (``C*kh*kw`` taps, padded taps count 0; per sample for
        Dense), computed from the incoming codes
        (:func:`fxp.quant.binary.xnor_beta`, rounded half to even,
        saturating); the output is ``alpha[c] * beta * dot + b[c]``.  None:
        no input scaling.
    acc_order : {"fxp", "hls4ml"}
        Order of the accumulation (it matters only for saturating
        accumulators).  ``"fxp"`` (default): products for input channel,
        kernel row, kernel column, then the bias.  ``"hls4ml"``: hls4ml's
        latency dense/conv: the bias cast to the accumulator first, then each
        product cast to the accumulator and added, kernel row, column, input
        channel (channels innermost); see :mod:`fxp.kernels.spec_layers`.
    softmax : SoftmaxTable or None
        A final Softmax only: compute it in integers with hls4ml's lookup
        tables (:mod:`fxp.plan.softmax`, :mod:`fxp.ops.softmax_table`) into
        ``output`` with ``rounding`` / ``output_overflow``; None: float.
    acc_frac_bits : int or None
        Power-of-two layers with weights: fraction bits of the accumulator
        (its LSB is ``2**-acc_frac_bits``; ``acc_bits`` counts all its bits).
        None (default): ``F_x + F_w``, every product exact.  Fewer (hls4ml's
        stock ``accum_t`` ``ap_fixed<16,6>`` keeps 10 of a ``<16,6> x <16,6>``
        product's 20): each product is rounded to the accumulator's LSB with
        ``acc_rounding`` before it is added, and the bias codes are cast into
        it with ``acc_rounding`` (:mod:`fxp.kernels.spec_layers`).  More:
        exact (the extra bits stay 0 unless the bias has them).
    acc_rounding : RoundingMode
        Rounding of products and bias into an accumulator with fewer fraction
        bits (default ``"floor"``, hls4ml's ``AP_TRN``).
    weight_rounding, weight_overflow, bias_rounding, bias_overflow : modes
        How the float weights and biases become power-of-two codes (default
        half to even, saturating); hls4ml's untyped ``ap_fixed<W,I>`` weights
        truncate (``"floor"``) and wrap.
    result, result_overflow : TensorSpec or None, OverflowMode
        A power-of-two layer with a fused activation (ReLU/Clip) may write
        its accumulator into ``result`` first (``rounding``,
        ``result_overflow``), clamp there, then cast into ``output``
        (``rounding``, ``output_overflow``), as hls4ml's separate result and
        ReLU types do; None (default): round, clamp, then the output overflow
        once.
    param_decimals : bool
        Power-of-two weights and biases pass through decimal text first, as
        hls4ml's weight headers do: each float32 value is printed with ``F``
        decimal places (``F`` = its format's fraction bits, Python's correctly
        rounded ``'{:.Ff}'``), read back as a double, then quantized with the
        modes above.
    """

    name: str
    float_layer: bool = False
    input: TensorSpec | None = None
    weight: TensorSpec | None = None
    bias: TensorSpec | None = None
    output: TensorSpec | None = None
    acc_bits: int = 32
    acc_overflow: OverflowMode = OverflowMode.WRAP
    rounding: RoundingMode = RoundingMode.HALF_UP
    output_overflow: OverflowMode = OverflowMode.SATURATE
    requant: RequantScheme = RequantScheme.POW2
    pad_value: int | None = None
    binary_output: str | None = None
    alpha: TensorSpec | None = None
    acc_order: str = "fxp"
    beta: TensorSpec | None = None
    softmax: SoftmaxTable | None = None
    acc_frac_bits: int | None = None
    acc_rounding: RoundingMode = RoundingMode.FLOOR
    weight_rounding: RoundingMode = RoundingMode.HALF_EVEN
    weight_overflow: OverflowMode = OverflowMode.SATURATE
    bias_rounding: RoundingMode = RoundingMode.HALF_EVEN
    bias_overflow: OverflowMode = OverflowMode.SATURATE
    param_decimals: bool = False
    result: TensorSpec | None = None
    result_overflow: OverflowMode = OverflowMode.SATURATE

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PlanError(f"a layer name must be a non-empty string, got {_shown(self.name)}")
        if not isinstance(self.float_layer, (bool, np.bool_)):
            raise PlanError(f"layer {self.name!r}: float_layer must be a bool, got "
                            f"{_shown(self.float_layer)} ({type(self.float_layer).__name__})")
        object.__setattr__(self, "float_layer", bool(self.float_layer))
        for key in ("input", "weight", "bias", "output", "alpha", "beta", "result"):
            spec = getattr(self, key)
            if spec is not None and not isinstance(spec, TensorSpec):
                raise PlanError(f"layer {self.name!r}: {key} must be a TensorSpec or None, got "
                                f"{_shown(spec)}")
        object.__setattr__(self, "acc_overflow", OverflowMode.from_string(self.acc_overflow))
        object.__setattr__(self, "output_overflow", OverflowMode.from_string(self.output_overflow))
        object.__setattr__(self, "rounding", RoundingMode.from_string(self.rounding))
        object.__setattr__(self, "requant", RequantScheme.from_string(self.requant))
        if isinstance(self.acc_bits, bool) or not isinstance(self.acc_bits, int) \
                or not 1 <= self.acc_bits <= 64:
            raise PlanError(f"layer {self.name!r}: acc_bits={self.acc_bits!r} must be an int in 1..64")
        if not isinstance(self.acc_order, str) or self.acc_order not in ACC_ORDERS:
            raise PlanError(f"layer {self.name!r}: acc_order must be one of {ACC_ORDERS}, got "
                            f"{_shown(self.acc_order)}")
        if self.rounding is RoundingMode.STOCHASTIC:
            raise PlanError(f"layer {self.name!r}: stochastic rounding is for quantizers, "
                            "not for the inference datapath")
        self._check_shift()
        self._check_binary()
        self._check_params()
        if self.softmax is not None:
            if not isinstance(self.softmax, SoftmaxTable):
                raise PlanError(f"layer {self.name!r}: softmax must be a SoftmaxTable or None, "
                                f"got {_shown(self.softmax)}")
            if self.weight is not None or self.float_layer or self.output is None \
                    or not self.output.is_pow2 or self.output.is_binary:
                raise PlanError(f"layer {self.name!r}: a table softmax needs a power-of-two "
                                "'output' format and no weight or float setting")
        if self.acc_order != "fxp" and (self.is_binary or self.is_shift or self.float_layer):
            raise PlanError(f"layer {self.name!r}: acc_order {self.acc_order!r} is for fixed-point "
                            "multiply layers (not binary, shift-add or float layers)")

    @property
    def is_binary(self) -> bool:
        """True for a binary (XNOR-popcount) layer: its weight spec is binary."""
        return self.weight is not None and self.weight.is_binary

    @property
    def is_shift(self) -> bool:
        """True for a shift-add layer: its weight spec is shift (codes 0 or +-2**k)."""
        return self.weight is not None and self.weight.is_shift

    def _check_shift(self) -> None:
        for key in ("input", "bias", "output", "alpha", "beta"):
            spec = getattr(self, key)
            if spec is not None and spec.is_shift:
                raise PlanError(f"layer {self.name!r}: only a weight can be shift (kind "
                                f"'shift'); got a shift {key}")
        if self.is_shift and not self.float_layer and self.requant is not RequantScheme.POW2:
            raise PlanError(f"layer {self.name!r}: a shift-add layer requantizes in power of "
                            f"two; requant={self.requant.value!r}")

    def _check_params(self) -> None:
        """The accumulator fraction bits and the weight/bias quantization modes."""
        where = f"layer {self.name!r}"
        for key in ("acc_rounding", "weight_rounding", "bias_rounding"):
            mode = RoundingMode.from_string(getattr(self, key))
            if mode is RoundingMode.STOCHASTIC:
                raise PlanError(f"{where}: {key} 'stochastic' is not supported (give a seeded "
                                "quantizer's codes instead)")
            object.__setattr__(self, key, mode)
        for key in ("weight_overflow", "bias_overflow", "result_overflow"):
            object.__setattr__(self, key, OverflowMode.from_string(getattr(self, key)))
        if not isinstance(self.param_decimals, (bool, np.bool_)):
            raise PlanError(f"{where}: param_decimals must be a bool, got "
                            f"{_shown(self.param_decimals)}")
        object.__setattr__(self, "param_decimals", bool(self.param_decimals))
        f = self.acc_frac_bits
        if f is not None and (isinstance(f, (bool, np.bool_))
                              or not isinstance(f, (int, np.integer)) or not -64 <= f <= 128):
            raise PlanError(f"{where}: acc_frac_bits must be an integer in -64..128 or None, "
                            f"got {_shown(f)}")
        if f is not None:
            object.__setattr__(self, "acc_frac_bits", int(f))
        if self.result is not None and (not self.result.is_pow2 or self.result.kind != "fixed"
                                        or self.output is None or not self.output.is_pow2):
            raise PlanError(f"{where}: 'result' and 'output' must be power-of-two formats")
        custom = (f is not None or self.param_decimals or self.result is not None
                  or self.result_overflow is not OverflowMode.SATURATE
                  or (self.weight_rounding, self.weight_overflow, self.bias_rounding,
                      self.bias_overflow) != (RoundingMode.HALF_EVEN, OverflowMode.SATURATE) * 2)
        if custom and (self.weight is None or self.float_layer or self.is_binary
                       or self.is_shift or self.requant is not RequantScheme.POW2):
            raise PlanError(f"{where}: acc_frac_bits, result, param_decimals and the weight/"
                            "bias rounding and overflow modes are for power-of-two multiply layers "
                            "(a fixed weight, requant 'pow2', not float, binary or shift-add)")

    def _check_binary(self) -> None:
        where = f"layer {self.name!r}"
        for key in ("bias", "alpha", "beta"):
            spec = getattr(self, key)
            if spec is not None and spec.is_binary:
                raise PlanError(f"{where}: {key} cannot be binary")
        if not self.is_binary:
            for key in ("pad_value", "binary_output", "alpha", "beta"):
                if getattr(self, key) is not None:
                    raise PlanError(f"{where}: {key!r} is for binary layers only (give the "
                                    "layer a binary weight: {\"format\": \"binary\"})")
            for key in ("input", "output"):
                spec = getattr(self, key)
                if spec is not None and spec.is_binary:
                    raise PlanError(f"{where}: a binary {key} needs a binary layer (binary "
                                    "weight with binary_output 'threshold' makes a binary "
                                    "output; a binary layer binarizes its own input)")
            return
        if self.float_layer:
            raise PlanError(f"{where}: a binary layer cannot be a float layer")
        if self.requant is not RequantScheme.POW2:
            raise PlanError(f"{where}: a binary layer requantizes in power of two; "
                            f"requant={self.requant.value!r}")
        pv = self.pad_value
        if pv is not None:
            if isinstance(pv, bool) or not isinstance(pv, (int, np.integer)) \
                    or int(pv) not in PAD_VALUES:
                raise PlanError(f"{where}: pad_value must be 0, +1 or -1, got {pv!r}")
            object.__setattr__(self, "pad_value", int(pv))
        out = "scale" if self.binary_output is None else self.binary_output
        if out not in BINARY_OUTPUTS:
            raise PlanError(f"{where}: binary_output must be one of {BINARY_OUTPUTS}, got "
                            f"{self.binary_output!r}")
        object.__setattr__(self, "binary_output", out)
        if self.input is not None and not self.input.is_binary:
            raise PlanError(f"{where}: a binary layer binarizes its input (H = sign(X)); its "
                            f"'input' spec must be binary or absent, got {self.input.fmt}")
        if self.alpha is not None:
            if not self.alpha.is_pow2:
                raise PlanError(f"{where}: alpha needs a power-of-two format")
            if out == "dot":
                raise PlanError(f"{where}: binary_output 'dot' is the bare dot product; "
                                "alpha is used by 'scale' and 'threshold' only")
        if self.bias is not None and not self.bias.is_pow2:
            raise PlanError(f"{where}: the bias of a binary layer needs a power-of-two format")
        if self.beta is not None and (not self.beta.is_pow2 or out != "scale"):
            raise PlanError(f"{where}: beta (XNOR-Net input scaling) needs a power-of-two "
                            f"format and binary_output 'scale', got binary_output {out!r}")
        if out == "threshold":
            if self.output is None:
                object.__setattr__(self, "output", TensorSpec.binary())
            elif not self.output.is_binary:
                raise PlanError(f"{where}: binary_output 'threshold' writes a binary output; "
                                f"got output {self.output.fmt}")
        elif self.output is not None and (self.output.is_binary or not self.output.is_pow2):
            raise PlanError(f"{where}: binary_output {out!r} writes a power-of-two (non-binary) "
                            "output; use 'threshold' for a binary one")

    def with_(self, **changes) -> LayerPlan:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Plan:
    """Per-layer arithmetic for one model: frozen, schema-versioned, JSON-serialisable.

    Attributes
    ----------
    input : TensorSpec
        Coding of the graph input (floats are quantized half-to-even, saturating).
    layers : tuple of LayerPlan
        One entry per layer that needs one (layers with weights, pools that
        change format, adds); others pass codes through.
    name : str
        Free-form label (e.g. ``"ptq-pow2-w8a8"``).
    input_rounding, input_overflow : RoundingMode, OverflowMode
        How the float graph input is converted into ``input`` (default: half
        to even, saturating).  hls4ml converts its input with the input
        type's own modes (``ap_fixed<W,I>``: truncation, wrap), so a plan for
        an hls4ml input type without modes says ``floor`` / ``wrap``.  An
        affine input saturates and may round otherwise (TFLite's QUANTIZE
        rounds half away from zero).
    """

    input: TensorSpec
    layers: tuple[LayerPlan, ...] = ()
    name: str = "plan"
    schema_version: int = field(default=SCHEMA_VERSION)
    input_rounding: RoundingMode = RoundingMode.HALF_EVEN
    input_overflow: OverflowMode = OverflowMode.SATURATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "input_rounding", RoundingMode.from_string(self.input_rounding))
        object.__setattr__(self, "input_overflow", OverflowMode.from_string(self.input_overflow))
        if self.input_rounding is RoundingMode.STOCHASTIC:
            raise PlanError("input_rounding: stochastic rounding is for quantizers, not for "
                            "the inference datapath")
        if isinstance(self.input, TensorSpec) and not self.input.is_pow2 and \
                self.input_overflow is not OverflowMode.SATURATE:
            raise PlanError("input_overflow is for a power-of-two input; an affine input "
                            "saturates (QuantizeLinear, TFLite QUANTIZE)")
        if not isinstance(self.input, TensorSpec):
            raise PlanError(f"the plan input must be a TensorSpec, got {_shown(self.input)}")
        if not isinstance(self.name, str):
            raise PlanError(f"the plan name must be a string, got {_shown(self.name)}")
        index: dict[str, LayerPlan] = {}
        dup: list[str] = []
        for lp in self.layers:  # one pass: linear in the number of layers
            if not isinstance(lp, LayerPlan):
                raise PlanError(f"plan layers must be LayerPlan objects, got {_shown(lp)}")
            if lp.name in index:
                dup.append(lp.name)
            index[lp.name] = lp
        if dup:
            shown = sorted(set(dup))
            more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
            raise PlanError(f"layers listed twice in the plan: {shown[:10]}{more}")
        object.__setattr__(self, "_index", index)  # name -> LayerPlan (not a field)
        if self.input.is_binary:
            raise PlanError("the graph input cannot be binary; a binary first layer binarizes "
                            "the input codes itself (H = sign(X))")
        if isinstance(self.schema_version, bool) or self.schema_version != SCHEMA_VERSION:
            raise PlanError(f"plan schema_version {self.schema_version} is not supported "
                            f"(this fxp reads version {SCHEMA_VERSION})")

    def layer(self, name: str) -> LayerPlan | None:
        """The plan of layer ``name`` or None."""
        return self._index.get(name)

    def with_shift_weights(self, names=None) -> Plan:
        """A new plan whose layers ``names`` (default: every integer layer with a fixed
        power-of-two weight) take shift weights in the same format (:meth:`TensorSpec.shift`).

        The codes are checked when the plan is compiled against a graph.
        """
        if names is None:
            names = [lp.name for lp in self.layers if lp.weight is not None and
                     not lp.float_layer and lp.weight.kind == "fixed" and lp.weight.is_pow2]
        plan = self
        for name in names:
            lp = plan.layer(name)
            if lp is None or lp.weight is None or lp.weight.is_binary or not lp.weight.is_pow2:
                raise PlanError(f"layer {name!r} has no power-of-two weight to make shift")
            plan = plan.replace_layer(name, weight=TensorSpec.shift(lp.weight.fmt))
        return plan

    def replace_layer(self, name: str, **changes) -> Plan:
        """A new plan with layer ``name`` changed."""
        if self.layer(name) is None:
            names = [lp.name for lp in self.layers]
            more = f" and {len(names) - 20} more" if len(names) > 20 else ""
            raise PlanError(f"no layer {name!r} in the plan; layers: {names[:20]}{more}")
        return replace(self, layers=tuple(lp.with_(**changes) if lp.name == name else lp
                                          for lp in self.layers))
