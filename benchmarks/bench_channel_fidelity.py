"""Per-channel weight widths (``fxp plan --per-channel-weights``) on the optimizer's splits.

Run: ``python benchmarks/bench_channel_fidelity.py [--models mnist_cnn,lenet5,fashion_cnn]
[--targets 10:40:2] [--confidences 0.95,0] [--json FILE]``

Per model, the splits ``fxp plan`` cuts (:func:`bench_fidelity.model_splits`: 5,000 samples in
the order shuffled with seed 0; calibration 1,000, selection 1,000, held-out 3,000).  The
per-channel weight noise and the activation noise table are measured once on the calibration
split, as :func:`fxp.opt.channel_optimize.optimize_channel_widths` measures them, and each
target is then planned under each setting:

* ``confidence P``: the default search (calibration check with the held-out margin of
  confidence ``P``, selection re-solves);
* ``unchecked``: the MILP's plan as solved at the target, nothing measured before the held-out
  split (what ``--per-channel-weights`` returned before the calibration check).

Each row gives the **first plan** (the search on the calibration split alone, before any
selection measurement) and the final plan, both measured by the integer engine on the whole
held-out split, and whether each meets the target there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_fidelity as bf


def _targets(text: str) -> list[float]:
    if ":" in text:
        a, b, s = (float(v) for v in text.split(":"))
        return [a + k * s for k in range(int(round((b - a) / s)) + 1)]
    return [float(v) for v in text.split(",")]


def run_target(g, d, target, noises, table, setting):
    """One row: the first and final plans of ``setting`` at ``target``."""
    from fxp.opt.channel_optimize import optimize_channel_widths
    from fxp.opt.selection_check import RAISE_REASON

    kw = dict(noises=noises, act_table=table)
    if setting == "unchecked":
        kw.update(calibration_check=False, max_refine=0)
    else:
        kw.update(confidence=float(setting))
    t0 = time.perf_counter()
    final = optimize_channel_widths(g, d, target, **kw)
    seconds = time.perf_counter() - t0
    first = final
    if any(s["reason"] == RAISE_REASON for s in final.solves):
        first = optimize_channel_widths(g, d, target, **{**kw, "max_refine": 0})
    row = {"target_db": target, "setting": setting, "status": final.status,
           "seconds": round(seconds, 1)}
    for name, r in (("first", first), ("final", final)):
        row[name] = {"weight_bits": r.weight_memory_bits, "predicted_db": r.predicted_sqnr_db,
                     "calibration_db": r.calibration_sqnr_db,
                     "calibration_se_db": r.calibration_se_db, "margin_db": r.margin_db,
                     "selection_db": r.selection_sqnr_db, "held_out_db": r.measured_sqnr_db,
                     "met": r.measured_sqnr_db is not None and r.measured_sqnr_db >= target,
                     "solves": len(r.solves), "n_eval": r.n_eval}
    return row


def main(argv=None) -> int:
    from fxp.opt.channel_noise import measure_channel_noise
    from fxp.opt.noise import measure_noise, quantizable_tensors

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mnist_cnn,lenet5,fashion_cnn")
    ap.add_argument("--targets", default="10:40:2")
    ap.add_argument("--confidences", default="0.95,0")
    ap.add_argument("--unchecked", choices=["on", "off"], default="on")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    settings = [c.strip() for c in args.confidences.split(",") if c.strip()]
    settings += ["unchecked"] if args.unchecked == "on" else []
    out = []
    for model in args.models.split(","):
        g, d, sp, ci, _ = bf.model_splits(model, 0)
        cx = d.x[ci]
        t0 = time.perf_counter()
        noises = measure_channel_noise(g, cx, widths=range(2, 11), n_measure=64)
        acts = [t.name for t in quantizable_tensors(g) if t.kind == "act"]
        table = measure_noise(g, cx, widths=range(2, 17), n_measure=256, tensors=acts)
        print(f"{model}: noise measured on calibration in {time.perf_counter() - t0:.0f} s; "
              f"{sp.describe()}", flush=True)
        rows = []
        for target in _targets(args.targets):
            for setting in settings:
                r = run_target(g, d, target, noises, table, setting)
                rows.append(r)
                f, z = r["first"], r["final"]
                cal = ("" if f["calibration_db"] is None else
                       f", calibration {f['calibration_db']:.2f} dB (se "
                       f"{f['calibration_se_db']:.2f}, margin {f['margin_db']:.2f})")
                print(f"  {model} {target:g} dB, {setting}: first {f['weight_bits']} bits"
                      f"{cal}, held-out {f['held_out_db']:.2f} dB "
                      f"({'met' if f['met'] else 'MISSED'}); final {z['weight_bits']} bits "
                      f"{z['held_out_db']:.2f} dB ({'met' if z['met'] else 'MISSED'}); "
                      f"{r['seconds']:.0f} s", flush=True)
        summary = {}
        for setting in settings:
            mine = [r for r in rows if r["setting"] == setting]
            summary[setting] = {
                "first_met": f"{sum(r['first']['met'] for r in mine)}/{len(mine)}",
                "final_met": f"{sum(r['final']['met'] for r in mine)}/{len(mine)}",
                "missed_first": [r["target_db"] for r in mine if not r["first"]["met"]]}
        print(f"  {model}: {summary}", flush=True)
        out.append({"model": model, "splits": sp.to_dict(), "rows": rows, "summary": summary})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
