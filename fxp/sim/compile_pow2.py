"""Power-of-two weighted layers: weight and bias codes, the accumulator format, product scaling.

What :func:`fxp.sim.compile.compile_plan` precomputes for a Conv2D/Dense with
``requant="pow2"`` (see :class:`~fxp.plan.plan.LayerPlan`):

* weight codes: ``quantize(w, weight.fmt, weight_rounding, weight_overflow)``
  of the float32 weights, exact binary arithmetic (a per-channel weight,
  ``weight.channel_formats``: channel ``c`` quantized in its own format, its
  codes shifted left by ``F - F_c`` to the container format ``weight.fmt``,
  so each channel's values are exactly those of its own width); with ``param_decimals``
  each value first goes through hls4ml's weight-header text, ``float('{:.Ff}'
  .format(w))`` with ``F`` = the format's fraction bits (a value within
  ``0.5 * 10**-F`` of a rounding boundary can land on the other side);
* the accumulator: ``F_p = F_x + F_w`` (the products' fraction bits), ``F_a =
  acc_frac_bits`` (default ``F_p``), the bias format ``F_b`` (default: the
  accumulator format).  The engine keeps ``F_e = min(F_a, max(F_p, F_b))``
  fraction bits -- the accumulator's bits below ``2**-F_e`` are always zero --
  in ``acc_bits - (F_a - F_e)`` bits with the same integer bits;
* ``product_shift = F_p - F_e``: > 0 rounds each product to the
  accumulator's LSB with ``acc_rounding`` (hls4ml's ``accum_t mult[] = x *
  w``), < 0 shifts it left (exact);
* bias codes: ``quantize(b, bias.fmt, bias_rounding, bias_overflow)``, then
  cast from ``F_b`` to ``F_e`` with ``acc_rounding`` (hls4ml's ``acc =
  (accum_t) bias``; its overflow is the accumulator's, applied by the
  accumulation itself).
"""

from __future__ import annotations

import numpy as np

from fxp.core import intmath
from fxp.core.format import QFormat
from fxp.errors import PlanError
from fxp.ops.fixed import quantize
from fxp.plan.plan import LayerPlan, TensorSpec

__all__ = ["decimal_text_changes", "decimal_text_values", "pow2_layer_params", "scaled_bound",
           "weight_codes"]


def decimal_text_values(values: np.ndarray, frac_bits: int) -> np.ndarray:
    """``float('{:.Ff}'.format(v))`` for every value, ``F = max(0, frac_bits)`` (float64).

    hls4ml writes weights into its C++ headers with this many decimal places
    (``WeightVariable.update_precision``); the compiler reads each literal as
    the nearest double.

    >>> decimal_text_values(np.array([0.12345, -0.00001]), 3).tolist()
    [0.123, -0.0]
    """
    places = max(0, int(frac_bits))
    flat = np.asarray(values, np.float64).ravel().tolist()
    return np.array([float(f"{v:.{places}f}") for v in flat], np.float64).reshape(
        np.shape(values))


def decimal_text_changes(node, lp: LayerPlan) -> bool:
    """True when hls4ml's decimal weight text changes a weight or bias code of ``lp``.

    (Compared with exact quantization of the float32 values, with the layer's
    modes; the bias in its own format, or the accumulator's.)
    """
    fmt_b = lp.bias.fmt if lp.bias is not None else None
    pairs = [(node.weight, lp.weight.fmt, lp.weight_rounding, lp.weight_overflow)]
    if node.bias is not None and fmt_b is not None:
        pairs.append((node.bias, fmt_b, lp.bias_rounding, lp.bias_overflow))
    for values, fmt, rnd, ovf in pairs:
        if not np.array_equal(_codes(values, fmt, rnd, ovf, False),
                              _codes(values, fmt, rnd, ovf, True)):
            return True
    return False


def _codes(values: np.ndarray, fmt: QFormat, rounding, overflow, decimals: bool) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if decimals:
        v = decimal_text_values(v, fmt.frac_bits)
    codes, _ = quantize(v, fmt, rounding, overflow)
    return codes


def weight_codes(node, lp: LayerPlan) -> np.ndarray:
    """The layer's weight codes in ``lp.weight.fmt`` (per channel: see the module docstring).

    Raises
    ------
    PlanError
        A per-channel weight whose channel count is not the layer's output channels.
    """
    spec = lp.weight
    if spec.channel_formats is None:
        return _codes(node.weight, spec.fmt, lp.weight_rounding, lp.weight_overflow,
                      lp.param_decimals)
    if len(spec.channel_formats) != node.weight.shape[0]:
        raise PlanError(f"layer {node.name!r}: {len(spec.channel_formats)} channel weight "
                        f"formats for {node.weight.shape[0]} output channels")
    rows = [np.left_shift(_codes(w, f, lp.weight_rounding, lp.weight_overflow,
                                 lp.param_decimals), int(sh))
            for w, f, sh in zip(node.weight, spec.channel_formats, spec.channel_shifts(),
                                strict=True)]
    return np.stack(rows).astype(np.int64)


def pow2_layer_params(node, lp: LayerPlan, in_spec: TensorSpec
                      ) -> tuple[np.ndarray, np.ndarray, QFormat, int]:
    """``(weight codes, bias codes in the accumulator's LSB, accumulator format, product_shift)``.

    Raises
    ------
    PlanError
        A bias format that is not the products' (``F_x + F_w``) without
        ``acc_frac_bits``, or an accumulator left with no bits.
    """
    where = f"layer {node.name!r}"
    w_codes = weight_codes(node, lp)
    f_p = in_spec.fmt.frac_bits + lp.weight.fmt.frac_bits
    f_a = f_p if lp.acc_frac_bits is None else lp.acc_frac_bits
    b_spec = lp.bias or TensorSpec(QFormat.from_frac(lp.acc_bits, f_a))
    f_b = b_spec.fmt.frac_bits
    if lp.acc_frac_bits is None and f_b != f_p:
        raise PlanError(f"{where}: bias format {b_spec.fmt} must have frac_bits = "
                        f"F_x + F_w = {f_p} (or give the layer acc_frac_bits)")
    f_e = min(f_a, max(f_p, f_b))
    bits = lp.acc_bits - (f_a - f_e)
    if bits < 1:
        raise PlanError(f"{where}: an accumulator of {lp.acc_bits} bits with acc_frac_bits="
                        f"{f_a} keeps no bit at or above 2**-{f_e} (the products' and bias' "
                        "LSB); widen it")
    acc_fmt = QFormat.from_frac(bits, f_e)
    bias = node.bias if node.bias is not None else np.zeros(node.weight.shape[0], np.float32)
    b_codes = _codes(bias, b_spec.fmt, lp.bias_rounding, lp.bias_overflow, lp.param_decimals)
    if f_b > f_e:
        b_codes = intmath.shift_right_round(b_codes, f_b - f_e, lp.acc_rounding)
    elif f_b < f_e:
        b_codes = np.left_shift(b_codes, f_e - f_b)  # |b| < 2**64 / 2**(F_e - F_b): bits <= 64
    return w_codes, b_codes.astype(np.int64), acc_fmt, f_p - f_e


def scaled_bound(bound: list[int], bias: np.ndarray, taps: int, product_shift: int) -> list[int]:
    """Worst ``|acc|`` per channel once products are scaled by ``2**-product_shift``.

    ``bound`` is :func:`fxp.ops.layers.accumulator_bound` without the bias;
    a product rounded to a coarser LSB grows by at most 1 in magnitude.
    """
    b = [abs(int(v)) for v in np.asarray(bias).ravel()]
    if product_shift > 0:
        return [(p >> product_shift) + taps + bb for p, bb in zip(bound, b, strict=True)]
    return [(p << -product_shift) + bb for p, bb in zip(bound, b, strict=True)]
