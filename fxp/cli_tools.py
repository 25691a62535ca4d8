"""The ``fxp`` command line's tool commands: format, quantize, sweep, bench, train, deploy.

Thin handlers like those of :mod:`fxp.cli` (which builds the parser and owns the
error boundary), plus the plain aligned table printer every command uses.
"""

from __future__ import annotations

import argparse
import json

from fxp.errors import FxpError


def _cmd_format(args: argparse.Namespace) -> int:
    from fxp.core.format import QFormat

    fmt = QFormat.parse(args.format)
    try:
        qmn = fmt.to_qmn()
    except FxpError:
        qmn = None
    info = {
        "format": str(fmt),
        "ap_fixed": fmt.to_ap_fixed(),
        "qmn": qmn,
        "bits": fmt.bits,
        "int_bits": fmt.int_bits,
        "frac_bits": fmt.frac_bits,
        "signed": fmt.signed,
        "lsb": str(fmt.lsb),
        "min_code": fmt.min_code,
        "max_code": fmt.max_code,
        "min_value": str(fmt.min_value),
        "max_value": str(fmt.max_value),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from fxp.core.format import QFormat
    from fxp.ops.fixed import dequantize, quantize

    fmt = QFormat.parse(args.format)
    codes, n = quantize(args.values, fmt, args.rounding, args.overflow, seed=args.seed)
    values = dequantize(codes, fmt)
    if args.json:
        print(json.dumps({"format": str(fmt), "codes": codes.tolist(),
                          "values": values.tolist(), "n_overflow": n}))
    else:
        for x, c, v in zip(args.values, codes.tolist(), values.tolist()):
            print(f"{x!r:>24} -> code {c:>8}  value {v!r}")
        print(f"overflows: {n}")
    return 0


def _print_table(rows: list[dict], cols: list[tuple[str, str]]) -> None:
    """Plain aligned table: cols = [(key, header)]."""
    cells = [[h for _, h in cols]] + [["" if r.get(k) is None else _cell(r.get(k)) for k, _ in cols]
                                      for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j and i else c.ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "x".join(str(i) for i in v)
    return str(v)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from fxp import workflow as fw

    graph = fw.load_model(args.model)
    data = fw.load_data(args.data, graph, limit=args.limit)
    from fxp.dist.cluster import open_client

    with open_client(args.scheduler, args.workers) as client:  # None: in-process
        res = fw.sweep_quantizers(graph, data, quantizers=args.quantizers, bits=args.bits,
                                  tolerance=args.tolerance / 100, per_channel=args.per_channel,
                                  progress=not args.json, client=client)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    print(f"{res.model} on {res.data} ({res.n_images} images, {res.n_weights:,} weights): "
          f"float top-1 {res.float_top1:.4f}, top-5 {res.float_top5:.4f}")
    cols = [("quantizer", "quantizer"), ("bits", "bits"), ("entropy", "bits/weight"),
            ("ratio", "vs float32"), ("top1", "top-1"), ("drop_top1", "drop"),
            ("top5", "top-5"), ("drop_top5", "drop-5")]
    from dataclasses import asdict

    _print_table([asdict(r) for r in res.rows], cols)
    print(f"\nlowest entropy within {args.tolerance:g} point(s) of float accuracy (Table 6):")
    best = [asdict(r) if r else {"quantizer": q, "bits": "none"} for q, r in res.best.items()]
    _print_table(best, cols)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from fxp.bench import bench_model
    from fxp.plan.io import load_plan
    from fxp.zoo import resolve_model

    fw, graph, data = _load(args)
    plan = load_plan(args.plan) if args.plan else fw.make_plan(graph, data, bits=8, calib=256)
    x = data.x[:args.batch_size]
    rows = bench_model(graph, plan, x, onnx_path=resolve_model(args.model),
                       min_time=args.min_time)
    if args.json:
        print(json.dumps({"model": graph.name, "batch": int(x.shape[0]), "rows": rows}, indent=2))
        return 0
    print(f"{graph.name}, batch {x.shape[0]}, plan {plan.name}")
    _print_table(rows, [("engine", "engine"), ("images_per_s", "images/s"),
                        ("vs_float_reference", "vs float reference")])
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from fxp import workflow as fw
    from fxp.train import require_torch

    require_torch()

    def log(row: dict) -> None:
        if not args.json:
            print(json.dumps(row), flush=True)

    res = fw.train_model(args.method, args.model, args.data, bits=args.bits, out=args.out,
                         epochs=args.epochs, seed=args.seed, eval_data=args.eval,
                         limit=args.limit, eval_limit=args.eval_limit, act_bits=args.act_bits,
                         scratch=args.scratch, lr=args.lr, batch_size=args.batch_size,
                         rounding=args.rounding, calib=args.calib, threads=args.threads,
                         dropout=args.dropout, verify=not args.no_verify,
                         progress=not args.json, log=log, cluster=args.cluster,
                         scale_bits=args.scale_bits,
                         step_search=None if args.step_search == "l2" else args.step_search)
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=2,
                         default=str))
        return 0
    line = (f"{res['method']} {res['model']} w{res['bits']}: fake-quantized top-1 "
            f"{res['torch_fake_quant_top1']:.4f} on {res['eval_data']} ({res['n_eval']} images)")
    sim = res.get("fxp_simulation")
    if sim is not None:
        line += (f"; fxp simulate top-1 {sim['fixed_top1']:.4f}, agreement with torch "
                 f"{sim['agreement_with_torch']:.4f}")
    print(line)
    print(f"wrote {res['onnx']} and {res['plan']}")
    return 0 if sim is None or sim["mismatches"] == 0 else 1


def _cmd_deploy(args: argparse.Namespace) -> int:
    import onnx

    from fxp.fileio import ensure_dir, write_with
    from fxp.plan.io import save_plan
    from fxp.quant.deploy import deploy_quantizer
    from fxp.train.export import graph_to_onnx

    out = ensure_dir(args.out)  # fail fast, before the (slow) quantization
    fw, graph, data = _load(args)
    dep = deploy_quantizer(graph, data.x[:args.calib], args.quantizer, args.bits,
                           store_bits=args.store_bits, per_channel=args.per_channel)
    model = graph_to_onnx(dep.graph, producer="fxp-deploy")
    write_with(out / "model.onnx", lambda tmp: onnx.save(model, str(tmp)))
    save_plan(dep.plan, out / "plan.json")
    info = {"out": str(out), "levels": dep.levels, "entropy_bits": dep.entropy_bits}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for name in dep.levels:
            print(f"{name}: {dep.levels[name]} stored levels, entropy "
                  f"{dep.entropy_bits[name]:.3f} bits/weight")
        print(f"wrote {out}/model.onnx and {out}/plan.json (run them with fxp simulate)")
    return 0


def _load(args: argparse.Namespace):
    from fxp import workflow as fw

    graph = fw.load_model(args.model)
    data = fw.load_data(args.data, graph, limit=getattr(args, "limit", None))
    return fw, graph, data
