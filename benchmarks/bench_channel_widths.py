"""vgg7: weight memory of per-channel weight widths vs the best per-layer plan, at equal accuracy.

Run (from the repository root; about 10 minutes on 2 cores)::

    .venv/bin/python benchmarks/bench_channel_widths.py [--groups G] [--targets 10,12,14]

Same split as ``reports/seed003_lin`` (mnist5k: the first 1,000 images calibrate and
measure the noise, the other 4,000 are held out).  The per-channel noise is measured once
(:func:`fxp.opt.channel_noise.measure_channel_noise`, 64 images; activations on 256 images),
then for each SQNR target the exact MILP
(:func:`fxp.opt.channel_optimize.optimize_channel_widths`, its plan as solved: the target is
only a knob of the sweep) gives the cheapest per-channel widths; every plan runs in the
integer engine on the 4,000 held-out images.  The baseline is the committed, engine-verified
per-layer result of ``reports/seed003_lin/results.json`` on the same split (the cheapest
per-layer plan and the cheapest uniform plan whose top-1 is within 0.2 points of float;
``--recompute-baseline`` runs :func:`fxp.workflow.optimize_for_accuracy` again instead).
Printed: the cheapest per-channel plan within 0.2 points of float, its weight bytes against
the baseline's, and the MILP's size and solve time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fxp import workflow as fw
from fxp.opt.channel_noise import measure_channel_noise
from fxp.opt.channel_optimize import optimize_channel_widths
from fxp.opt.channel_widths import build_channel_problem, solve_channel_milp
from fxp.opt.noise import measure_noise, quantizable_tensors

DROP = 0.2


def baseline(graph, data, calib: int, recompute: bool) -> dict:
    if recompute:
        res = fw.optimize_for_accuracy(graph, data, DROP, calib=calib)
        return {"weight_bytes": res.weight_memory_bits // 8, "fixed_top1": res.fixed_top1,
                "float_top1": res.float_top1, "source": "optimize_for_accuracy (recomputed)"}
    r = json.loads((ROOT / "reports/seed003_lin/results.json").read_text())["vgg7"]["accuracy"]
    return {**{k: r["optimized"][k] for k in ("weight_bytes", "fixed_top1", "float_top1")},
            "uniform_bytes": r["best_uniform"]["weight_bytes"],
            "source": "reports/seed003_lin/results.json"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=None, help="channel groups per layer")
    ap.add_argument("--targets", default="9,10,11,12,13,14,15,16,18,20")
    ap.add_argument("--calib", type=int, default=1000)
    ap.add_argument("--recompute-baseline", action="store_true")
    args = ap.parse_args(argv)
    graph = fw.load_model("vgg7")
    data = fw.load_data("mnist5k", graph)
    cx = data.x[:args.calib]
    cal = fw.Data(cx, data.y[:args.calib], f"mnist5k[:{args.calib}]")
    held = fw.Data(data.x[args.calib:], data.y[args.calib:], f"mnist5k[{args.calib}:]")
    base = baseline(graph, data, args.calib, args.recompute_baseline)
    t0 = time.perf_counter()
    noises = measure_channel_noise(graph, cx, n_measure=64)
    acts = [t.name for t in quantizable_tensors(graph) if t.kind == "act"]
    table = measure_noise(graph, cx, n_measure=256, tensors=acts)
    print(f"noise measured in {time.perf_counter() - t0:.0f} s; first-order check per layer "
          "(measured - predicted dB at widths 2..10):")
    for name, cn in noises.items():
        print(f"  {name}: " + ", ".join(f"{b}:{v:+.1f}" for b, v in cn.check_db().items()))
    act_noise = {t.name: {b: table.noise(t.name, b) for b in table.widths}
                 for t in table.tensors}
    p = build_channel_problem(noises, act_noise, target_db=15.0, channel_groups=args.groups)
    t1 = time.perf_counter()
    solve_channel_milp(p)
    n_bin = sum(len(w) for w in p.widths)
    print(f"MILP at 15 dB: {len(p.items)} items, {n_bin} binaries before the dominance filter, "
          f"solved in {time.perf_counter() - t1:.2f} s")
    rows, best = [], None
    for target in [float(t) for t in args.targets.split(",")]:
        # the target is only a knob of the sweep (the plan is picked by held-out top-1), so
        # the MILP's plan is measured as solved: no calibration check, no selection split
        r = optimize_channel_widths(graph, cal, target, noises=noises, act_table=table,
                                    calib=args.calib, selection=0, eval_data=held,
                                    max_refine=0, channel_groups=args.groups, split_seed=None,
                                    calibration_check=False)
        drop = 100 * (r.float_top1 - r.fixed_top1)
        rows.append((target, r.measured_sqnr_db, r.fixed_top1, drop, r.weight_memory_bits // 8,
                     r.solve_time_s))
        print(f"target {target:5.1f} dB: measured {r.measured_sqnr_db:6.2f} dB, top-1 "
              f"{100 * r.fixed_top1:.2f}% (float {100 * r.float_top1:.2f}%, drop {drop:.2f}), "
              f"weights {r.weight_memory_bits // 8:,} B, MILP {r.solve_time_s:.2f} s",
              flush=True)
        if drop <= DROP + 1e-9 and (best is None or rows[-1][4] < best[4]):
            best = rows[-1]
    print(f"baseline ({base['source']}): per-layer {base['weight_bytes']:,} B at "
          f"{100 * base['fixed_top1']:.2f}% (float {100 * base['float_top1']:.2f}%)"
          + (f"; best uniform {base['uniform_bytes']:,} B" if "uniform_bytes" in base else ""))
    if best is None:
        print(f"no per-channel plan within {DROP} points of float among the targets")
        return 1
    red = 1 - best[4] / base["weight_bytes"]
    print(f"per-channel{'' if args.groups is None else f' ({args.groups} groups/layer)'}: "
          f"{best[4]:,} B at {100 * best[2]:.2f}% ({best[0]:g} dB target): {100 * red:.1f}% "
          f"less weight memory than the per-layer plan"
          + (f", {100 * (1 - best[4] / base['uniform_bytes']):.1f}% less than uniform"
             if "uniform_bytes" in base else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
