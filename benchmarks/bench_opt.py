"""Bit-width optimizer: MILP solve time, `fxp plan --target-sqnr` time, and a model report.

Run: ``python benchmarks/bench_opt.py [--report] [--model mnist_cnn] [--data mnist5k]``

1. MILP of 50 tensors x 15 widths (2..16), Lin-law noise with jitter, weight-memory
   and bit-operation costs: solve time (HiGHS through cvxpy, re-verification included).
2. ``fxp plan MODEL --data DATA --target-sqnr 30`` through :func:`fxp.cli.main`,
   measurement on the held-out images included (goal: < 60 s on 2 cores for mnist_cnn).
3. ``--fake-quant``: the fake-quant passes' grouped convolutions
   (:func:`fxp.opt.f32_kernels.conv_f32`) of ``mobilenet_small`` on 200 images, the
   per-offset grouped kernel against the per-group im2col matmuls it replaced
   (``GROUPED_MAX_CHANNELS = 0``), same process, best of 3; and the whole noise table.
4. ``--pair-budget [--max-pair-passes N]``: ``optimize_bits`` on ``mobilenet_small`` at
   30 dB (500 calibration images) with the dithered pairs under the pass budget: the
   pairs measured and skipped, the passes and the seconds of each stage.
5. ``--report``: for targets 20, 30, 40 dB, the optimized widths, predicted vs
   measured SQNR, accuracy and weight memory, next to uniform plans (every tensor
   at b bits) measured the same way, and the additive model's error on random
   mixed plans.  The first 1000 images calibrate, the rest are held out.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from contextlib import redirect_stdout

import numpy as np


def bench_milp(n_tensors: int = 50, n_widths: int = 15, seed: int = 0) -> None:
    from fxp.opt.problem import AllocationProblem
    from fxp.opt.solve import solve_milp

    rng = np.random.default_rng(seed)
    widths = list(range(2, 2 + n_widths))
    noise, cost = [], []
    for _ in range(n_tensors):
        k, c = rng.uniform(4.5, 6.2), rng.uniform(-5, 12)
        s = k * np.asarray(widths) + c + rng.normal(0, 1.0, n_widths)
        noise.append(list(10 ** (-s / 10)))
        cost.append([float(rng.integers(100, 10 ** 6)) * b for b in widths])
    names = [f"t{i}" for i in range(n_tensors)]
    for target in (20.0, 30.0, 40.0):
        p = AllocationProblem(names, [list(widths)] * n_tensors, noise, cost, target_db=target)
        solve_milp(p)  # warm-up (imports, canonicalization caches)
        t0 = time.perf_counter()
        r = solve_milp(p)
        dt = time.perf_counter() - t0
        print(f"MILP {n_tensors} tensors x {n_widths} widths, target {target:g} dB: "
              f"{dt:.3f} s (SQNR {r.sqnr_db:.2f} dB, verified)")
    # bit-operations: bilinear terms linearised
    pairs = [(i, i + 1, float(rng.integers(10 ** 3, 10 ** 7))) for i in range(0, n_tensors - 1, 2)]
    p = AllocationProblem(names, [list(widths)] * n_tensors, noise,
                          [[0.0] * n_widths] * n_tensors, target_db=30.0, pairs=pairs)
    t0 = time.perf_counter()
    solve_milp(p)
    print(f"MILP bit-operations ({len(pairs)} products), target 30 dB: "
          f"{time.perf_counter() - t0:.3f} s")


def bench_cli(model: str, data: str) -> None:
    from fxp.cli import main

    buf = io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(buf):
        rc = main(["plan", model, "--data", data, "--target-sqnr", "30", "--json"])
    dt = time.perf_counter() - t0
    res = json.loads(buf.getvalue()[buf.getvalue().index("{"):])
    print(f"fxp plan {model} --data {data} --target-sqnr 30: {dt:.1f} s in all (rc {rc}); "
          f"predicted {res['predicted_sqnr_db']:.2f} dB, measured {res['measured_sqnr_db']:.2f} dB "
          f"on {res['n_eval']} held-out images")


def report(model: str, data: str, targets=(20.0, 30.0, 40.0), uniform=range(4, 11),
           n_random: int = 12) -> dict:
    from fxp import workflow as fw
    from fxp.opt import measure_noise, optimize_bits, plan_for_widths, validate_model
    from fxp.opt.model import predict_sqnr_db
    from fxp.opt.solve import weight_memory_bits
    from fxp.sim.evaluate import simulate

    g = fw.load_model(model)
    d = fw.load_data(data, g)
    cx, ex, ey = d.x[:1000], d.x[1000:], d.y[1000:]
    t0 = time.perf_counter()
    table = measure_noise(g, cx)
    print(f"\n{model}: noise table in {time.perf_counter() - t0:.1f} s "
          f"({table.n_samples} images); kappa per tensor:")
    for i, t in enumerate(table.tensors):
        print(f"  {t.name:14s} {t.kind:6s} kappa {table.kappa[i]:5.2f} dB/bit, "
              f"c {table.offset[i]:6.1f} dB, fit widths {table.fit_widths[i]}, rms {table.fit_rms_db[i]:.2f} dB")
    out = {"model": model, "noise": table.to_dict(), "optimized": [], "uniform": []}
    v = validate_model(g, table, cx, ex[:1000], ey[:1000], n_plans=n_random)
    out["validation"] = v.to_dict()
    print(f"additive model on {n_random} random mixed plans (1000 held-out images): "
          f"MAE {v.mean_abs_error_db:.2f} dB, bias (measured-predicted) {v.bias_db:+.2f} dB, "
          f"max {v.max_abs_error_db:.2f} dB; corrected MAE {v.corrected_mae_db:.2f} dB")
    for b in uniform:
        w = {t: b for t in table.names}
        plan = plan_for_widths(g, cx, table, w, name=f"uniform{b}")
        rep = simulate(g, plan, ex, ey)
        row = {"bits": b, "predicted_db": predict_sqnr_db(table, w),
               "measured_db": rep.output_sqnr_db, "fixed_top1": rep.fixed_top1,
               "float_top1": rep.float_top1, "weight_bits": weight_memory_bits(table, w)}
        out["uniform"].append(row)
        print(f"uniform {b:2d} bits: predicted {row['predicted_db']:6.2f} dB, measured "
              f"{row['measured_db']:6.2f} dB, top-1 {100 * rep.fixed_top1:.2f}% "
              f"(float {100 * rep.float_top1:.2f}%), weights {row['weight_bits'] / 8:,.0f} B")
    for target in targets:
        for cost in ("weight_memory", "bitops"):
            r = optimize_bits(g, d, target, cost=cost, noise_table=table,
                              split_seed=None)  # the table is of samples 0..999
            same = [u for u in out["uniform"] if u["fixed_top1"] >= r.fixed_top1 - 0.002]
            best_u = min(same, key=lambda u: u["weight_bits"]) if same else None
            red = (1 - r.weight_memory_bits / best_u["weight_bits"]) if best_u else math.nan
            row = {"target_db": target, "cost": cost, "widths": r.widths,
                   "predicted_db": r.predicted_sqnr_db, "measured_db": r.measured_sqnr_db,
                   "fixed_top1": r.fixed_top1, "float_top1": r.float_top1,
                   "weight_bits": r.weight_memory_bits, "iterations": r.iterations,
                   "best_uniform_equal_acc": best_u["bits"] if best_u else None,
                   "weight_memory_reduction": red, "time_s": r.total_time_s}
            out["optimized"].append(row)
            print(f"target {target:g} dB, cost {cost}: widths {list(r.widths.values())}; "
                  f"predicted {r.predicted_sqnr_db:.2f} dB, measured {r.measured_sqnr_db:.2f} dB; "
                  f"top-1 {100 * r.fixed_top1:.2f}%; weights {r.weight_memory_bits / 8:,.0f} B "
                  f"vs uniform {best_u['bits'] if best_u else '-'} bits at equal accuracy: "
                  f"{100 * red:+.1f}% reduction; {r.iterations} solve(s), {r.total_time_s:.1f} s")
    return out


def bench_fake_quant(model: str = "mobilenet_small", n: int = 200) -> None:
    import fxp.opt.f32_kernels as fk
    from fxp import workflow as fw
    from fxp.ir.nodes import Conv2D
    from fxp.opt import measure_noise
    from fxp.sim.float_ref import run_float

    g = fw.load_model(model)
    d = fw.load_data("mnist5k", g, limit=n)
    env = run_float(g, d.x, taps=True)
    grouped = [nd for nd in g.nodes if isinstance(nd, Conv2D) and nd.groups > 1]
    default = fk.GROUPED_MAX_CHANNELS

    def timed(limit, fn):
        fk.GROUPED_MAX_CHANNELS = limit
        try:
            best = math.inf
            for _ in range(3):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            return best
        finally:
            fk.GROUPED_MAX_CHANNELS = default

    inputs = {nd.name: env[nd.inputs[0]] for nd in grouped}  # each one's real input

    def convs():
        for nd in grouped:
            fk.conv_f32(nd, inputs[nd.name], nd.weight)

    old, new = timed(0, convs), timed(default, convs)
    print(f"fake-quant grouped convs of {model} ({len(grouped)} layers, {n} images): "
          f"per-group im2col {old:.3f} s, per-offset {new:.3f} s, ratio {old / new:.1f}x")
    t_old = timed(0, lambda: measure_noise(g, d.x, weight_method="sqnr", n_measure=None))
    t_new = timed(default, lambda: measure_noise(g, d.x, weight_method="sqnr",
                                                 n_measure=None))
    print(f"noise table of {model} on {n} images: {t_old:.1f} s before, {t_new:.1f} s now, "
          f"ratio {t_old / t_new:.1f}x")


def bench_pair_budget(model: str = "mobilenet_small", max_passes: int | None = None) -> None:
    """``optimize_bits`` at 30 dB on 1,500 images (500 calibration, 500 selection) with the
    dithered pairs measured under ``max_passes`` (default: ``MAX_PAIR_PASSES``): pairs,
    passes, seconds."""
    from fxp import workflow as fw
    from fxp.opt import measure_noise, optimize_bits
    from fxp.opt.pair_noise import MAX_PAIR_PASSES, measure_pair_noise

    g = fw.load_model(model)
    d = fw.load_data("mnist5k", g, limit=1500)
    t0 = time.perf_counter()
    nt = measure_noise(g, d.x[:500], weight_method="sqnr", n_measure=None)
    t1 = time.perf_counter()
    nt.pair_noise = measure_pair_noise(g, d.x[:500], nt, max_passes=max_passes or
                                       MAX_PAIR_PASSES)
    t2 = time.perf_counter()
    r = optimize_bits(g, d, 30.0, noise_table=nt, calib=500, selection=500, split_seed=None)
    t3 = time.perf_counter()
    pn = nt.pair_noise
    print(f"{model}: noise table {t1 - t0:.0f} s; dithered pairs {len(pn)} measured, "
          f"{len(pn.skipped)} skipped, {pn.passes} passes, {t2 - t1:.0f} s; search and checks "
          f"{t3 - t2:.0f} s; total {t3 - t0:.0f} s; held-out {r.measured_sqnr_db:.2f} dB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mnist_cnn")
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--fake-quant", action="store_true",
                    help="only the fake-quant grouped-convolution benchmark (3.)")
    ap.add_argument("--pair-budget", action="store_true",
                    help="only optimize_bits on mobilenet_small under the pair pass budget (4.)")
    ap.add_argument("--max-pair-passes", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the report here")
    a = ap.parse_args()
    if a.pair_budget:
        bench_pair_budget(max_passes=a.max_pair_passes)
        return
    if a.fake_quant:
        bench_fake_quant()
        return
    bench_milp()
    bench_cli(a.model, a.data)
    if a.report:
        res = report(a.model, a.data)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1, default=str)


if __name__ == "__main__":
    main()
