"""Hardware costs of optimized plans (issue 18): FPGA and MCU profiles vs uniform 8-bit.

Regenerate (from the repository root, after ``make setup``; about 10-15 minutes on 2 busy
cores; Fashion-MNIST needs Debian's ``dataset-fashion-mnist``, else fashion_cnn is skipped)::

    .venv/bin/python reports/hardware_costs/make_report.py
    .venv/bin/python reports/hardware_costs/make_report.py --quick --out /tmp/hw  # smoke run

Per model the samples are split three ways: the first ``--calib`` calibrate the formats and
measure the per-tensor noise (once, shared by every profile); the next ``--select`` are the
held-out samples the optimizer verifies on (``fxp plan``'s own held-out measurement, which the
``--max-accuracy-drop`` bisection also uses to choose its target); the remaining ``--test``
are touched by nothing but the final measurement of every plan reported here.

Plans per model: uniform 8-bit (``ptq_pow2`` weights 8, activations 8, accumulators 32), and
for each profile -- ``fpga`` (cost ``area``), ``mcu`` (cost ``flash``, int kernels only) and
``weight_memory`` (the proxy, no target) -- the cheapest plan at 30 dB output SQNR and the
cheapest within 0.2 top-1 points of float.  Every plan gets both profiles' figures
(``BitAllocation.hardware``; for the uniform plan the same
:class:`fxp.opt.hardware_model.HardwareModel` report).  Output: ``results.json``, ``README.md``
(the tables between the results markers) and ``hardware_costs.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))

from _common import output_dir, replace_results_table

from fxp import workflow as fw
from fxp.errors import DataError
from fxp.fileio import write_text
from fxp.opt import measure_noise, predict_sqnr_db
from fxp.opt.hardware import load_costs
from fxp.opt.hardware_model import HardwareModel
from fxp.report.render import markdown_table

MODELS = {"mnist_cnn": "mnist5k", "fashion_cnn": "fashion-mnist:test", "vgg7": "mnist5k"}
PROFILES = {"fpga": {"target": "fpga", "cost": "area"},
            "mcu": {"target": "mcu", "cost": "flash"},
            "weight_memory": {"target": None, "cost": "weight_memory"}}
TARGET_DB = 30.0
REUSE = 128
"""FPGA reuse factor of every layer (``--reuse-factor``; the cost file's default, 1, puts
one multiplier per weight: 2.2 million LUTs for uniform 8-bit mnist_cnn)."""
DROP = 0.2


def _measure(graph, plan, test) -> dict:
    rep = fw.run_simulation(graph, plan, test, batch_size=500)
    return {"test_sqnr_db": rep.output_sqnr_db, "float_top1": rep.float_top1,
            "fixed_top1": rep.fixed_top1,
            "drop_points": 100.0 * (rep.float_top1 - rep.fixed_top1)}


def _figures(hw: dict) -> dict:
    f, m = hw["fpga"], hw["mcu"]
    return {"lut": f["lut"], "dsp": f["dsp"], "bram": f["bram"], "area": f["area"],
            "flash_bytes": m["flash_bytes"], "ram_bytes": m["ram_bytes"], "cycles": m["cycles"],
            "multipliers": ", ".join(f"{r['w_bits']}x{r['a_bits']}" for r in hw["layers"])}


def _entry(graph, res, test, kind: str) -> dict:
    return {"kind": kind, "target_sqnr_db": res.target_sqnr_db,
            "predicted_db": res.predicted_sqnr_db, "select_sqnr_db": res.measured_sqnr_db,
            "select_top1": res.fixed_top1, "success": res.success, "message": res.message,
            "weight_bytes": res.weight_memory_bits / 8, "widths": res.widths,
            "acc_bits": res.acc_bits, "hardware": res.hardware,
            **_figures(res.hardware), **_measure(graph, res.plan, test)}


def run_model(model: str, spec: str, *, calib: int, select: int, test: int, reuse: int,
              log=print) -> dict:
    t0 = time.perf_counter()
    graph = fw.load_model(model)
    data = fw.load_data(spec, graph, limit=calib + select + test)
    if len(data.x) < calib + select + 1:
        raise DataError(f"{spec!r}: {len(data.x)} samples, need more than {calib + select}")
    k = calib + select
    opt_data = fw.Data(data.x[:k], data.y[:k], f"{data.name}[:{k}]")
    held = fw.Data(data.x[k:], data.y[k:], f"{data.name}[{k}:]")
    cx = data.x[:calib]
    table = measure_noise(graph, cx, n_measure=256, weight_method="sqnr")
    log(f"{model}: noise measured in {time.perf_counter() - t0:.0f} s")
    plans = []
    plan8 = fw.make_plan(graph, opt_data, bits=8, acc_bits=32, calib=calib)
    w8 = {t.name: 8 for t in table.tensors}
    hw8 = HardwareModel(graph, table, cx, load_costs(), reuse_factor=reuse).report(w8, plan8)
    n_w = sum(t.size for t in table.tensors if t.kind == "weight")
    plans.append({"profile": "uniform", "kind": "8-bit (ptq_pow2 8/8/32)",
                  "target_sqnr_db": None, "predicted_db": predict_sqnr_db(table, w8),
                  "weight_bytes": n_w, "hardware": hw8, **_figures(hw8),
                  **_measure(graph, plan8, held)})
    for name, prof in PROFILES.items():
        r30 = fw.optimize_plan(graph, opt_data, TARGET_DB, calib=calib, noise_table=table,
                               reuse_factor=reuse, split_seed=None, **prof)  # table: cx
        plans.append({"profile": name, **_entry(graph, r30, held, f"{TARGET_DB:g} dB")})
        log(f"{model}/{name}: 30 dB plan ({time.perf_counter() - t0:.0f} s)")
        try:
            ra = fw.optimize_for_accuracy(graph, opt_data, DROP, calib=calib,
                                          noise_table=table, reuse_factor=reuse,
                                          split_seed=None, **prof)
        except Exception as exc:  # noqa: BLE001 -- an unreachable drop is a result, recorded
            plans.append({"profile": name, "kind": f"drop <= {DROP:g}", "error": str(exc)})
        else:
            plans.append({"profile": name, **_entry(graph, ra, held, f"drop <= {DROP:g}")})
        log(f"{model}/{name}: accuracy plan ({time.perf_counter() - t0:.0f} s)")
    return {"model": model, "data": data.name, "calib": calib, "select": select,
            "n_test": len(held.x), "reuse_factor": reuse, "n_weights": n_w,
            "seconds": time.perf_counter() - t0,
            "plans": plans}


def _fmt(v, spec=",.0f"):
    return "n/a" if v is None else format(v, spec)


def tables(results: dict) -> list[str]:
    lines = []
    for m in results["models"]:
        lines += [(f"### {m['model']} ({m['data']}: calibration {m['calib']}, selection "
                   f"{m['select']}, test {m['n_test']} samples)"), ""]
        rows = []
        for p in m["plans"]:
            if "error" in p:
                rows.append({"profile": p["profile"], "plan": p["kind"],
                             "mult": "no plan: " + p["error"][:160]})
                continue
            tgt = "" if p.get("target_sqnr_db") is None else f" ({p['target_sqnr_db']:g} dB)"
            rows.append({"profile": p["profile"],
                         "plan": p["kind"] + (tgt if "drop" in p["kind"] else ""),
                         "sqnr": f"{p['test_sqnr_db']:.2f}", "top1": f"{100 * p['fixed_top1']:.2f}",
                         "drop": f"{p['drop_points']:+.2f}", "wb": _fmt(p["weight_bytes"]),
                         "lut": _fmt(p["lut"]), "dsp": _fmt(p["dsp"]), "bram": _fmt(p["bram"]),
                         "area": _fmt(p["area"]), "flash": _fmt(p["flash_bytes"]),
                         "ram": _fmt(p["ram_bytes"]), "cycles": _fmt(p["cycles"]),
                         "mult": p["multipliers"]})
        cols = [("profile", "profile"), ("plan", "plan"), ("sqnr", "test SQNR dB"),
                ("top1", "top-1 %"), ("drop", "drop pts"), ("wb", "weight B"), ("lut", "LUT"),
                ("dsp", "DSP"), ("bram", "BRAM18"), ("area", "area LUT-eq"),
                ("flash", "flash B"), ("ram", "RAM B"), ("cycles", "MCU cycles"),
                ("mult", "w x a per layer")]
        lines += markdown_table([{c: r.get(c, "") for c, _ in cols} for r in rows],
                                cols).splitlines()
        ft = next(p for p in m["plans"] if "error" not in p)["float_top1"]
        lines += ["", f"Float top-1 on the test samples: {100 * ft:.2f}%.", ""]
    return lines


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fxp.fileio import write_with

    ms = results["models"]
    fig, axes = plt.subplots(2, len(ms), figsize=(4.2 * len(ms), 6.5), squeeze=False)
    marks = {"uniform": "s", "fpga": "o", "mcu": "^", "weight_memory": "D"}
    for j, m in enumerate(ms):
        for i, (key, label) in enumerate((("area", "FPGA area (LUT-eq)"),
                                          ("flash_bytes", "MCU flash (bytes)"))):
            ax = axes[i][j]
            for p in m["plans"]:
                if "error" in p or p[key] is None:
                    continue
                ax.scatter(p[key], p["test_sqnr_db"], marker=marks[p["profile"]],
                           label=f"{p['profile']} {p['kind']}")
                ax.annotate(p["kind"].split(" (")[0], (p[key], p["test_sqnr_db"]), fontsize=6)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
            ax.set_xlabel(label)
            ax.set_ylabel("test output SQNR (dB)")
            ax.set_title(m["model"], fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    write_with(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--calib", type=int, default=500)
    ap.add_argument("--select", type=int, default=600)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--reuse-factor", type=int, default=REUSE)
    ap.add_argument("--quick", action="store_true", help="tiny slices (needs --out)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = output_dir(ap, args, HERE)
    if args.quick:
        args.calib, args.select, args.test = 100, 200, 300
    t0 = time.perf_counter()
    results = {"machine": f"{platform.processor() or platform.machine()}, "
                          f"{platform.system()} {platform.release()}, Python "
                          f"{platform.python_version()}",
               "command": "python reports/hardware_costs/make_report.py "
                          + " ".join(argv if argv is not None else sys.argv[1:]),
               "cost_file": str(load_costs().source), "models": [], "skipped": {}}
    for model in args.models.split(","):
        try:
            results["models"].append(run_model(model, MODELS[model], calib=args.calib,
                                               select=args.select, test=args.test,
                                               reuse=args.reuse_factor))
        except DataError as exc:
            print(f"{model}: skipped ({exc})")
            results["skipped"][model] = str(exc)
    results["seconds"] = time.perf_counter() - t0
    write_text(out / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    plot(results, out / "hardware_costs.png")
    readme = out / "README.md"
    if readme.exists():
        replace_results_table(readme, tables(results))
    else:
        write_text(readme, "\n".join(["<!-- results:start -->", *tables(results),
                                      "<!-- results:end -->"]) + "\n")
    print(f"done in {results['seconds']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
