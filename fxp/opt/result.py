"""The result record of :func:`fxp.opt.optimize_bits` (scipy ``OptimizeResult`` shape)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["BitAllocation", "hardware_lines", "weight_memory_bits"]


@dataclass
class BitAllocation:
    """Result of :func:`optimize_bits` (fields in the style of scipy's OptimizeResult).

    Attributes
    ----------
    success, status, message
        ``success`` is True when the measured SQNR is within 0.5 dB of the
        target and every budget holds on the plan itself.
    plan, widths
        The plan and its per-tensor widths (bits).
    predicted_sqnr_db, measured_sqnr_db : float
        Additive prediction and integer-engine measurement (dB).
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
                         "acc_bits": self.acc_bits.get(t.layer) if t.kind == "weight" else None})
        return rows

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "success", "status", "message", "widths", "predicted_sqnr_db", "measured_sqnr_db",
            "cost", "cost_name", "solver", "target_sqnr_db", "solve_time_s", "total_time_s",
            "float_top1", "fixed_top1", "n_eval", "weight_memory_bits", "acc_bits", "iterations",
            "correction_db", "target", "budgets", "hardware", "acc_proven_bits", "acc_saturate")}
        d["tensors"] = self.table_rows()
        for k, v in list(d.items()):
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = str(v)
        return d


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
