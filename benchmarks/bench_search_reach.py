"""Where the second-order prediction ranks the cheaper plans that meet the optimizer's criterion.

Run (after ``bench_fidelity_all.py`` on a small search space)::

    .venv/bin/python benchmarks/bench_search_reach.py [--model lenet5]
        [--from reports/optimizer_fidelity/small_space/all_under_lenet5.json.gz]

For each target, over every plan measured by ``bench_fidelity_all.py`` that costs less than the
optimizer's first plan / 1.02: how many meet the optimizer's own criterion (calibration SQNR >=
target + held-out margin of confidence 0.95) and the target on the held-out split, and the rank,
by the second-order prediction (:mod:`fxp.opt.interactions`, noise table and dithered pairs
measured on the calibration split as ``fxp plan`` measures them), of the first plan that meets
the criterion.  A rank near 0 means a search that measured the plans the prediction ranks best
among the cheaper ones would have found it; the measured neighbour search
(:mod:`fxp.opt.neighbour_search`) only looks one to three width changes away.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_fidelity as bf

DEFAULT = (Path(__file__).resolve().parents[1] / "reports" / "optimizer_fidelity" /
           "small_space" / "all_under_lenet5.json.gz")


def main(argv=None) -> int:
    from fxp.opt import measure_noise
    from fxp.opt.interactions import Interactions
    from fxp.opt.measured_goal import held_out_margin_db
    from fxp.opt.pair_noise import measure_pair_noise

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--from", dest="src", type=Path, default=DEFAULT)
    a = ap.parse_args(argv)
    opener = gzip.open if a.src.suffix == ".gz" else open
    with opener(a.src, "rt") as f:
        run = next(r for r in json.load(f) if r["model"] == a.model)
    g, d, sp, ci, hi = bf.model_splits(a.model, run["split_seed"])
    cx = d.x[ci]
    nt = measure_noise(g, cx, weight_method="sqnr", n_measure=None)  # as fxp plan
    nt.pair_noise = measure_pair_noise(g, cx, nt)
    inter = Interactions(nt)
    wi = [i for i, t in enumerate(nt.tensors) if t.kind == "weight"]
    n_cal, n_held = len(ci), len(hi)

    def cost(idx):
        return sum(nt.tensors[i].size * nt.widths[k] for i, k in zip(wi, idx, strict=True))

    for row in run["targets"]:
        t, first = row["target_db"], row["first_cost"]
        info = []
        for m in run["measured"]:
            idx = tuple(m["index"])
            if cost(idx) >= first / 1.02:
                continue
            need = t + held_out_margin_db(m["calibration_se_db"], n_cal, n_held,
                                          run["confidence"])
            info.append((inter.sqnr_db(bf.grid_widths(nt, wi, idx)),
                         m["calibration_db"] >= need, m["db"] >= t, idx))
        info.sort(key=lambda x: -x[0])
        rank = next((k for k, x in enumerate(info) if x[1]), None)
        best = f"{info[0][0]:.2f} dB" if info else "none"
        print(f"{a.model} {t:g} dB: {len(info)} plans under first cost / 1.02; "
              f"{sum(x[1] for x in info)} meet the criterion, {sum(x[2] for x in info)} the "
              f"target held out; best second-order prediction among them {best}; rank of the "
              f"first criterion-meeting plan by prediction: {rank}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
