"""``fxp plan``: the handler and its printing (post-training, optimized, hls4ml and .tflite plans)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from fxp.cli_args import (
    TARGET_DEFAULT_COST, check_hardware_options, hardware_options, prepare_output,
)
from fxp.cli_tools import _print_table
from fxp.errors import BinaryInputWarning, PlanError


def _cmd_plan(args: argparse.Namespace) -> int:
    if args.target_sqnr is not None and args.max_accuracy_drop is not None:
        raise PlanError("give either --target-sqnr or --max-accuracy-drop, not both")
    if args.binary and (args.target_sqnr is not None or args.max_accuracy_drop is not None):
        raise PlanError("--binary cannot be combined with --target-sqnr (the optimizer plans "
                        "fixed-point widths only)")
    optimized = args.target_sqnr is not None or args.max_accuracy_drop is not None or \
        bool(hardware_options(args)["budgets"])
    if args.from_hls4ml is not None and (optimized or args.binary):
        raise PlanError("--from-hls4ml reads the types from the config; it takes no "
                        "--target-sqnr, --max-accuracy-drop, --max-* budgets or --binary")
    check_hardware_options(args, optimized)
    if args.out is not None:
        prepare_output(args.out, folder=False)
    from fxp import workflow as fw

    graph = fw.load_model(args.model)
    if args.from_hls4ml is not None:  # the plan hls4ml builds from its config (issue 15)
        from fxp.plan.from_hls4ml import load_hls4ml_config, plan_from_hls4ml
        return _print_plan(args, plan_from_hls4ml(graph, load_hls4ml_config(args.from_hls4ml)))
    plan = fw.embedded_plan(graph)
    if plan is not None and args.target_sqnr is not None and \
            str(args.model).lower().endswith(".tflite"):  # which layers need int16x8
        _no_cluster(args, "choosing a .tflite model's int16x8 layers (no noise table)")
        from fxp.cli_tflite import plan_tflite_int16
        return plan_tflite_int16(args, fw, graph, plan)
    if plan is not None:  # a quantized model: write out the plan it carries
        if optimized or args.binary:
            raise PlanError(f"{args.model[:200]!r} is a quantized model and carries its own "
                            f"plan; --max-accuracy-drop, --max-* budgets and --binary are for "
                            f"float models (--target-sqnr: float models, and a .tflite to "
                            f"choose its int16x8 layers)")
        return _print_plan(args, plan)
    if args.data is None:
        raise PlanError(f"{args.model[:200]!r} is a float model: --data (calibration data) is "
                        f"required to make a plan")
    data = fw.load_data(args.data, graph, limit=args.limit)
    if optimized:
        return _plan_optimized(args, fw, graph, data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BinaryInputWarning)
        plan = _make_plan(fw, graph, data, args)
    for w in caught:  # one line each on stderr
        if issubclass(w.category, BinaryInputWarning):
            print(f"fxp plan: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return _print_plan(args, plan)


def _make_plan(fw, graph, data, args: argparse.Namespace):
    return fw.make_plan(graph, data, bits=args.bits, weight_bits=args.weight_bits,
                        act_bits=args.act_bits, acc_bits=args.acc_bits, scheme=args.scheme,
                        granularity=args.granularity, method=args.method,
                        rounding=args.rounding,
                        calib=512 if args.calib is None else args.calib,
                        binary_layers=_binary_names(args.binary),
                        alpha_bits=None if args.alpha_bits == 0 else args.alpha_bits,
                        binary_output=args.binary_output, pad_value=args.pad_value,
                        weight_method="minmax" if args.weight_range is None
                        else args.weight_range)


def _print_plan(args: argparse.Namespace, plan) -> int:
    from fxp.plan.io import plan_to_dict, save_plan

    if args.out is not None:
        save_plan(plan, args.out)
    if args.json:
        print(json.dumps(plan_to_dict(plan), indent=2))
        return 0
    def fmt(spec):
        if spec is None:
            return "-"
        if spec.is_binary:
            return "binary"
        return f"shift {spec.fmt}" if spec.is_shift else str(spec.fmt)

    rows = [{"layer": lp.name, "weight": "float" if lp.float_layer else fmt(lp.weight),
             "output": "float" if lp.float_layer else fmt(lp.output),
             "acc": None if lp.float_layer else lp.acc_bits,
             "requant": None if lp.float_layer else lp.requant.value} for lp in plan.layers]
    print(f"plan {plan.name}: input {plan.input.fmt}")
    _print_table(rows, [("layer", "layer"), ("weight", "weight"), ("output", "output"),
                        ("acc", "acc bits"), ("requant", "requant")])
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


def _binary_names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _no_cluster(args: argparse.Namespace, what: str) -> None:
    """Refuse ``--scheduler`` / ``--workers`` where no noise table is measured (never ignore)."""
    given = [o for o, v in (("--scheduler", args.scheduler), ("--workers", args.workers))
             if v is not None]
    if given:
        raise PlanError(f"{', '.join(given)} run the noise table of --target-sqnr / "
                        f"--max-accuracy-drop / budget plans on Dask; {what} has none to run")


def _plan_optimized(args: argparse.Namespace, fw, graph, data) -> int:
    if args.per_channel_weights:  # fxp/cli_channel.py
        _no_cluster(args, "--per-channel-weights")
        from fxp.cli_channel import plan_channel_widths
        return plan_channel_widths(args, graph, data)
    from fxp.dist.cluster import open_client
    from fxp.plan.io import plan_to_dict, save_plan

    calib = 1000 if args.calib is None else args.calib
    common = dict(cost=args.cost or TARGET_DEFAULT_COST[args.target], min_bits=args.min_bits,
                  max_bits=args.max_bits, calib=calib, rounding=args.rounding,
                  selection=args.selection, tolerance_db=args.tolerance_db,
                  method=args.method, **hardware_options(args),
                  weight_method="sqnr" if args.weight_range is None else args.weight_range)
    with open_client(args.scheduler, args.workers) as client:  # None: in-process
        # the client measures the noise table (fxp/dist/noise.py); solving stays here
        if args.max_accuracy_drop is not None:
            res = fw.optimize_for_accuracy(graph, data, args.max_accuracy_drop, client=client,
                                           **common)
        else:
            res = fw.optimize_plan(graph, data, args.target_sqnr, client=client, **common)
    if args.out is not None:
        save_plan(res.plan, args.out)
    if args.json:
        print(json.dumps({**res.to_dict(), "plan": plan_to_dict(res.plan)}, indent=2))
        return 0 if res.success else 1
    goal = "the best SQNR within the budgets" if res.target_sqnr_db is None else \
        f"{res.target_sqnr_db:g} dB output SQNR"
    tries = res.tries
    timing = (f"{len(tries)} tries, {res.total_time_s:.1f} s in all: "
              + ", ".join(f"{t['target_sqnr_db']:g} dB {t['time_s']:.1f} s" for t in tries)
              if tries else f"{res.solve_time_s:.2f} s to solve, {res.total_time_s:.1f} s in all")
    print(f"optimized plan for {goal}, cost {res.cost_name} = {res.cost:,.10g}"
          f"{f' (target {res.target})' if res.target else ''} ({res.solver}, {timing})")
    _print_table(res.table_rows(), [("tensor", "tensor"), ("kind", "kind"), ("layer", "layer"),
                                    ("bits", "bits"), ("kappa", "kappa dB/bit"),
                                    ("sqnr_db", "alone dB"), ("se_db", "+- dB"),
                                    ("acc_bits", "acc bits")])
    from fxp.opt.result import split_lines

    for line in split_lines(res):
        print(line)
    print(f"{res.status}: {res.message}")
    if res.fixed_top1 is not None:
        print(f"top-1 float {100 * res.float_top1:.2f}%, fixed {100 * res.fixed_top1:.2f}%; "
              f"weight memory {res.weight_memory_bits / 8:,.0f} bytes")
    from fxp.opt.result import hardware_lines

    for line in hardware_lines(res):
        print(line)
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0 if res.success else 1
