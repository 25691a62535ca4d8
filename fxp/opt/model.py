"""Lin's additive output model, plans for width assignments, and the model's validation.

Additivity (Lin et al. 2016): with independent quantization noises and
positively homogeneous layers, noise-to-signal ratios add at the output::

    1/gamma_out = sum_i 1/gamma_i(b_i)

where ``1/gamma_i(b)`` is tensor ``i``'s measured noise at width ``b``
(:class:`~fxp.opt.noise.NoiseTable`).  :func:`validate_model` compares the
prediction with the SQNR the **integer engine** measures
(:func:`fxp.sim.evaluate.simulate`) for random mixed plans and reports the
error in dB.  The additive model ignores the cross terms (noise x noise and
correlations), the bias quantization and the float32 vs integer arithmetic;
its mean error (measured - predicted) is the *correction* a caller may add
(:attr:`ModelValidation.correction_db`; the optimizer uses it only when asked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fxp.ir.graph import Graph
from fxp.opt.noise import NoiseTable
from fxp.plan.plan import Plan

__all__ = ["BIAS_GUARD_BITS", "ModelValidation", "plan_for_widths", "predict_sqnr_db",
           "validate_model", "widths_to_ptq"]

BIAS_GUARD_BITS = 8
"""Fraction bits below the output LSB down to which :func:`plan_for_widths` codes biases.

Four were not enough.  The likely cause (not isolated): where most inputs are 0 (MNIST's
background) a layer's output is its bias alone, and a bias rounded onto a tie of the output's
rounding moves the whole channel's background by one output LSB, coherently.  ``mnist_cnn``
with a 6-bit input, 3-bit ``conv1`` weights and a 4-bit ``relu1`` measured 20.22 dB with 4
guard bits and 19.09 dB with 8 or 12, the fake-quant pass with float biases (which the noise model
predicts) 19.09 dB (a throwaway analysis of ``bench_fidelity.py``'s worst plan; the test
``test_guarded_biases_give_the_float_bias_noise`` checks the agreement)."""


def predict_sqnr_db(table: NoiseTable, widths: dict[str, int], *,
                    correction_db: float = 0.0) -> float:
    """Additive prediction of the output SQNR (dB) for per-tensor ``widths``.

    Tensors missing from ``widths`` are taken as float (no noise).
    """
    total = math.fsum(table.noise(name, int(b)) for name, b in widths.items())
    return (math.inf if total == 0 else -10.0 * math.log10(total)) + correction_db


def widths_to_ptq(table: NoiseTable, widths: dict[str, int]) -> dict:
    """Per-tensor widths -> ptq_pow2 keyword arguments (input_bits, layer_*_bits)."""
    lw, la, ib = {}, {}, None
    for t in table.tensors:
        if t.name not in widths:
            continue
        b = int(widths[t.name])
        if t.kind == "weight":
            lw[t.layer] = b
        elif t.layer is None:
            ib = b
        else:
            la[t.layer] = b
    return {"input_bits": ib, "layer_weight_bits": lw, "layer_act_bits": la}


def plan_for_widths(graph: Graph, calib_x: np.ndarray, table: NoiseTable,
                    widths: dict[str, int], *, default_bits: int = 16, name: str | None = None,
                    acc_bits: int | None = None, bias_guard: int | None = None) -> Plan:
    """A :func:`~fxp.plan.ptq.ptq_pow2` plan with these widths.

    Activation formats come from the same calibration ranges the noise was
    measured with; each weight format is the one the table measured at that
    width (``table.formats``), whatever its ``weight_method``.
    Accumulators are sized to each layer's proven worst case (so no overflow
    can happen; ``acc_bits`` forces one width instead).

    Biases: with ``bias_guard``, where the products' LSB (``F_x + F_w`` fraction bits)
    is coarser than ``bias_guard`` bits below the output's LSB, the accumulator gets
    ``acc_frac_bits = F_out + bias_guard`` (products shifted left, exact) so the bias is
    coded that finely.
    The noise table measures each tensor with a float bias; a bias rounded to a coarse
    product LSB is a per-channel offset it does not see (``mnist_cnn`` with a 4-bit input
    and 3-bit ``conv1`` weights: LSB 2**-3 against the output's 2**-2, 2.4 dB off the
    prediction).  Its rounding error stays below ``2**-(bias_guard + 1)`` output LSB.
    Only with ``acc_bits`` None (proven widths); ``bias_guard=None`` (the default, the
    :func:`~fxp.plan.ptq.ptq_pow2` convention the hardware cost models count) keeps
    ``F_x + F_w``; :func:`fxp.opt.optimize_bits` passes :data:`BIAS_GUARD_BITS` where its
    costs do not depend on accumulator widths.
    """
    from fxp.plan.ptq import ptq_pow2
    from fxp.sim.compile import compile_plan

    kw = widths_to_ptq(table, widths)
    if kw["input_bits"] is None:
        kw["input_bits"] = default_bits
    common = dict(weight_bits=default_bits, act_bits=default_bits, method=table.method,
                  weight_method="minmax" if table.weight_method == "sqnr"
                  else table.weight_method,
                  rounding=table.rounding, calib_ranges=table.ranges, name=name, **kw)
    wide = _measured_weight_formats(
        ptq_pow2(graph, calib_x, acc_bits=64 if acc_bits is None else acc_bits, **common),
        table, widths)
    if acc_bits is not None:
        return wide
    plan = wide
    if bias_guard is not None:
        plan = _guard_biases(plan, compile_plan(graph, wide), bias_guard)
    model = compile_plan(graph, plan)
    for s in model.steps:
        if s.worst_case_bits is not None:
            plan = plan.replace_layer(s.name, acc_bits=max(2, min(64, s.worst_case_bits)))
    return plan


def _guard_biases(plan: Plan, model, guard: int) -> Plan:
    """``plan`` with ``acc_frac_bits = F_out + guard`` where the products' LSB is coarser
    (power-of-two layers with weights and a fixed output; see :func:`plan_for_widths`)."""
    from fxp.plan.tensor_spec import RequantScheme

    for s in model.steps:
        lp = s.plan
        if (lp is None or lp.float_layer or lp.requant is not RequantScheme.POW2
                or lp.weight is None or lp.output is None or not lp.output.is_pow2
                or lp.is_binary or lp.is_shift or s.acc_fmt is None
                or lp.acc_frac_bits is not None):
            continue
        want = lp.output.fmt.frac_bits + guard
        if s.acc_fmt.frac_bits < want:
            plan = plan.replace_layer(s.name, acc_frac_bits=want)
    return plan


def _measured_weight_formats(plan: Plan, table: NoiseTable, widths: dict[str, int]) -> Plan:
    """``plan`` with each weight format set to the one the noise table measured."""
    from fxp.core.format import QFormat
    from fxp.plan.plan import TensorSpec

    for t in table.tensors:
        if t.kind != "weight" or t.name not in widths:
            continue
        fmt = table.formats.get(t.name, {}).get(int(widths[t.name]))
        lp = plan.layer(t.layer)
        if fmt is not None and lp is not None and not lp.float_layer:
            plan = plan.replace_layer(t.layer, weight=TensorSpec(QFormat.parse(fmt)))
    return plan


@dataclass
class ModelValidation:
    """Predicted (additive) vs measured (integer engine) output SQNR on random plans."""

    widths: list[dict[str, int]]
    predicted_db: list[float]
    measured_db: list[float]
    n_eval: int
    correction_db: float = 0.0
    errors_db: list[float] = field(default_factory=list)

    @property
    def mean_abs_error_db(self) -> float:
        """Mean |measured - predicted| (uncorrected)."""
        return float(np.mean(np.abs(self.errors_db))) if self.errors_db else math.nan

    @property
    def bias_db(self) -> float:
        """Mean (measured - predicted): > 0 means the model is pessimistic."""
        return float(np.mean(self.errors_db)) if self.errors_db else math.nan

    @property
    def max_abs_error_db(self) -> float:
        return float(np.max(np.abs(self.errors_db))) if self.errors_db else math.nan

    @property
    def corrected_mae_db(self) -> float:
        """Mean |measured - (predicted + correction)|."""
        if not self.errors_db:
            return math.nan
        return float(np.mean(np.abs(np.asarray(self.errors_db) - self.correction_db)))

    def to_dict(self) -> dict:
        return {"n_plans": len(self.widths), "n_eval": self.n_eval,
                "mean_abs_error_db": self.mean_abs_error_db, "bias_db": self.bias_db,
                "max_abs_error_db": self.max_abs_error_db, "correction_db": self.correction_db,
                "corrected_mae_db": self.corrected_mae_db,
                "plans": [{"widths": w, "predicted_db": p, "measured_db": m}
                          for w, p, m in zip(self.widths, self.predicted_db, self.measured_db,
                                             strict=True)]}


def random_widths(table: NoiseTable, rng: np.random.Generator, *, base=(4, 12), spread: int = 2,
                  ) -> dict[str, int]:
    """A random mixed assignment: a base width per plan, each tensor jittered by +-spread."""
    lo, hi = min(table.widths), max(table.widths)
    base_b = int(rng.integers(base[0], base[1] + 1))
    return {t.name: int(np.clip(base_b + rng.integers(-spread, spread + 1), lo, hi))
            for t in table.tensors}


def validate_model(graph: Graph, table: NoiseTable, calib_x: np.ndarray, eval_x: np.ndarray,
                   eval_y: np.ndarray, *, n_plans: int = 12, seed: int = 0,
                   min_predicted_db: float = 10.0) -> ModelValidation:
    """Predicted vs integer-engine SQNR for ``n_plans`` random mixed plans.

    Plans whose prediction is below ``min_predicted_db`` (where quantization
    noise is not small and the additive model is not meant to hold) are
    redrawn.  ``correction_db`` is the mean error (measured - predicted): a
    constant dB offset fitted on these plans.
    """
    from fxp.sim.evaluate import simulate

    rng = np.random.default_rng(seed)
    ws, pred, meas = [], [], []
    tries = 0
    while len(ws) < n_plans and tries < 20 * n_plans:
        tries += 1
        w = random_widths(table, rng)
        p = predict_sqnr_db(table, w)
        if p < min_predicted_db:
            continue
        plan = plan_for_widths(graph, calib_x, table, w, name="random-mixed")
        rep = simulate(graph, plan, eval_x, eval_y)
        ws.append(w)
        pred.append(p)
        meas.append(rep.output_sqnr_db)
    err = [m - p for m, p in zip(meas, pred, strict=True)
           if math.isfinite(m) and math.isfinite(p)]
    return ModelValidation(ws, pred, meas, int(len(eval_x)),
                           correction_db=float(np.mean(err)) if err else 0.0, errors_db=err)
