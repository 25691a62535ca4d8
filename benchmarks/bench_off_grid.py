"""Do the optimizer's first plans lie off the exhaustive grid, and what do their activation
widths do?

Run (after ``bench_fidelity.py`` wrote ``DIR/MODEL.json`` on the whole held-out split)::

    .venv/bin/python benchmarks/bench_off_grid.py [--from reports/optimizer_fidelity/jump]
        [--models mnist_cnn,lenet5,fashion_cnn]

The every-plan test (``bench_fidelity_all.py``) measures the grid of weight widths with every
activation at 16 bits.  ``fxp plan`` also chooses activation widths, which cost nothing under
the weight-memory cost, so its plan can lie off that grid.  For each target this prints the
first plan's integer-engine SQNR on the held-out and calibration splits and the same for the
same weight widths with every activation at the widest (the grid plan of those weights), both
built as ``fxp plan`` builds them and measured by :func:`fxp.sim.evaluate.simulate`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import bench_fidelity as bf

DEFAULT = Path(__file__).resolve().parents[1] / "reports" / "optimizer_fidelity" / "jump"


def main(argv=None) -> int:
    from fxp.opt import measure_noise, plan_for_widths
    from fxp.opt.model import BIAS_GUARD_BITS
    from fxp.sim.evaluate import simulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", type=Path, default=DEFAULT)
    ap.add_argument("--models", default="mnist_cnn,lenet5,fashion_cnn")
    a = ap.parse_args(argv)
    for model in a.models.split(","):
        run = json.loads((a.src / f"{model}.json").read_text())[0]
        seed = run.get("settings", {}).get("split_seed")
        g, d, _, ci, hi = bf.model_splits(model, seed)
        cx, cy, hx, hy = d.x[ci], d.y[ci], d.x[hi], d.y[hi]
        nt = measure_noise(g, cx, weight_method="sqnr", n_measure=None)  # as fxp plan
        weights = {t.name for t in nt.tensors if t.kind == "weight"}
        top = max(nt.widths)
        off = 0
        for r in run["targets"]:
            w = r["first_widths"]
            grid = {k: (v if k in weights else top) for k, v in w.items()}
            got = []
            for ws in (w, grid):
                plan = plan_for_widths(g, cx, nt, ws, bias_guard=BIAS_GUARD_BITS)
                got.append((simulate(g, plan, hx, hy).output_sqnr_db,
                            simulate(g, plan, cx, cy).output_sqnr_db))
            narrow = {k: v for k, v in w.items() if k not in weights and v < top}
            off += bool(narrow)
            print(f"{model} {r['target_db']:g} dB: plan held-out {got[0][0]:.2f} / calibration "
                  f"{got[0][1]:.2f} dB; activations at {top}: {got[1][0]:.2f} / {got[1][1]:.2f} "
                  f"dB; narrower activations: {narrow or 'none'}", flush=True)
        print(f"{model}: {off}/{len(run['targets'])} first plans off the grid", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
