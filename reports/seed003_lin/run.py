"""Reproduce Lin, Talathi & Annapureddy's SQNR-based bit allocation (seed 003) on the zoo models.

Regenerate (from the repository root, after ``make setup``; about 10 minutes for mnist_cnn
and fashion_cnn, 30 more for vgg7 on 2 cores)::

    .venv/bin/python reports/seed003_lin/run.py                       # all three models
    .venv/bin/python reports/seed003_lin/run.py --models mnist_cnn    # one (others kept)
    .venv/bin/python reports/seed003_lin/run.py --quick --out /tmp/s3 # smoke run, tiny slices

Per model: the per-tensor noise is measured once on the first 1,000 images (weights at each
width get the clip with the best measured output SQNR), the additive model is validated on
random mixed plans, the one-hot MILP gives the cheapest weight memory for 20, 30 and 40 dB, and
every plan is verified by the bit-exact integer engine on the held-out images.  The accuracy
comparison takes the cheapest uniform plan (same weight formats, activations 16 bits) whose top-1
is within 0.2 points of float and the cheapest optimized plan within the same drop (bisection
over the SQNR target, ``fxp plan --max-accuracy-drop 0.2``).  Results go to ``results.json``
(one entry per model, recomputed when the model is named) and ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))

from _common import output_dir  # noqa: E402

from fxp import workflow as fw  # noqa: E402
from fxp.opt import measure_noise, plan_for_widths, predict_sqnr_db, validate_model  # noqa: E402
from fxp.report.render import markdown_table  # noqa: E402

MODELS = {"mnist_cnn": "mnist5k", "fashion_cnn": "fashion-mnist:test", "vgg7": "mnist5k"}
TARGETS = (20.0, 30.0, 40.0)
DROP = 0.2


def run_model(model: str, data_spec: str, *, calib: int, limit: int | None, n_plans: int,
              uniform_bits, target_dbs=TARGETS, search=None, log=print) -> dict:
    t0 = time.perf_counter()
    graph = fw.load_model(model)
    data = fw.load_data(data_spec, graph, limit=limit)
    cx = data.x[:calib]
    held = fw.Data(data.x[calib:], data.y[calib:], f"{data.name}[{calib}:]")
    table = measure_noise(graph, cx, n_measure=256, weight_method="sqnr")
    log(f"{model}: noise measured in {time.perf_counter() - t0:.0f} s")
    val = validate_model(graph, table, cx, held.x[:1000], held.y[:1000], n_plans=n_plans, seed=0)
    log(f"{model}: additive model MAE {val.mean_abs_error_db:.2f} dB")
    n_weights = sum(t.size for t in table.tensors if t.kind == "weight")
    uniform = []
    for b in uniform_bits:
        w = {t.name: (b if t.kind == "weight" else 16) for t in table.tensors}
        rep = fw.run_simulation(graph, plan_for_widths(graph, cx, table, w), held, batch_size=500)
        uniform.append({"bits": b, "predicted_db": predict_sqnr_db(table, w),
                        "measured_db": rep.output_sqnr_db, "float_top1": rep.float_top1,
                        "fixed_top1": rep.fixed_top1, "weight_bytes": n_weights * b // 8})
    targets = []
    for target in target_dbs:
        res = fw.optimize_plan(graph, data, target, calib=calib, noise_table=table,
                               split_seed=None)  # the table is of the first calib samples
        targets.append({"target_db": target, "widths": res.widths,
                        "predicted_db": res.predicted_sqnr_db, "measured_db": res.measured_sqnr_db,
                        "fixed_top1": res.fixed_top1, "float_top1": res.float_top1,
                        "weight_bytes": res.weight_memory_bits // 8, "success": res.success})
    acc = fw.optimize_for_accuracy(graph, data, DROP, calib=calib, noise_table=table,
                                   split_seed=None,
                                   **({} if search is None else {"targets_db": search}))
    best_uniform = next((u for u in uniform
                         if 100 * (u["float_top1"] - u["fixed_top1"]) <= DROP + 1e-9), None)
    opt = {"target_db": acc.target_sqnr_db, "widths": acc.widths,
           "measured_db": acc.measured_sqnr_db, "fixed_top1": acc.fixed_top1,
           "float_top1": acc.float_top1, "weight_bytes": acc.weight_memory_bits // 8,
           "search": acc.message.split("(", 1)[-1].rstrip(")")}
    reduction = (None if best_uniform is None
                 else 1 - opt["weight_bytes"] / best_uniform["weight_bytes"])
    rows = acc.table_rows()
    return {"model": model, "data": data.name, "calib": calib, "n_held_out": len(held.x),
            "validation": val.to_dict(), "uniform": uniform, "targets": targets,
            "accuracy": {"drop_points": DROP, "optimized": opt, "best_uniform": best_uniform,
                         "reduction": reduction},
            "kappa": [{"tensor": r["tensor"], "kind": r["kind"], "kappa": r["kappa"]}
                      for r in rows],
            "seconds": round(time.perf_counter() - t0, 1)}


def _pct(v):
    return None if v is None else f"{100 * v:.2f}%"


def _db(v):
    return None if v is None else round(float(v), 2)


def _weights(widths: dict) -> str:
    return ", ".join(f"{k.removesuffix('.weight')}={v}" for k, v in widths.items()
                     if k.endswith(".weight"))


def render(results: dict) -> str:
    parts = ["""# Seed 003 (Lin et al. 2016): SQNR-driven bit allocation on the zoo models

Regenerate: `.venv/bin/python reports/seed003_lin/run.py` (about 40 minutes on 2 cores; see
its docstring). One target from the CLI: `fxp plan vgg7 --data mnist5k --target-sqnr 30`; the
accuracy search: `fxp plan vgg7 --data mnist5k --max-accuracy-drop 0.2`.

Lin et al. model each tensor's quantization noise as `10 log10 gamma_i = kappa b_i + c_i`
(about 6 dB/bit) and the output as `1/gamma_out = sum 1/gamma_i`, derive per-layer widths in
closed form, and report more than 20% model-size reduction over the best uniform plan at equal
accuracy on CIFAR-10. fxp measures each tensor's output SQNR at every width 2..16 on 256
calibration images (a weight's format at each width is the clip, among the min/max one and up to
four integer bits fewer, with the best measured output SQNR), solves the integer problem exactly
(one-hot MILP, HiGHS), and verifies every plan with the bit-exact integer engine on held-out
images. Activation widths are free in the weight-memory cost, so the optimizer keeps them wide
(16 bits); the uniform plans below use the same weight formats and 16-bit activations.
"""]
    summary = []
    for model, r in results.items():
        a = r["accuracy"]
        bu, op = a["best_uniform"], a["optimized"]
        summary.append({
            "model": model, "float": _pct(op["float_top1"]),
            "best uniform": None if bu is None else f"{bu['bits']} bits: {_pct(bu['fixed_top1'])}, "
                                                     f"{bu['weight_bytes']:,} B",
            "optimized": f"{_pct(op['fixed_top1'])}, {op['weight_bytes']:,} B "
                         f"({op['target_db']:g} dB target)",
            "reduction": None if a["reduction"] is None else f"{100 * a['reduction']:.1f}%",
            "model MAE dB": _db(r["validation"]["mean_abs_error_db"]),
            "model bias dB": _db(r["validation"]["bias_db"])})
    parts.append("## Summary: weight memory at equal accuracy (within "
                 f"{DROP} points of float)\n\n" + markdown_table(summary, [
                     (k, k) for k in summary[0]]) + "\n\n"
                 "`model MAE` / `bias`: predicted (additive) vs measured output SQNR over "
                 "random mixed plans (mean |error| and mean error, measured - predicted).\n")
    for model, r in results.items():
        tg = [{"target dB": t["target_db"], "weights (bits)": _weights(t["widths"]),
               "predicted dB": _db(t["predicted_db"]), "measured dB": _db(t["measured_db"]),
               "met (>= target - 0.5)": "yes" if t["measured_db"] >= t["target_db"] - 0.5
               else "NO", "top-1": _pct(t["fixed_top1"]), "weight bytes": t["weight_bytes"]}
              for t in r["targets"]]
        un = [{"weight bits": u["bits"], "predicted dB": _db(u["predicted_db"]),
               "measured dB": _db(u["measured_db"]), "top-1": _pct(u["fixed_top1"]),
               "weight bytes": u["weight_bytes"]} for u in r["uniform"]]
        op = r["accuracy"]["optimized"]
        v = r["validation"]
        kap = ", ".join(f"{k['tensor']} {k['kappa']}" for k in r["kappa"])
        parts.append(f"""## {model} ({r['data']}: calibration {r['calib']}, held out {r['n_held_out']}; float top-1 {_pct(op['float_top1'])})

Optimized for an output-SQNR target (cost: weight memory):

{markdown_table(tg, [(k, k) for k in tg[0]])}

Uniform weight widths (same formats, activations 16 bits):

{markdown_table(un, [(k, k) for k in un[0]])}

Cheapest optimized plan within {DROP} points of float: {_weights(op['widths'])};
{_pct(op['fixed_top1'])} at {op['weight_bytes']:,} bytes, measured {_db(op['measured_db'])} dB
(targets tried: {op['search']}).

Additive model on {v['n_plans']} random mixed plans ({v['n_eval']} held-out images): mean
|measured - predicted| {_db(v['mean_abs_error_db'])} dB, bias {_db(v['bias_db'])} dB, worst
{_db(v['max_abs_error_db'])} dB. Fitted slopes kappa (dB/bit): {kap}.
""")
    parts.append("""## Where we differ from the paper

* Lin et al. assume the per-layer SQNR law and a common kappa; fxp measures every width, so the
  MILP sees the real, non-linear behaviour at 2-4 bits (where clipping and dead zones dominate)
  and solves the integer problem exactly instead of rounding a continuous solution.
* The paper's >20% reduction is on CIFAR-10 networks whose layers all matter; on MNIST the
  networks are heavily over-parameterised and a uniform plan already survives very few bits, so
  the room left for per-layer allocation is the gap between the widths each layer needs.
* On `vgg7` one tensor decides: `fc1` holds 802,816 of the 935,712 weights (86%). Every plan
  within 0.2 points keeps `fc1` at 3 bits (the all-2-bit plan loses 0.6 points and the 2-bit
  `fc1` alone costs 14 dB of output SQNR), so per-layer allocation can only shave the other
  132,896 weights: even at 1 bit each they would save 9.5% of the 3-bit uniform plan. The 20%
  goal needs sub-layer granularity (per-channel widths) or retraining, not a better allocator.
* Accuracy is not a function of SQNR alone; the accuracy search bisects the SQNR target and
  verifies each candidate on held-out images, so it can miss a cheaper plan when accuracy is
  not monotone in the target.
""")
    return "\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--quick", action="store_true",
                    help="tiny slices and few plans, results in --out (smoke test)")
    ap.add_argument("--out", default=None, help="output folder (default: this folder)")
    args = ap.parse_args(argv)
    out = output_dir(ap, args, HERE)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for model in args.models:
        kw = (dict(calib=100, limit=300, n_plans=1, uniform_bits=(4,), target_dbs=(20.0,),
                   search=(15.0, 30.0)) if args.quick
              else dict(calib=1000, limit=None, n_plans=12, uniform_bits=(2, 3, 4, 5, 6, 8)))
        results[model] = run_model(model, MODELS[model], **kw)
        path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    ordered = {m: results[m] for m in MODELS if m in results}
    text = render(ordered)
    (out / "README.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
