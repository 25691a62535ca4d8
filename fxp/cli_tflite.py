"""``fxp plan m.tflite --target-sqnr T --data D``: which layers need int16x8 (issue 16)."""

from __future__ import annotations

import argparse
import json

from fxp.cli_tools import _print_table
from fxp.errors import PlanError


def plan_tflite_int16(args: argparse.Namespace, fw, graph, plan) -> int:
    """Run :func:`fxp.opt.tflite_int16.explore_int16x8` and print or save its plan."""
    from fxp.opt.tflite_int16 import explore_int16x8
    from fxp.plan.io import plan_to_dict, save_plan

    if args.max_accuracy_drop is not None or args.binary:
        raise PlanError(f"{args.model[:200]!r}: a .tflite takes --target-sqnr (which layers "
                        f"need int16x8); --max-accuracy-drop and --binary are for float models")
    if args.data is None:
        raise PlanError(f"{args.model[:200]!r}: --data is required to measure the int8/int16x8 "
                        f"choices")
    data = fw.load_data(args.data, graph, limit=args.limit)
    selection = 256 if args.calib is None else args.calib
    res = explore_int16x8(graph, plan, data.x, data.y, args.target_sqnr, selection=selection)
    if args.out is not None:
        save_plan(res.plan, args.out)
    if args.json:
        print(json.dumps({**res.to_dict(), "plan": plan_to_dict(res.plan)}, indent=2))
        return 0 if res.met else 1
    (s0, s1), (h0, h1) = res.selection, res.held_out
    print(f"int8/int16x8 plan for {res.target_sqnr_db:g} dB output SQNR: "
          f"{len(res.choices)} choices measured on samples {s0}..{s1 - 1} (selection), "
          f"the cheapest that meets the target checked on samples {h0}..{h1 - 1} (held out)")
    rows = [{"int16x8": ", ".join(c.wide) or "(none: the model as it is)",
             "ram": c.ram_bytes, "flash": c.flash_bytes, "sqnr": f"{c.selection_sqnr_db:.2f}",
             "pick": "<-" if c is res.chosen else ""} for c in res.choices]
    _print_table(rows, [("int16x8", "int16x8 layers"), ("ram", "peak RAM B"),
                        ("flash", "flash B"), ("sqnr", "selection dB"), ("pick", "")])
    _print_table(res.layers, [("layer", "layer"), ("type", "type"),
                              ("quantize_before", "QUANTIZE before it")])
    status = "met" if res.met else "MISSED"
    print(f"held-out SQNR {res.held_out_sqnr_db:.2f} dB ({status}); top-1 float "
          f"{100 * res.float_top1:.2f}%, fixed {100 * res.held_out_top1:.2f}% "
          f"({res.total_time_s:.1f} s)")
    for note in res.notes:
        print(f"note: {note}")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0 if res.met else 1
