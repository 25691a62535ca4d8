"""``fxp plan MODEL --data D --target-sqnr T --per-channel-weights [--channel-groups G]``.

Parses nothing itself: :func:`fxp.cli._plan_optimized` hands over the parsed
arguments; this calls :func:`fxp.opt.channel_optimize.optimize_channel_widths` (the three
splits of :mod:`fxp.opt.splits`, the calibration check and its held-out margin), writes
the plan and prints (or returns as JSON) the result: the splits, every solve and the
SQNR measured on each split.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

__all__ = ["plan_channel_widths"]


def plan_channel_widths(args: argparse.Namespace, graph, data) -> int:
    """Exit code 0 when the plan meets the target on the held-out split, else 1."""
    from fxp.cli_args import hardware_options
    from fxp.opt.channel_optimize import optimize_channel_widths
    from fxp.plan.io import plan_to_dict, save_plan

    calib = 1000 if args.calib is None else args.calib
    opts = {k: v for k, v in hardware_options(args).items()
            if k in ("calibration_check", "confidence", "split_seed")}
    res = optimize_channel_widths(graph, data, args.target_sqnr, calib=calib,
                                  selection=args.selection, tolerance_db=args.tolerance_db,
                                  channel_groups=args.channel_groups, rounding=args.rounding,
                                  method=args.method, **opts)
    if res.plan is not None and args.out is not None:
        save_plan(res.plan, args.out)
    if args.json:
        out = res.to_dict()
        if res.plan is not None:
            out["plan"] = plan_to_dict(res.plan)
        print(json.dumps(out, indent=2))
        return 0 if res.success else 1
    if res.plan is None:
        print(f"no per-channel plan: {res.message}")
        return 1
    print(f"per-channel weight widths for {args.target_sqnr:g} dB output SQNR: "
          f"{res.n_variables} binaries, MILP {res.solve_time_s:.2f} s, "
          f"{res.total_time_s:.1f} s in all")
    for name, bits in res.channel_bits.items():
        counts = np.bincount(bits)
        hist = ", ".join(f"{b} bits: {int(n)}" for b, n in enumerate(counts) if n)
        print(f"  {name}: {len(bits)} channels ({hist})")
    for line in _split_lines(res):
        print(line)
    print(res.message)
    if res.fixed_top1 is not None:
        print(f"top-1 float {100 * res.float_top1:.2f}%, fixed {100 * res.fixed_top1:.2f}%; "
              f"weight memory {res.weight_memory_bits / 8:,.0f} bytes")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0 if res.success else 1


def _split_lines(res) -> list[str]:
    """The splits, the solves, the held-out margin and the SQNR on each split."""
    from fxp.opt.result import data_lines, margin_lines, solve_lines

    def db(v):
        return "not measured" if v is None else f"{v:.2f} dB"

    lines = (data_lines(res.splits) + solve_lines(res.solves)
             + margin_lines(res.confidence, res.margin_db))
    cal = db(res.calibration_sqnr_db) + (
        "" if res.calibration_se_db is None else f" (standard error {res.calibration_se_db:.2f}"
                                                 " dB)")
    lines.append(f"predicted SQNR {res.predicted_sqnr_db:.2f} dB; measured (integer engine): "
                 f"calibration {cal}, selection {db(res.selection_sqnr_db)}, held-out "
                 f"{db(res.measured_sqnr_db)}")
    return lines
