"""``fxp plan MODEL --data D --target-sqnr T --per-channel-weights [--channel-groups G]``.

Parses nothing itself: :func:`fxp.cli._plan_optimized` hands over the parsed
arguments; this calls :func:`fxp.opt.channel_widths.optimize_channel_widths`,
writes the plan and prints (or returns as JSON) the result.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

__all__ = ["plan_channel_widths"]


def plan_channel_widths(args: argparse.Namespace, graph, data) -> int:
    """Exit code 0 when the plan meets the target (measured on held-out data), else 1."""
    from fxp.opt.channel_widths import optimize_channel_widths
    from fxp.plan.io import plan_to_dict, save_plan

    calib = 1000 if args.calib is None else args.calib
    res = optimize_channel_widths(graph, data, args.target_sqnr, calib=calib,
                                  channel_groups=args.channel_groups, rounding=args.rounding,
                                  method=args.method)
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
    meas = "n/a" if res.measured_sqnr_db is None else f"{res.measured_sqnr_db:.2f} dB"
    print(f"predicted SQNR {res.predicted_sqnr_db:.2f} dB, measured {meas} ({res.message})")
    if res.fixed_top1 is not None:
        print(f"top-1 float {100 * res.float_top1:.2f}%, fixed {100 * res.fixed_top1:.2f}%; "
              f"weight memory {res.weight_memory_bits / 8:,.0f} bytes")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0 if res.success else 1
