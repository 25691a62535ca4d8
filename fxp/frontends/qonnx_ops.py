"""QONNX quantizer nodes (``Quant``, ``BipolarQuant``) read into exact fxp codings.

The semantics are qonnx 1.0's own (``qonnx/custom_op/general/intquant.py``
and ``bipolar_quant.py``), not a re-reading of the docs::

    Quant(x, scale, zeropt, bitwidth; signed, narrow, rounding_mode):
        y = x / scale + zeropt                       (float32, numpy)
        y = clip(y, min_int, max_int)                (before rounding)
        q = rounding_mode(y)                         (integer code)
        out = (q - zeropt) * scale                   (float-carried value)
    min_int = -2**(b-1) (+1 if narrow) signed, 0 unsigned
    max_int = 2**(b-1) - 1 signed, 2**b - 1 (-1 if narrow) unsigned
    Quant with bitwidth 1 and signed=1 is bipolar: q = +1 if y >= 0 else -1.
    BipolarQuant(x, scale): out = (+1 if x >= 0 else -1) * scale.

Clipping before rounding equals clipping after it (the bounds are integers
and every rounding mode is monotone and fixes integers), so a code is
``clip(round(x / scale + zeropt))``: fxp's "round, then saturate".

Rounding modes (``rounding_mode``, case-insensitive) map to
:class:`~fxp.core.modes.RoundingMode` by :data:`QONNX_ROUNDING`: ``ROUND`` and
``HALF_EVEN`` are ``np.round`` (half to even), ``CEIL``, ``FLOOR``, ``UP``
(away from 0), ``DOWN`` (``np.fix``, toward 0), ``HALF_UP`` (ties away from
0) and ``HALF_DOWN`` (ties toward 0).  fxp rounds the exact value; qonnx
evaluates ``HALF_UP`` as ``floor(|y| + 0.5)`` in float32, which also rounds
``|y| = 0.5 - 2**-25`` up (the only float32 value where the two differ).

Constants (weights, biases) are quantized here exactly as qonnx does it, in
float32 with numpy's functions, so their codes are qonnx's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fxp.core.format import QFormat
from fxp.core.modes import OverflowMode, RoundingMode
from fxp.errors import ModelImportError, UnsupportedOpError
from fxp.plan.tensor_spec import TensorSpec

__all__ = ["QONNX_DOMAINS", "QONNX_ROUNDING", "QuantInfo", "dyadic_frac", "read_quant",
           "read_trunc"]

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "finn")
"""Domains whose ``Quant``/``BipolarQuant``/``Trunc``/``MultiThreshold`` nodes are QONNX's."""

QONNX_ROUNDING = {"ROUND": RoundingMode.HALF_EVEN, "HALF_EVEN": RoundingMode.HALF_EVEN,
                  "CEIL": RoundingMode.CEIL, "FLOOR": RoundingMode.FLOOR,
                  "UP": RoundingMode.AWAY, "DOWN": RoundingMode.TO_ZERO,
                  "HALF_UP": RoundingMode.HALF_AWAY, "HALF_DOWN": RoundingMode.HALF_TO_ZERO}
"""qonnx ``rounding_mode`` -> fxp rounding (qonnx's ``resolve_rounding_mode``)."""

_NP_ROUND = {"ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
             "UP": lambda x: np.sign(x) * np.ceil(np.abs(x)), "DOWN": np.fix,
             "HALF_UP": lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5),
             "HALF_DOWN": lambda x: np.sign(x) * np.ceil(np.abs(x) - 0.5)}


def dyadic_frac(values: np.ndarray) -> int:
    """Fewest fraction bits ``F`` with every ``values * 2**F`` an integer (floats are dyadic)."""
    v = np.asarray(values, np.float64).ravel()
    v = v[v != 0]
    if v.size == 0:
        return 0
    mant, exp = np.frexp(v)  # v = mant * 2**exp, 0.5 <= |mant| < 1 (53-bit mantissa)
    ints = np.ldexp(mant, 53).astype(np.int64)
    tz = np.array([(int(i) & -int(i)).bit_length() - 1 for i in ints])
    return int(np.max(53 - exp - tz))


@dataclass(frozen=True)
class QuantInfo:
    """One QONNX quantizer node, checked.

    Attributes
    ----------
    node : str
        Node name (for messages).
    bits : int
        Code width; 1 with ``signed`` (and every ``BipolarQuant``) is bipolar.
    signed, narrow : bool
    rounding : str
        qonnx's rounding mode name (upper case).
    scales : numpy.ndarray
        float32 scales (one per tensor, or one per channel: ``scale_shape``).
    zero_point : int
    bipolar : bool
        Codes -1/+1 (``BipolarQuant``, or ``Quant`` with 1 signed bit).
    grid_frac : int or None
        Set for a ``Quant`` followed by a ``Trunc`` (:func:`read_trunc`), read
        as one quantizer: the value it quantizes must lie on ``2**-grid_frac``
        (the Quant's grid) so that the Quant's own rounding is exact.
    shift : numpy.ndarray or None
        Set for a ``MultiThreshold``
        (:func:`fxp.frontends.qonnx_threshold.read_multithreshold`): the
        amount (one, or one per output channel) to add to the producing
        layer's bias before this FLOOR requantization.
    """

    node: str
    bits: int
    signed: bool
    narrow: bool
    rounding: str
    scales: np.ndarray
    zero_point: int
    bipolar: bool
    grid_frac: int | None = None
    shift: np.ndarray | None = None

    @property
    def min_code(self) -> int:
        if self.bipolar:
            return -1
        if not self.signed:
            return 0
        return -(1 << (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def max_code(self) -> int:
        if self.bipolar:
            return 1
        if self.signed:
            return (1 << (self.bits - 1)) - 1
        return (1 << self.bits) - 1 - (1 if self.narrow else 0)

    @property
    def mode(self) -> RoundingMode:
        return QONNX_ROUNDING[self.rounding]

    @property
    def per_tensor(self) -> bool:
        return self.scales.size == 1

    def pow2_fracs(self) -> np.ndarray | None:
        """``F`` per scale when every scale is ``2**-F``, else None."""
        mant, exp = np.frexp(self.scales.astype(np.float64).ravel())
        if np.any(mant != 0.5):
            return None
        return (1 - exp).astype(np.int64)

    def overflow(self) -> OverflowMode:
        """The saturation that clips to ``[min_code, max_code]`` (narrow signed: symmetric)."""
        return OverflowMode.SATURATE_SYMMETRIC if self.signed and self.narrow \
            else OverflowMode.SATURATE

    def same_as(self, other: QuantInfo) -> bool:
        return (self.bipolar, self.bits, self.signed, self.narrow, self.zero_point,
                self.grid_frac) == (other.bipolar, other.bits, other.signed, other.narrow,
                                    other.zero_point, other.grid_frac) and \
            self.shift is None and other.shift is None and \
            self.scales.shape == other.scales.shape and np.array_equal(self.scales, other.scales)

    def quantize_const(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """qonnx's codes and float32 values of a constant ``x`` (numpy float32, as qonnx)."""
        x = np.asarray(x, np.float32)
        s = self.scales
        if self.bipolar:
            codes = np.where(x / s + np.float32(self.zero_point) >= 0, 1, -1)
        else:
            y = x / s + np.float32(self.zero_point)
            y = np.clip(y, np.float32(self.min_code), np.float32(self.max_code))
            codes = _NP_ROUND[self.rounding](y)
        codes = np.broadcast_to(codes, np.broadcast_shapes(x.shape, s.shape)).astype(np.int64)
        vals = ((codes - self.zero_point).astype(np.float32) * s).astype(np.float32)
        return codes, vals

    def activation_spec(self) -> TensorSpec:
        """The spec of an activation this node quantizes (per-tensor; power of two or affine)."""
        fr = self.pow2_fracs()
        if not self.per_tensor:
            raise UnsupportedOpError(f"node {self.node!r} (Quant): per-channel activation scales "
                                     f"{self.scales.ravel().tolist()[:8]} are not supported; "
                                     f"fxp's activations have one scale")
        if fr is not None and self.zero_point == 0:
            return TensorSpec(QFormat.from_frac(self.bits, int(fr[0]), self.signed))
        return TensorSpec(QFormat.integer(self.bits, self.signed),
                          scales=(float(self.scales.ravel()[0]),), zero_point=self.zero_point)


def _const(node: Any, i: int, consts: dict[str, np.ndarray], what: str) -> np.ndarray:
    name = node.input[i] if len(node.input) > i else ""
    if not name or name not in consts:
        raise ModelImportError(f"node {node.name or node.output[0]!r} ({node.op_type}): its "
                               f"{what} ({name[:200]!r}) must be an initializer; fxp reads "
                               f"constant quantizer parameters only")
    return np.asarray(consts[name])


def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return a.s.decode("utf-8", "replace") if a.type == a.STRING else int(a.i)
    return default


def read_quant(node: Any, consts: dict[str, np.ndarray]) -> QuantInfo:
    """Check a ``Quant`` or ``BipolarQuant`` node and return its :class:`QuantInfo`.

    Raises
    ------
    ModelImportError
        Non-constant, non-finite or non-positive scale; a zero point that is
        not one integer inside the code range; a bit width that is not an
        integer constant in 1..32.
    UnsupportedOpError
        An unknown rounding mode.
    """
    name = node.name or node.output[0]
    where = f"node {name[:200]!r} ({node.op_type})"
    scale = _const(node, 1, consts, "scale").astype(np.float64)
    if scale.size == 0 or not np.all(np.isfinite(scale)) or np.any(scale <= 0) or \
            np.any(scale.astype(np.float32) != scale):
        raise ModelImportError(f"{where}: scale {scale.ravel().tolist()[:8]} must be finite "
                               f"float32 values > 0")
    scales = scale.astype(np.float32)
    if node.op_type == "BipolarQuant":
        return QuantInfo(name, 1, True, False, "ROUND", scales, 0, True)
    zp = _const(node, 2, consts, "zero point").astype(np.float64)
    bw = _const(node, 3, consts, "bit width").astype(np.float64)
    if bw.size != 1 or not np.isfinite(bw).all() or bw.ravel()[0] != np.round(bw.ravel()[0]) \
            or not 1 <= bw.ravel()[0] <= 32:
        raise ModelImportError(f"{where}: bit width {bw.ravel().tolist()[:4]} must be one "
                               f"integer in 1..32")
    bits = int(bw.ravel()[0])
    signed, narrow = bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
    mode = str(_attr(node, "rounding_mode", "ROUND")).upper()
    if mode not in QONNX_ROUNDING:
        raise UnsupportedOpError(f"{where}: rounding_mode {mode[:40]!r} is not one of "
                                 f"{sorted(QONNX_ROUNDING)}")
    if zp.size == 0 or not np.all(np.isfinite(zp)) or np.any(zp != np.round(zp)):
        raise ModelImportError(f"{where}: zero point {zp.ravel().tolist()[:8]} is not an "
                               f"integer; fxp codes have integer zero points")
    if np.any(zp != zp.ravel()[0]):
        raise ModelImportError(f"{where}: per-channel zero points {zp.ravel().tolist()[:8]} "
                               f"are not supported (one zero point per tensor)")
    info = QuantInfo(name, bits, signed, narrow, mode, scales, int(zp.ravel()[0]),
                     bits == 1 and signed)
    if info.bipolar and info.zero_point != 0:
        raise ModelImportError(f"{where}: a 1-bit signed (bipolar) Quant with zero point "
                               f"{info.zero_point} is a threshold, not a code; give 0")
    if not info.bipolar and not info.min_code <= info.zero_point <= info.max_code:
        raise ModelImportError(f"{where}: zero point {info.zero_point} is outside the code "
                               f"range [{info.min_code}, {info.max_code}]")
    return info


def _one_int(node: Any, i: int, consts: dict[str, np.ndarray], what: str, where: str) -> int:
    v = _const(node, i, consts, what).astype(np.float64).ravel()
    if v.size != 1 or not np.isfinite(v[0]) or v[0] != np.round(v[0]) or not 0 <= v[0] <= 32:
        raise ModelImportError(f"{where}: {what} {v.tolist()[:4]} must be one integer in 0..32")
    return int(v[0])


def read_trunc(node: Any, consts: dict[str, np.ndarray], prev: QuantInfo | None,
               opset: int) -> QuantInfo:
    """The one quantizer ``Trunc(Quant(x))`` is, as qonnx 1.0 computes it (``trunc.py``).

    ``Trunc_v2`` (opset >= 2; inputs x, scale, zeropt, in_bitwidth,
    output_scale, out_bitwidth): ``y = round(x / s + z) / t`` with
    ``t = 2**round(log2(output_scale / s))``, clipped to ``out_bitwidth``
    (``signed``, ``narrow``), rounded by ``rounding_mode`` (default FLOOR),
    value ``(y - z / t) * output_scale``.  On the codes ``q`` of the Quant
    before it (same scale, zero point 0) that is
    ``clip(rnd(q / t), L, H)``; when the Quant's rounding is exact (its input
    on the grid ``s``, checked per layer by the plan) and ``output_scale ==
    s * t``, it is the single quantizer ``clip(rnd(x / output_scale), L, H)``
    with ``L = rnd(max(out_min, q_min / t))``, ``H = rnd(min(out_max,
    q_max / t))`` (clipping commutes with a monotone rounding).

    ``Trunc_v1`` (opset 1; x, scale, zeropt, in_bitwidth, out_bitwidth)
    keeps the scale: its value ``rnd(q / 2**k) * s`` is the input divided by
    ``2**k`` (``k = in - out``), which no fxp graph op does; only ``k == 0``
    (the identity) is read.

    Raises
    ------
    ModelImportError
        The input is not the output of a per-tensor power-of-two ``Quant``
        with zero point 0 and the Trunc's scale; non-power-of-two or
        mismatched scales; a code range ``[L, H]`` that is no fxp format.
    UnsupportedOpError
        A v1 Trunc with ``k != 0``; an unknown rounding mode.
    """
    name = node.name or node.output[0]
    where = f"node {name[:200]!r} (Trunc)"
    if prev is None or prev.bipolar or prev.grid_frac is not None or prev.shift is not None:
        raise ModelImportError(f"{where}: its input {node.input[0][:200]!r} must be the output "
                               f"of a multi-bit Quant of an activation, read by this Trunc only")
    s = _const(node, 1, consts, "scale").astype(np.float64).ravel()
    z = _const(node, 2, consts, "zero point").astype(np.float64).ravel()
    pf = prev.pow2_fracs()
    if s.size != 1 or not prev.per_tensor or pf is None or prev.zero_point != 0 or \
            s[0] != float(prev.scales.ravel()[0]) or z.size != 1 or z[0] != 0:
        raise ModelImportError(f"{where}: scale {s.tolist()[:4]} and zero point "
                               f"{z.tolist()[:4]} must repeat the power-of-two scale "
                               f"{prev.scales.ravel().tolist()[:4]} and zero point 0 of "
                               f"{prev.node!r}")
    mode = str(_attr(node, "rounding_mode", "FLOOR")).upper()
    if mode not in QONNX_ROUNDING:
        raise UnsupportedOpError(f"{where}: rounding_mode {mode[:40]!r} is not one of "
                                 f"{sorted(QONNX_ROUNDING)}")
    _one_int(node, 3, consts, "input bit width", where)
    if opset < 2:
        k = _one_int(node, 3, consts, "input bit width", where) - \
            _one_int(node, 4, consts, "output bit width", where)
        if k != 0:
            raise UnsupportedOpError(f"{where}: a Trunc_v1 (opset {opset}) dropping {k} bits "
                                     f"keeps scale {s[0]!r}, so it divides the value by 2**{k}; "
                                     f"fxp's graph has no such scaling (use Trunc opset 2 with "
                                     f"output_scale = scale * 2**k)")
        return prev
    os_ = _const(node, 4, consts, "output scale").astype(np.float64).ravel()
    ob = _one_int(node, 5, consts, "output bit width", where)
    signed, narrow = bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
    t = 2.0 ** np.round(np.log2(os_ / s[0])) if os_.size == 1 and os_[0] > 0 else None
    if t is None or os_[0] != s[0] * t[0] or os_[0] != np.float32(os_[0]):
        raise ModelImportError(f"{where}: output scale {os_.tolist()[:4]} must be the scale "
                               f"{s[0]!r} times a power of two (fxp drops whole bits)")
    t = float(t[0])
    lo_o = -(1 << (ob - 1)) + int(narrow) if signed else 0
    hi_o = (1 << (ob - 1)) - 1 if signed else (1 << ob) - 1 - int(narrow)
    a, b = max(lo_o, prev.min_code / t), min(hi_o, prev.max_code / t)
    rnd = _NP_ROUND[mode]
    lo, hi = int(rnd(np.float64(a))), int(rnd(np.float64(b)))
    info = None
    if a <= b and lo == 0 and hi >= 1 and (hi + 1) & hi == 0:
        info = QuantInfo(name, hi.bit_length(), False, False, mode, np.float32([os_[0]]), 0,
                         False, int(pf[0]))
    elif a <= b and hi >= 1 and (hi + 1) & hi == 0 and lo in (-hi, -hi - 1):
        info = QuantInfo(name, hi.bit_length() + 1, True, lo == -hi, mode,
                         np.float32([os_[0]]), 0, False, int(pf[0]))
    if info is None or info.bits > 32:
        raise ModelImportError(f"{where}: after {prev.node!r} its codes span [{lo}, {hi}], "
                               f"which is no fxp format range (0..2**b-1, -2**(b-1)..2**(b-1)-1 "
                               f"or symmetric)")
    return info
