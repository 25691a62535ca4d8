"""The held-out margin's trade-off, with the search taken out: the ideal calibration-only rule.

Run (after ``bench_fidelity_all.py``, whose JSON holds every plan under the largest budget
measured on the held-out and the calibration split)::

    .venv/bin/python benchmarks/bench_margin_tradeoff.py
        [--runs reports/optimizer_fidelity/jump/all_under_mnist_cnn.json,...]
        [--confidences 0,0.5,0.6,0.7,0.8,0.9,0.95,0.99] [--json FILE]

Issue 23 asks for two things of the first plan: it meets its target on the held-out split at
>= 95% of the targets, and it costs at most 2% more than the cheapest plan that meets the
target there (the *held-out optimum*).  Any optimizer that never looks at the held-out split
chooses on the calibration split: the best it can do with a margin of confidence ``c``
(:func:`fxp.opt.measured_goal.held_out_margin_db`) is the **ideal pick**, the cheapest plan of
the grid whose calibration SQNR is at least the target plus its own margin.  This script
computes that pick exactly for every target and confidence from the measured plans (every
plan cheaper than it was measured, so it is the grid's optimum of that rule, no search
involved), and counts at how many targets it meets the target held out and at how many it is
within 2% of the held-out optimum.  If no confidence reaches both counts, no calibration-only
rule of this form that chooses among the grid's plans meets both goals, whatever its search.

The grid is ``bench_fidelity_all.py``'s: every weight-width combination, every activation at
the widest.  ``fxp plan`` also chooses activation widths (free under the weight-memory cost),
and a plan with narrower activations measures differently, so the optimizer can land off
the grid, cheaper than the grid's pick (``reports/optimizer_fidelity`` section 14).

A target whose pick (or held-out optimum) costs more than every measured plan is reported as
unknown and left out of the counts.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1] / "reports" / "optimizer_fidelity"
DEFAULT_RUNS = (ROOT / "shuffled" / "all_under_mnist_cnn.json",
                ROOT / "small_space" / "all_under_lenet5.json.gz",
                ROOT / "shuffled" / "all_under_fashion_cnn.json")
N_CALIBRATION, N_HELD_OUT = 1000, 3000
"""The splits of every ``bench_fidelity_all.py`` run (``bench_fidelity.model_splits``)."""


def load_run(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        runs = json.load(f)
    if len(runs) != 1:
        raise SystemExit(f"{path}: expected one model's run, found {len(runs)}")
    return runs[0]


def weight_sizes(model: str, weights: list[str]) -> list[int]:
    """Elements of each weight tensor of ``model`` (its cost per bit of width)."""
    from fxp import workflow as fw
    from fxp.opt.noise import quantizable_tensors

    sizes = {t.name: t.size for t in quantizable_tensors(fw.load_model(model))}
    return [int(sizes[w]) for w in weights]


def ideal_picks(plans: list[dict], costs: list[float], targets, confidence: float) -> list:
    """Per target ``(pick, optimum)``: the indices (into ``plans``) of the cheapest plan whose
    calibration SQNR clears the target plus its held-out margin at ``confidence``, and of the
    cheapest plan measuring at least the target held out; None where no measured plan does."""
    from fxp.opt.measured_goal import held_out_margin_db

    order = sorted(range(len(plans)), key=lambda k: (costs[k], -plans[k]["db"]))
    out = []
    for t in targets:
        pick = next((k for k in order if plans[k]["calibration_db"] >= t + held_out_margin_db(
            plans[k]["calibration_se_db"], N_CALIBRATION, N_HELD_OUT, confidence)), None)
        best = next((k for k in order if plans[k]["db"] >= t), None)
        out.append((pick, best))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=",".join(str(p) for p in DEFAULT_RUNS))
    ap.add_argument("--confidences", default="0,0.5,0.6,0.7,0.8,0.9,0.95,0.99")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    confidences = [float(c) for c in a.confidences.split(",")]
    results, totals = [], {c: [0, 0, 0, 0] for c in confidences}  # met, within, both, n
    for path in (Path(p) for p in a.runs.split(",")):
        run = load_run(path)
        sizes = weight_sizes(run["model"], run["weights"])
        widths = run["widths"]
        plans = run["measured"]
        costs = [float(sum(s * widths[i] for s, i in zip(sizes, p["index"], strict=True)))
                 for p in plans]
        targets = [r["target_db"] for r in run["targets"]]
        print(f"{run['model']} ({path.name}): {len(plans)} plans measured, targets "
              f"{targets[0]:g}..{targets[-1]:g} dB", flush=True)
        for c in confidences:
            rows = []
            for t, (pick, best) in zip(targets, ideal_picks(plans, costs, targets, c),
                                       strict=True):
                if pick is None or best is None:
                    rows.append({"target_db": t, "known": False})
                    continue
                met = plans[pick]["db"] >= t
                within = costs[pick] <= 1.02 * costs[best]
                rows.append({"target_db": t, "known": True, "met": met, "within_2pct": within,
                             "pick_cost": costs[pick], "pick_held_out_db": plans[pick]["db"],
                             "optimum_cost": costs[best]})
            known = [r for r in rows if r["known"]]
            n_met = sum(r["met"] for r in known)
            n_within = sum(r["within_2pct"] for r in known)
            n_both = sum(r["met"] and r["within_2pct"] for r in known)
            for k, v in enumerate((n_met, n_within, n_both, len(known))):
                totals[c][k] += v
            misses = [f"{r['target_db']:g}" for r in known if not r["met"]]
            dear = [f"{r['target_db']:g} (+{100 * (r['pick_cost'] / r['optimum_cost'] - 1):.1f}%)"
                    for r in known if not r["within_2pct"]]
            print(f"  confidence {c:g}: ideal pick meets the target held out at {n_met}/"
                  f"{len(known)} [missed: {', '.join(misses) or '-'}], within 2% of the "
                  f"held-out optimum at {n_within}/{len(known)} [{', '.join(dear) or '-'}]; "
                  f"unknown: {len(rows) - len(known)}", flush=True)
            results.append({"model": run["model"], "confidence": c, "targets": rows})
    print("all models:")
    for c, (m, w, b, n) in totals.items():
        print(f"  confidence {c:g}: met {m}/{n} ({100 * m / max(n, 1):.0f}%), within 2% {w}/{n}, "
              f"both {b}/{n}; both goals (met >= 95% and within 2% everywhere): "
              f"{m >= 0.95 * n and w == n}", flush=True)
    if a.json:
        from fxp.fileio import write_text

        write_text(a.json, json.dumps({"results": results, "totals": {
            str(c): dict(zip(("met", "within_2pct", "both", "known"), v, strict=True))
            for c, v in totals.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
