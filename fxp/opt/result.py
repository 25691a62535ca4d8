"""The result record of :func:`fxp.opt.optimize_bits` (scipy ``OptimizeResult`` shape)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["BitAllocation", "hardware_lines", "held_out_verdict", "split_lines",
           "weight_memory_bits"]


@dataclass
class BitAllocation:
    """Result of :func:`optimize_bits` (fields in the style of scipy's OptimizeResult).

    Attributes
    ----------
    success, status, message
        ``success`` is True when the SQNR measured on the held-out split is at
        least the target minus ``tolerance_db`` (0 by default) and every budget
        holds on the plan itself.  ``status``: ``optimal`` (met),
        ``target_not_met`` (held-out check failed), ``budget_exceeded``,
        ``not_held_out`` (no held-out samples: measured on calibration, never a
        success) or ``not_verified`` (``verify=False``).
    plan, widths
        The plan and its per-tensor widths (bits).
    predicted_sqnr_db, measured_sqnr_db : float
        Prediction (additive terms plus pairwise interactions, calibration
        split) and integer-engine measurement on the held-out split (dB).
    predicted_additive_db : float
        Lin's additive prediction alone.
    predicted_se_db, tensor_se_db
        Standard errors (dB) of the prediction and of each tensor's noise at
        its width, from per-batch estimates on the calibration split.
    splits : dict
        The calibration, selection and held-out splits (sizes, position ranges in the
        order, the order's seed, roles): :mod:`fxp.opt.splits`.
    solves : list of dict
        Every MILP solve: internal target, why, prediction, cost, the
        calibration-split SQNR where the calibration check measured the plan, the
        selection-split SQNR where the plan was measured there, and ``chosen`` on the
        plan each goal kept.
    selection_sqnr_db : float or None
        The final plan's SQNR on the selection split (not held out).
    calibration_sqnr_db : float or None
        The final plan's SQNR on the calibration split (integer engine; what the
        calibration check, :mod:`fxp.opt.measured_goal`, measured), None without it.
    calibration_se_db : float or None
        Its standard error (dB; the samples as independent draws,
        :func:`fxp.sim.sqnr_error.sqnr_standard_error_db`).
    confidence, margin_db : float
        The held-out margin's confidence (0: none) and the margin (dB) it asked of the final
        plan's calibration measurement (:func:`fxp.opt.measured_goal.held_out_margin_db`).
    selection_top1 : (float, float) or None
        Float and fixed top-1 on the selection split.
    tolerance_db : float
        Allowed shortfall on the held-out split (0 unless asked).
    total_time_s, tries
        Wall time of the whole call; for an accuracy-drop search
        (:func:`fxp.workflow.optimize_for_accuracy`) the total of every try,
        and ``tries`` lists each (target, drop, seconds).
    cost, cost_name
        The minimised cost's value and name (``weight_memory`` bits, ``dsp``
        slices, ``flash`` bytes, ...).
    target : {"fpga", "mcu"} or None
        The target profile (an MCU restricts the widths to its kernels).
    budgets : dict
        The hardware budgets given (figure -> limit).
    hardware : dict
        The plan's figures in every profile
        (:meth:`fxp.opt.hardware_model.HardwareModel.report`).
    acc_bits, acc_proven_bits : dict layer -> int
        Chosen accumulator widths and the narrowest that provably cannot
        overflow (equal unless ``acc_saturate`` narrowed them).
    acc_saturate : int or None
        Accumulators wider than this were narrowed to it, saturating.
    """

    success: bool
    status: str
    message: str
    plan: object
    widths: dict[str, int]
    predicted_sqnr_db: float
    measured_sqnr_db: float | None
    cost: float
    cost_name: str
    solver: str
    target_sqnr_db: float | None
    solve_time_s: float = 0.0
    total_time_s: float = 0.0
    float_top1: float | None = None
    fixed_top1: float | None = None
    n_eval: int = 0
    weight_memory_bits: int = 0
    acc_bits: dict[str, int] = field(default_factory=dict)
    iterations: int = 1
    correction_db: float = 0.0
    noise_table: object = field(default=None, repr=False)
    target: str | None = None
    budgets: dict[str, float] = field(default_factory=dict)
    hardware: dict = field(default_factory=dict)
    acc_proven_bits: dict[str, int] = field(default_factory=dict)
    acc_saturate: int | None = None
    splits: dict = field(default_factory=dict)
    solves: list[dict] = field(default_factory=list)
    selection_sqnr_db: float | None = None
    selection_top1: tuple[float, float] | None = None
    tolerance_db: float = 0.0
    predicted_additive_db: float | None = None
    predicted_se_db: float | None = None
    tensor_se_db: dict[str, float] = field(default_factory=dict)
    tries: list[dict] = field(default_factory=list)
    interactions: str = "check"  # "check", "milp" or "off": how the pair terms were used
    margin_se: float = 0.0  # standard errors the prediction must clear the target by
    bias_guard_bits: int | None = None  # bias LSB this far below the output's (None: F_x+F_w)
    calibration_sqnr_db: float | None = None
    calibration_se_db: float | None = None  # its standard error (samples as independent draws)
    confidence: float = 0.0  # held-out margin's confidence (0: none; fxp.opt.measured_goal)
    margin_db: float = 0.0  # the held-out margin of the final plan (dB)
    dithered_pairs: dict = field(default_factory=dict)  # measured, skipped (names), passes

    def __getitem__(self, key):
        return getattr(self, key)

    def table_rows(self) -> list[dict]:
        """Per tensor: kind, layer, width, kappa, predicted SQNR contribution."""
        rows = []
        nt = self.noise_table
        for i, t in enumerate(nt.tensors):
            b = self.widths[t.name]
            s = nt.sqnr_db[i, nt.widths.index(b)]
            rows.append({"tensor": t.name, "kind": t.kind, "layer": t.layer or "(input)",
                         "bits": b, "kappa": round(float(nt.kappa[i]), 2),
                         "sqnr_db": round(float(s), 2) if math.isfinite(s) else str(s),
                         "se_db": _num(self.tensor_se_db.get(t.name), 3),
                         "acc_bits": self.acc_bits.get(t.layer) if t.kind == "weight" else None})
        return rows

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "success", "status", "message", "widths", "predicted_sqnr_db", "measured_sqnr_db",
            "cost", "cost_name", "solver", "target_sqnr_db", "solve_time_s", "total_time_s",
            "float_top1", "fixed_top1", "n_eval", "weight_memory_bits", "acc_bits", "iterations",
            "correction_db", "target", "budgets", "hardware", "acc_proven_bits", "acc_saturate",
            "splits", "selection_sqnr_db", "selection_top1", "tolerance_db",
            "predicted_additive_db", "predicted_se_db", "interactions", "margin_se",
            "bias_guard_bits", "calibration_sqnr_db", "calibration_se_db", "confidence",
            "margin_db",
            "dithered_pairs")}
        d["held_out_sqnr_db"] = self.measured_sqnr_db
        d["n_solves"] = len(self.solves)
        d["internal_targets_db"] = [s["internal_target_db"] for s in self.solves]
        d["solves"] = [{k: _num(v, 4) for k, v in s.items()} for s in self.solves]
        d["tries"] = [{k: _num(v, 4) for k, v in s.items()} for s in self.tries]
        d["tensors"] = self.table_rows()
        for k, v in list(d.items()):
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = str(v)
        return d


def _num(v, digits: int):
    """JSON-safe number: rounded when finite, ``"inf"``/``"nan"`` as text, others as they are."""
    if isinstance(v, float):
        return round(v, digits) if math.isfinite(v) else str(v)
    return v


def held_out_verdict(measured: float | None, target_db: float | None, tolerance_db: float,
                     n_samples: int, where: str, n_solves: int) -> tuple[str, str]:
    """``(status, message)`` of a plan's final measurement (dB) on ``n_samples`` samples of
    ``where`` ("held-out", or the split measured when nothing was held out).

    ``optimal``: met (held-out SQNR >= target - ``tolerance_db``) or no target;
    ``target_not_met``; ``not_held_out`` (never a success); ``not_verified`` (no measurement).
    Shared by :func:`fxp.opt.optimize.optimize_bits` and
    :func:`fxp.opt.channel_optimize.optimize_channel_widths`."""
    tol = f" - tolerance {tolerance_db:g} dB" if tolerance_db else ""
    if measured is None:
        return "not_verified", "solved (not measured: verify=False)"
    if where != "held-out":
        return "not_held_out", f"measured {measured:.2f} dB on the {n_samples} samples of the " \
                               f"{where}"
    if target_db is None:
        return "optimal", f"measured {measured:.2f} dB on {n_samples} held-out samples"
    if measured >= float(target_db) - tolerance_db:
        return "optimal", (f"target met on the held-out split: {measured:.2f} dB >= "
                           f"{target_db:g} dB{tol} on {n_samples} samples ({n_solves} "
                           f"solve{'s' * (n_solves > 1)})")
    return "target_not_met", (f"target NOT met on the held-out split: {measured:.2f} dB < "
                              f"{target_db:g} dB{tol} on {n_samples} samples after {n_solves} "
                              "solves")


def weight_memory_bits(table, widths: dict[str, int]) -> int:
    """Weight memory of per-tensor widths: ``sum size * bits`` over weights (bits)."""
    return int(sum(t.size * widths[t.name] for t in table.tensors if t.kind == "weight"))


def hardware_lines(res: BitAllocation) -> list[str]:
    """Text lines: the plan's figures in every profile, and the budgets."""
    hw = res.hardware
    if not hw:
        return []
    f, m = hw["fpga"], hw["mcu"]
    cyc = "n/a (a layer has no MCU kernel for its widths)" if m["cycles"] is None \
        else f"{m['cycles']:,.0f}"
    fpga = (f"FPGA ({f['dsp_slice']}): {f['lut']:,} LUTs, {f['dsp']:,} DSP, {f['bram']:,} "
            f"BRAM18, area {f['area']:,.0f} LUT-eq") if f["lut"] is not None else \
        (f"FPGA: n/a (the input width of {hw['unmodelled_layers'][0]!r} and "
         f"{len(hw['unmodelled_layers']) - 1} more layers is not an optimizer variable)")
    lines = [fpga,
             (f"MCU: flash {m['flash_bytes']:,} bytes, peak activation RAM {m['ram_bytes']:,} "
              f"bytes (max live {m['max_live_bytes']:,}), cycles {cyc}")]
    if res.budgets:
        lines.append("budgets: " + ", ".join(f"{k} <= {v:,.10g}" for k, v in res.budgets.items()))
    if res.acc_saturate is not None:
        narrowed = [f"{k} {res.acc_proven_bits[k]}->{v}" for k, v in res.acc_bits.items()
                    if v < res.acc_proven_bits.get(k, v)]
        lines.append(f"accumulators saturate at {res.acc_saturate} bits: "
                     f"{', '.join(narrowed) or 'none narrowed'}")
    return lines


def data_lines(sp: dict) -> list[str]:
    """The three data splits (:meth:`fxp.opt.splits.Splits.to_dict`): the order they are cut
    from and each one's positions and size."""
    def rng(part):
        if "start" not in part:
            return f"{part['size']} samples of eval_data"
        if part["size"] == 0:
            return "none"
        where = "positions" if sp.get("seed") is not None else "samples"
        return f"{where} {part['start']}..{part['stop'] - 1} ({part['size']})"

    if not sp:
        return []
    lines = [f"data order: {sp['order']}"] if sp.get("seed") is not None else []
    lines.append(f"data: calibration {rng(sp['calibration'])}; selection "
                 f"{rng(sp['selection'])}; held-out {rng(sp['held_out'])}")
    return lines


def solve_lines(solves: list[dict]) -> list[str]:
    """The number of solves and their internal targets (dB)."""
    targets = [s["internal_target_db"] for s in solves if s["internal_target_db"] is not None]
    if not solves:
        return []
    return [f"solves: {len(solves)}" + (
        f", internal targets {', '.join(f'{t:.2f}' for t in targets)} dB" if targets else "")]


def margin_lines(confidence: float, margin_db: float) -> list[str]:
    """The held-out margin (``confidence`` 0: none) and its value for the chosen plan (dB)."""
    if not confidence:
        return []
    return [f"held-out margin: each plan measured on calibration must clear the target by the "
            f"one-sided {confidence:g} bound on the held-out measurement ({margin_db:.2f} dB "
            "for this plan)"]


def split_lines(res: BitAllocation) -> list[str]:
    """The three data splits, the solves and the SQNR on each split (optimized plans)."""
    lines = data_lines(res.splits) + solve_lines(res.solves)
    se = "" if res.predicted_se_db is None else f" +- {res.predicted_se_db:.2f}"
    add = "" if res.predicted_additive_db is None else \
        f" (additive alone {res.predicted_additive_db:.2f} dB)"
    mode = {"milp": "in the MILP", "check": "checked after each solve", "off": "not used"}
    lines.append(f"predicted SQNR {res.predicted_sqnr_db:.2f}{se} dB on calibration{add}; "
                 f"pairwise interactions {mode.get(res.interactions, res.interactions)}"
                 + (f", margin {res.margin_se:g} standard errors" if res.margin_se else ""))
    lines += margin_lines(res.confidence, res.margin_db)
    dp = res.dithered_pairs
    if dp:
        passes = "" if dp.get("passes") is None else f" ({dp['passes']} fake-quant passes)"
        skipped = dp.get("skipped") or []
        left = "" if not skipped else (
            f", {len(skipped)} past the pass budget kept the clean inner product: "
            + ", ".join("/".join(ij) for ij in skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
        lines.append(f"dithered pairs: {dp['measured']} measured{passes}{left}")
    guard = res.bias_guard_bits
    lines.append("biases: " + ("at the products' LSB (F_x + F_w)" if guard is None
                               else f"at least {guard} bits below each output LSB"))
    sel = "not measured" if res.selection_sqnr_db is None else f"{res.selection_sqnr_db:.2f} dB"
    held = "not measured" if res.measured_sqnr_db is None else f"{res.measured_sqnr_db:.2f} dB"
    cal = ("" if res.calibration_sqnr_db is None
           else f"calibration {res.calibration_sqnr_db:.2f} dB"
           + ("" if res.calibration_se_db is None or not math.isfinite(res.calibration_se_db)
              else f" (standard error {res.calibration_se_db:.2f} dB)") + ", ")
    lines.append(f"measured SQNR (integer engine): {cal}selection {sel}, held-out {held}")
    return lines
