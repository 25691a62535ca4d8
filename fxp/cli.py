"""The ``fxp`` command line: thin handlers over the library.

Every handler parses its arguments, calls one library function, prints or
writes, and returns an exit code.  Numeric options are typed with their ranges
(:mod:`fxp.cli_args`): a bad value is a one-line usage error, exit code 2.  Any
:class:`~fxp.errors.FxpError`, an :class:`OSError` that escaped a reader or
writer, or a :class:`MemoryError` becomes one line on stderr and exit code 2
(``KeyboardInterrupt``: 130); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from fxp.cli_args import (
    PLAN_COSTS, Parser, add_cluster_options, add_hardware_options, bits,
    finite_float, int_range, positive_int, prepare_output, run_handler, width_list,
)
from fxp.cli_tools import (
    _cmd_bench, _cmd_deploy, _cmd_format, _cmd_quantize, _cmd_sweep, _cmd_train,
    _print_table,
)
from fxp.cli_plan import _cmd_plan
from fxp.errors import PlanError

EXAMPLES = """examples:
  fxp inspect mnist_cnn                           layers, shapes, parameters, MACs
  fxp plan mnist_cnn --data mnist5k --bits 8 --out plan.json
  fxp simulate mnist_cnn --plan plan.json --data mnist5k --limit 1000
  fxp export golden mnist_cnn --plan plan.json --data mnist5k -n 4 --out golden/
  fxp export hls4ml mnist_cnn --plan plan.json --out hls4ml_config.json
  fxp export c mnist_cnn --plan plan.json --out mnist_cnn_fxp.h
  fxp export qonnx mnist_cnn --plan plan.json --out mnist_cnn_q.onnx
  fxp simulate q.onnx --data mnist5k --float model.onnx   an onnxruntime-quantized model
  fxp plan q.onnx --out p.json                    the plan a quantized model carries
  fxp bench mnist_cnn --batch-size 256            images/s of the engines, as ratios
  fxp format "ap_fixed<8,3>"                      describe a fixed-point format
  fxp quantize "fixed<8,4>" 0.3 -1.7 --rounding half_even --overflow saturate
"""


def _cmd_inspect(args: argparse.Namespace) -> int:
    from fxp import workflow as fw
    from fxp.report.mcu import model_resources

    graph = fw.load_model(args.model, runtime=args.runtime)
    rows = fw.inspect_model(graph)
    mcu = model_resources(graph, fw.embedded_plan(graph), args.model)
    if args.json:
        print(json.dumps({"model": graph.name, "layers": rows, "mcu": _mcu_json(mcu),
                          **_runtime_json(graph)}, indent=2))
        return 0
    print(f"model {graph.name}: input {list(graph.input_shapes[graph.inputs[0]][1:])}, "
          f"{sum(r['params'] for r in rows):,} parameters, {sum(r['macs'] for r in rows):,} MACs")
    _print_runtime(graph)
    _print_table(rows, [("name", "layer"), ("op", "op"), ("output_shape", "output"),
                        ("params", "params"), ("macs", "MACs"), ("w_min", "w min"),
                        ("w_max", "w max"), ("w_std", "w std"), ("w_kurtosis", "kurtosis")])
    _print_mcu(mcu)
    return 0


def _runtime_json(graph) -> dict:
    """``{"runtime": name, "runtime_notes": [...]}`` of a ``.tflite`` model, else ``{}``."""
    from fxp.frontends.tflite_runtime import RUNTIME_KEY, runtime_notes

    name = graph.metadata.get(RUNTIME_KEY)
    return {} if name is None else {"runtime": name, "runtime_notes": runtime_notes(graph)}


def _print_runtime(graph) -> None:
    """The runtime profile of a ``.tflite`` model (fxp.frontends.tflite_runtime), one line each."""
    for line in _runtime_json(graph).get("runtime_notes", []):
        print(line)


def _mcu_json(mcu) -> dict:
    """The ``mcu`` entry of ``--json`` output: resources, or why there are none."""
    res, reason = mcu
    return res.to_dict() if res is not None else {"unavailable": reason}


def _print_mcu(mcu) -> None:
    """MCU resources (fxp.report.mcu) after a command's own output."""
    from fxp.report.mcu import COLUMNS, layer_rows, summary_lines

    res, reason = mcu
    if res is None:
        print(f"\nMCU resources: not available ({reason})")
        return
    print("\n" + "\n".join(summary_lines(res)))
    _print_table(layer_rows(res), COLUMNS)


def _model_and_plan(args: argparse.Namespace):
    """``(fw, graph, plan)``: ``--plan`` if given, else the plan a quantized model carries."""
    from fxp import workflow as fw
    from fxp.plan.io import load_plan

    plan = load_plan(args.plan) if args.plan is not None else None  # fail fast
    graph = fw.load_model(args.model, runtime=getattr(args, "runtime", None))
    return fw, graph, plan if plan is not None else fw.model_plan(graph, None, args.model)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from fxp.report.mcu import model_resources

    fw, graph, plan = _model_and_plan(args)
    data = fw.load_data(args.data, graph, limit=args.limit)
    from fxp.dist.cluster import open_client

    with open_client(args.scheduler, args.workers) as client:  # None: in-process
        if client is None:
            rep = fw.run_simulation(graph, plan, data, batch_size=args.batch_size,
                                    progress=not args.json,
                                    method="loop" if args.exact else "auto",
                                    per_channel=args.per_channel)
        else:
            from fxp.dist.simulate import simulate_source

            rep = simulate_source(graph, plan, data.x, data.y, client=client,
                                  batch_size=args.batch_size,
                                  batches_per_task=args.batches_per_task,
                                  model_name=graph.name, data_name=data.name,
                                  progress=not args.json,
                                  method="loop" if args.exact else "auto",
                                  per_channel=args.per_channel)
    mcu = model_resources(graph, plan, args.model if args.plan is None else None)
    dep = None
    if args.float is not None:
        if fw.embedded_plan(graph) is None:
            raise PlanError(f"--float compares a quantized ONNX model with its float source; "
                            f"{args.model[:200]!r} is not a quantized model")
        dep = fw.float_departure(graph, plan, args.float, data, batch_size=args.batch_size)
    if args.json:
        out = {**rep.to_dict(), "mcu": _mcu_json(mcu), **_runtime_json(graph)}
        if dep is not None:
            out["float_departure"] = {**dep, "rows": [
                {**r, "sqnr_db": r["sqnr_db"] if abs(r["sqnr_db"]) != float("inf")
                 else str(r["sqnr_db"])} for r in dep["rows"]]}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{rep.model} with plan {rep.plan} on {rep.data} ({rep.n} images)")
    if args.plan is None:
        _print_runtime(graph)
    print(f"  float top-1 {rep.float_top1:.4f}  fixed top-1 {rep.fixed_top1:.4f}  "
          f"top-1 agreement {rep.agreement:.4f}  output SQNR {rep.output_sqnr_db:.2f} dB"
          + ("" if rep.output_sqnr_se_db != rep.output_sqnr_se_db  # nan: one sample
             else f" (standard error {rep.output_sqnr_se_db:.2f} dB)"))
    print(f"  float top-5 {rep.float_top5:.4f}  fixed top-5 {rep.fixed_top5:.4f}")
    from dataclasses import asdict

    _print_table([asdict(r) for r in rep.layers],
                 [("name", "layer"), ("op", "op"), ("weight", "weight"), ("output", "output"),
                  ("acc_bits", "acc"), ("acc_overflows", "acc ovf"),
                  ("output_saturations", "out sat"), ("acc_bits_observed", "acc used"),
                  ("acc_bits_worst_case", "acc worst"), ("sqnr_db", "SQNR dB")])
    if dep is not None:
        print(f"\nquantized vs float model {args.float} ({dep['n']} images): top-1 quantized "
              f"{dep['quant_top1']:.4f}, float {dep['float_top1']:.4f}, agreement "
              f"{dep['agreement']:.4f}; {dep['matched']} tensors matched by name, "
              f"{dep['unmatched']} without a float twin")
        _print_table(dep["rows"], [("tensor", "quantized tensor"), ("layer", "layer"),
                                   ("float_tensor", "float tensor"), ("sqnr_db", "SQNR dB")])
    _print_mcu(mcu)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from fxp.export.golden import export_golden

    args.limit = args.n
    fw, graph, plan = _model_and_plan(args)
    prepare_output(args.out, folder=True)
    data = fw.load_data(args.data, graph, limit=args.n)
    out = export_golden(graph, plan, data.x[:args.n], args.out)
    if args.json:
        print(json.dumps({"out": str(out), "n": args.n}))
    else:
        print(f"wrote golden vectors for {args.n} inputs to {out}/ (manifest.json, golden.npz, *.hex)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from fxp.report.render import write_report

    fw, graph, plan = _model_and_plan(args)
    prepare_output(args.out, folder=True)
    data = fw.load_data(args.data, graph, limit=args.limit)
    rep = fw.run_simulation(graph, plan, data, batch_size=args.batch_size, progress=not args.json,
                            keep_predictions=True, per_channel=True)
    cmd = f"fxp report {args.model}" + (f" --plan {args.plan}" if args.plan else "") + \
        f" --data {args.data} --out {args.out}"
    if args.limit is not None:
        cmd += f" --limit {args.limit}"
    out = write_report(graph, plan, rep, data.y, args.out, command=cmd)
    print(json.dumps({"out": str(out)}) if args.json else f"wrote {out}/report.md")
    return 0


def _cmd_export_file(args: argparse.Namespace) -> int:
    from fxp.export.c_header import write_c_header
    from fxp.export.hls4ml import write_hls4ml_config
    from fxp.export.qonnx import export_qonnx

    _, graph, plan = _model_and_plan(args)
    prepare_output(args.out, folder=False)
    writer = {"hls4ml": write_hls4ml_config, "c": write_c_header, "qonnx": export_qonnx}[args.what]
    out = writer(graph, plan, args.out)
    print(json.dumps({"out": str(out)}) if args.json else f"wrote {out}")
    return 0


_PLAN_HELP = ("plan JSON (required for float models; a quantized ONNX model carries its own "
              "plan, used when --plan is absent)")
_RUNTIME_HELP = ("a .tflite model: whose integers to reproduce, tflm (default), litert-ref, "
                 "litert-opt, xnnpack or cmsis-nn (ignored with --plan)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    parser = Parser(
        prog="fxp",
        description="Bit-exact fixed-point simulation and bit-width planning for CNNs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="layers, shapes, parameters, MACs and weight statistics")
    p.add_argument("model", help="ONNX path or zoo name (mnist_cnn, lenet5, vgg7, fashion_cnn)")
    p.add_argument("--runtime", default=None, metavar="NAME", help=_RUNTIME_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_inspect)

    p = sub.add_parser("plan", help="make a per-layer bit-width plan (post-training quantization)")
    p.add_argument("model")
    p.add_argument("--data", default=None,
                   help="calibration data spec, e.g. mnist5k, npz:FILE (required for float "
                        "models; a quantized ONNX model carries its plan)")
    p.add_argument("--bits", type=bits(1, 64), default=8, help="default word length (bits)")
    p.add_argument("--weight-bits", type=bits(1, 64), default=None, help="default: --bits")
    p.add_argument("--act-bits", type=bits(1, 64), default=None, help="default: --bits")
    p.add_argument("--acc-bits", type=bits(1, 64), default=32, help="accumulator bits")
    p.add_argument("--scheme", default="pow2", choices=["pow2", "double", "single", "float32"],
                   help="pow2 (FPGA Qm.n) or affine int with multiplier/float32 requantization")
    p.add_argument("--granularity", default="whole", choices=["whole", "conv", "dense"])
    p.add_argument("--method", default="minmax", choices=["minmax", "percentile", "mse"],
                   help="activation range estimation")
    p.add_argument("--weight-range", default=None,
                   choices=["minmax", "percentile", "mse", "sqnr"],
                   help="weight range estimation: minmax never clips; mse may saturate "
                        "outliers for a finer step; sqnr (optimized plans only, their "
                        "default) keeps the clip with the best measured output SQNR")
    p.add_argument("--rounding", default="half_up")
    p.add_argument("--calib", type=positive_int, default=None,
                   help="calibration samples (default 512; 1000 for optimized plans: formats "
                        "and the noise table; then --selection samples, then the held-out rest)")
    p.add_argument("--selection", type=int_range(0, 10**9), default=None, metavar="N",
                   help="optimized plans: samples after the calibration split on which each "
                        "plan is measured and re-solved when short (default min(1000, half the "
                        "rest)); the remaining samples are held out for the final check only")
    p.add_argument("--tolerance-db", type=finite_float(0, 100), default=0.0, metavar="DB",
                   help="optimized plans: the target counts as met when the held-out SQNR is "
                        "at least target - DB (default 0)")
    p.add_argument("--limit", type=positive_int, default=None, help="first N samples")
    p.add_argument("--out", default=None, help="write the plan JSON here")
    p.add_argument("--from-hls4ml", default=None, metavar="CONFIG",
                   help="read an hls4ml config (JSON/YAML) back into a plan (no --data)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--max-accuracy-drop", type=finite_float(0, 100), default=None,
                   metavar="POINTS",
                   help="cheapest optimized plan whose measured top-1 drop is at most POINTS")
    p.add_argument("--target-sqnr", type=finite_float(), default=None, metavar="DB",
                   help="optimize per-tensor widths for this output SQNR (dB) instead of "
                        "uniform widths")
    p.add_argument("--cost", default=None, choices=PLAN_COSTS,
                   help="what --target-sqnr minimises (default weight_memory; area with "
                        "--target fpga, flash with --target mcu)")
    add_hardware_options(p)
    p.add_argument("--min-bits", type=bits(2, 16), default=None,
                   help="narrowest width, 2..16 (--target-sqnr)")
    p.add_argument("--max-bits", type=bits(2, 16), default=None,
                   help="widest width, 2..16 (--target-sqnr)")
    p.add_argument("--binary", default=None, metavar="LAYERS",
                   help="comma-separated layers to binarize (XNOR-popcount), e.g. conv2,fc1")
    p.add_argument("--alpha-bits", type=int_range(0, 63), default=8,
                   help="bits of the XNOR-Net per-channel alpha of binary layers (0: no alpha)")
    p.add_argument("--binary-output", default="scale", choices=["scale", "dot", "threshold"],
                   help="output transform of binary layers")
    p.add_argument("--pad-value", type=int, default=0, choices=[0, 1, -1],
                   help="padding of binary convolutions: 0 (zero), 1 or -1")
    p.set_defaults(handler=_cmd_plan)

    p = sub.add_parser("simulate", help="bit-exact simulation of a plan: accuracy, SQNR, overflows")
    p.add_argument("model")
    p.add_argument("--plan", default=None, help=_PLAN_HELP)
    p.add_argument("--runtime", default=None, metavar="NAME", help=_RUNTIME_HELP)
    p.add_argument("--float", default=None, metavar="FLOAT_MODEL",
                   help="quantized models: also compare every quantized tensor with the float "
                        "model's tensor of the same name (SQNR) and top-1")
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=positive_int, default=None, help="first N samples")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--exact", action="store_true",
                   help="always run the ordered integer loop (observes every partial sum)")
    p.add_argument("--per-channel", action="store_true",
                   help="report accumulator overflows per output channel (in --json)")
    p.add_argument("--json", action="store_true")
    add_cluster_options(p)
    p.set_defaults(handler=_cmd_simulate)

    p = sub.add_parser("report", help="Markdown report with figures for a plan")
    p.add_argument("model")
    p.add_argument("--plan", default=None, help=_PLAN_HELP)
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=positive_int, default=None, help="first N samples")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_report)

    p = sub.add_parser("deploy", help="quantize weights with any quantizer into a model + plan "
                                      "that fxp simulate runs exactly")
    p.add_argument("model")
    p.add_argument("--data", required=True, help="calibration data")
    p.add_argument("--quantizer", required=True, help="e.g. kmeans, hc:ward, deadzone:0.4")
    p.add_argument("--bits", type=bits(1, 32), required=True, help="quantizer width (bits)")
    p.add_argument("--store-bits", type=bits(2, 64), default=16,
                   help="word length of the stored levels")
    p.add_argument("--per-channel", action="store_true")
    p.add_argument("--calib", type=positive_int, default=512)
    p.add_argument("--limit", type=positive_int, default=None, help="first N samples")
    p.add_argument("--out", required=True, help="output folder (model.onnx, plan.json)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_deploy)

    p = sub.add_parser("bench", help="images/s of the engines, as ratios in one process")
    p.add_argument("model")
    p.add_argument("--data", default="mnist5k")
    p.add_argument("--plan", default=None, help="plan JSON (default: an 8-bit PTQ plan)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--min-time", type=finite_float(0, 3600, lo_open=True), default=1.0,
                   help="seconds per measurement")
    p.add_argument("--limit", type=positive_int, default=None, help="first N samples")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_bench)

    p = sub.add_parser("export", help="export files for other toolchains")
    esub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    e = esub.add_parser("golden", help="every layer's integer codes (npz + hex) for N inputs")
    e.add_argument("model")
    e.add_argument("--plan", default=None, help=_PLAN_HELP)
    e.add_argument("--runtime", default=None, metavar="NAME", help=_RUNTIME_HELP)
    e.add_argument("--data", required=True)
    e.add_argument("-n", type=positive_int, default=4, help="number of inputs")
    e.add_argument("--out", required=True)
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=_cmd_export)
    for what, helptext in (("hls4ml", "hls4ml configuration (ap_fixed precisions per layer)"),
                           ("c", "C header with the integer weights, biases and requant constants"),
                           ("qonnx", "QONNX model (Quant/BipolarQuant nodes) of the plan, "
                                     + "for FINN or hls4ml's QONNX path")):
        e = esub.add_parser(what, help=helptext)
        e.add_argument("model")
        e.add_argument("--plan", default=None, help=_PLAN_HELP)
        e.add_argument("--out", required=True, help="output file")
        e.add_argument("--json", action="store_true")
        e.set_defaults(handler=_cmd_export_file)

    p = sub.add_parser("sweep", help="rate-distortion sweep of weight quantizers: entropy, "
                       "size, accuracy")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--quantizers", default="midtread,midrise,deadzone:0.4,mulaw,minifloat,pow2,"
                   "kmeans,hc:ward", help="comma-separated quantizer specs (fxp.quant.names())")
    p.add_argument("--bits", type=width_list, default="2-16",
                   help="widths in 1..32: '2-16' or '2,4,8'")
    p.add_argument("--tolerance", type=finite_float(0, 100), default=1.0,
                   help="accuracy drop allowed for the best point, in points (default 1)")
    p.add_argument("--per-channel", action="store_true", help="quantize per output channel")
    p.add_argument("--limit", type=positive_int, default=None, help="first N samples")
    p.add_argument("--json", action="store_true")
    add_cluster_options(p, batches=False)  # one Dask task per (quantizer, width) point
    p.set_defaults(handler=_cmd_sweep)

    p = sub.add_parser("train", help="retrain with fxp's quantizers (QAT, INQ, ternary, binary, "
                       "clustered) and export ONNX + plan that fxp simulates exactly (needs torch)")
    p.add_argument("method", choices=["qat", "qat-conv", "qat-dense", "inq", "twn", "hwang-sung",
                                      "binaryconnect", "bnn", "cluster"])
    p.add_argument("model", help="ONNX path or zoo name (a float model to fine-tune)")
    p.add_argument("--data", required=True, help="training data spec, e.g. mnist-t10k, digits")
    p.add_argument("--eval", default=None, help="evaluation data spec (default: --data)")
    p.add_argument("--bits", type=bits(1, 32), default=None,
                   help="weight bits (QAT: weights and activations unless --act-bits; "
                        "hwang-sung: 2**bits-1 levels; cluster: 2**bits clusters); default 8, "
                        "twn 2, hwang-sung 2, binaryconnect 1, cluster 4")
    p.add_argument("--cluster", default="kmeans",
                   choices=["kmeans", "hc:ward", "hc:complete", "hc:average", "hc:single"],
                   help="codebook algorithm of the cluster method")
    p.add_argument("--scale-bits", type=bits(2, 32), default=8,
                   help="bits of the per-layer scale / codebook entries (twn, hwang-sung, "
                        "binaryconnect, cluster)")
    p.add_argument("--act-bits", type=bits(1, 32), default=None)
    p.add_argument("--epochs", type=int_range(0), default=None,
                   help="epochs (INQ: per stage); default 3, 10 with --scratch, 2 for inq")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0)
    p.add_argument("--out", required=True, help="output folder (checkpoints, ONNX, plan)")
    p.add_argument("--scratch", action="store_true", help="QAT from random init")
    p.add_argument("--lr", type=finite_float(0, 10, lo_open=True), default=None,
                   help="learning rate (default 1e-4; 2e-3 with --scratch)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use the first N training samples")
    p.add_argument("--eval-limit", type=positive_int, default=None)
    p.add_argument("--rounding", default="half_up", help="requantization rounding of the plan")
    p.add_argument("--calib", type=positive_int, default=512,
                   help="calibration samples for the plan")
    p.add_argument("--step-search", choices=["network", "layer", "l2"], default="network",
                   help="hwang-sung's starting steps: the seed's network-wide step searched per "
                        "layer on the output error (default), that search from per-layer L2 "
                        "steps, or the per-layer L2 steps alone")
    p.add_argument("--threads", type=int_range(1, 1024), default=1, help="torch threads")
    p.add_argument("--dropout", type=finite_float(0, 1, hi_open=True), default=0.0,
                   help="dropout before dense layers, in [0, 1)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the fxp simulation of the exported files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("format", help="describe a fixed-point format (ap_fixed<W,I>, Qm.n, ...)")
    p.add_argument("format", help="e.g. 'ap_fixed<8,3>', 'ufixed<6,2>', 'Q0.15', 'int8'")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_format)

    p = sub.add_parser("quantize", help="quantize real numbers into a format")
    p.add_argument("format")
    p.add_argument("values", nargs="+", type=float)
    p.add_argument("--rounding", default="half_even", help="rounding mode (default half_even)")
    p.add_argument("--overflow", default="saturate", help="overflow mode (default saturate)")
    p.add_argument("--seed", type=int_range(0, 2**63 - 1), default=None,
                   help="seed for stochastic rounding")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_quantize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    where = " ".join(["fxp", args.command] + ([args.what] if getattr(args, "what", None) else []))
    return run_handler(args.handler, args, where, debug=args.debug)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
