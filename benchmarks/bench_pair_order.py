"""Which dithered pairs the pass budget should keep on a deep net (issue 23).

Run: ``python benchmarks/bench_pair_order.py [--model mobilenet_small] [--calib 200]
[--plans 60] [--json FILE]``

:func:`fxp.opt.pair_noise.measure_pair_noise` measures at most
:data:`~fxp.opt.pair_noise.MAX_PAIR_PASSES` passes, nearest pairs first (fewest
activations between the two tensors); the rest keep the clean inner product.  This
measures **every** dithered pair once (no budget) on ``--calib`` images, then rebuilds the
budgeted terms for several orders from that one measurement (whole pairs, in order, while
they fit: the module's own rule):

* ``nearest`` -- the module's order (fewest hops first, then tensor order);
* ``farthest`` -- the reverse;
* ``random-k`` -- three random orders;
* ``largest`` -- an oracle that knows each pair's effect (the largest
  ``max |measured term - clean inner product|`` first), which no real run can know;
* ``all`` (no budget) and ``none`` (no pair measured: the clean inner products).

For each, the second-order prediction (:class:`fxp.opt.interactions.Interactions`) of
``--plans`` random mixed plans (the three kinds of ``bench_fidelity.py``) is compared
with a fake-quant pass of the whole plan on the same images, so the only error left is
the model's, not the sampling's.  Printed per order: pairs kept, passes, mean and worst
``|measured - predicted|`` (dB), and how many of the pairs it keeps whose measured term
moves the pair's own noise by more than :data:`BIG` (the *effect*: ``max |measured term -
clean inner product| / (n_i + n_j)`` over the measured widths).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from bench_fidelity import _draw, _stats

BIG = 0.25
"""A pair whose measured term moves its own noise by more than a quarter (about 1 dB)."""


def _plan_error(fq, table, nodes, widths: dict[str, int]) -> float:
    """Output SQNR (dB) of a fake-quant pass with every tensor at ``widths``."""
    from fxp.opt.pair_noise import _change

    acts, weights = {}, {}
    for name, b in widths.items():
        _change(table, nodes, name, b, acts, weights)
    ref = fq.base[fq.logits].astype(np.float64).ravel()
    e = fq.run(acts, weights, None)[fq.logits].astype(np.float64).ravel() - ref
    return float(10 * np.log10((ref @ ref) / max(float(e @ e), 1e-300)))


def _effect(table, pairs, key) -> float:
    """``max |measured - clean inner product| / (n_i + n_j)`` of one pair over its measured
    widths: the measured term's change to the pair's own noise, as a fraction of it."""
    i, j = key
    ei = table.errors[i].astype(np.float64)
    ej = table.errors[j].astype(np.float64)
    ref = np.asarray(table.reference, np.float64)
    signal = float(ref @ ref)
    clean = 2.0 * (ei @ ej.T) / signal
    own = (np.einsum("ad,ad->a", ei, ei)[:, None] + np.einsum("bd,bd->b", ej, ej)[None]) / signal
    m = pairs[key]
    ok = np.isfinite(m) & (own > 0)
    return float(np.max(np.abs(m[ok] - clean[ok]) / own[ok])) if ok.any() else 0.0


def budgeted(pairs, order, cost: dict, budget: int):
    """The terms a budget of ``budget`` passes keeps, taking pairs in ``order``."""
    from fxp.opt.pair_noise import PairNoise

    kept, skipped, used = {}, [], 0
    for key in order:
        if used + cost[key] > budget:
            skipped.append(key)
            continue
        used += cost[key]
        kept[key] = pairs[key]
    return PairNoise(kept, skipped=skipped, passes=used)


def run(model: str, calib: int, n_plans: int, budget: int, seed: int = 0) -> dict:
    from fxp import workflow as fw
    from fxp.opt import measure_noise, predict_sqnr_db
    from fxp.opt.interactions import Interactions
    from fxp.opt.noise import _FakeQuant
    from fxp.opt.pair_noise import PAIR_MAX_DB, PAIR_PARTNER_MAX_DB, _work, measure_pair_noise

    g = fw.load_model(model)
    x = fw.load_data("mnist5k", g, limit=calib).x
    t0 = time.perf_counter()
    nt = measure_noise(g, x, weight_method="sqnr", n_measure=None)
    t1 = time.perf_counter()
    full = measure_pair_noise(g, x, nt, max_passes=10 ** 9)
    t2 = time.perf_counter()
    work = [w for w in _work(nt, PAIR_MAX_DB, PAIR_PARTNER_MAX_DB)
            if sum(1 + len(bs) for _, bs in w[5])]
    cost = {(w[1], w[2]): sum(1 + len(bs) for _, bs in w[5]) for w in work}
    hops = {(w[1], w[2]): w[0] for w in work}
    assert set(cost) == set(full), "the full measurement covers every pair of the work list"
    effect = {k: _effect(nt, full, k) for k in full}
    nearest = [(w[1], w[2]) for w in work]
    rng = np.random.default_rng(seed)
    orders = {"nearest": nearest, "farthest": nearest[::-1],
              **{f"random-{r}": [nearest[k] for k in rng.permutation(len(nearest))]
                 for r in range(3)},
              "largest": sorted(nearest, key=lambda k: -effect[k])}
    variants = {name: budgeted(full, o, cost, budget) for name, o in orders.items()}
    variants["all"] = full
    variants["none"] = {}
    own = measure_pair_noise(g, x, nt, max_passes=budget)
    assert set(own) == set(variants["nearest"]), "the rebuilt budget is the module's own"

    fq = _FakeQuant(g, x, nt.rounding)
    nodes = {n.name: n for n in g.nodes}
    plans, k = [], 0
    while len(plans) < n_plans:
        w = _draw(nt, rng, k % 3)
        k += 1
        if 10.0 <= predict_sqnr_db(nt, w) <= 60.0:
            plans.append((("mixed", "weight-only", "act-only")[(k - 1) % 3], w,
                          _plan_error(fq, nt, nodes, w)))
    t3 = time.perf_counter()
    big = {k for k, v in effect.items() if v > BIG}
    out = {"model": model, "calib": calib, "budget": budget, "dithered_pairs": len(full),
           "passes_all": full.passes, "seconds": {"table": round(t1 - t0, 1),
                                                  "all_pairs": round(t2 - t1, 1),
                                                  "plans": round(t3 - t2, 1)},
           "pairs_by_hops": {}, "orders": {}}
    for h in sorted(set(hops.values())):
        ks = [k for k in full if hops[k] == h]
        out["pairs_by_hops"][h] = {"pairs": len(ks), "passes": sum(cost[k] for k in ks),
                                   "median_effect": float(np.median([effect[k] for k in ks])),
                                   "max_effect": max(effect[k] for k in ks),
                                   "big": sum(k in big for k in ks)}
    for name, pn in variants.items():
        nt.pair_noise = pn
        inter = Interactions(nt)
        err = [m - inter.sqnr_db(w) for _, w, m in plans]
        row = {"pairs": len(pn), "passes": getattr(pn, "passes", 0),
               "big_kept": sum(k in big for k in pn), "error": _stats(err),
               "by_kind": {kd: _stats([m - inter.sqnr_db(w) for kk, w, m in plans if kk == kd])
                           for kd in ("mixed", "weight-only", "act-only")}}
        out["orders"][name] = row
    return out


def main(argv=None) -> None:
    from fxp.opt.pair_noise import MAX_PAIR_PASSES

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_small")
    ap.add_argument("--calib", type=int, default=200)
    ap.add_argument("--plans", type=int, default=60)
    ap.add_argument("--budget", type=int, default=MAX_PAIR_PASSES)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    out = run(a.model, a.calib, a.plans, a.budget)
    s = out["seconds"]
    print(f"{a.model} on {a.calib} images: {out['dithered_pairs']} dithered pairs, "
          f"{out['passes_all']} passes to measure all ({s['all_pairs']:.0f} s); "
          f"budget {a.budget} passes")
    print(f"hops  pairs  passes  median effect  max effect  effect > {BIG}")
    for h, r in out["pairs_by_hops"].items():
        print(f"{h:4d} {r['pairs']:6d} {r['passes']:7d} {r['median_effect']:14.2e} "
              f"{r['max_effect']:11.2e} {r['big']:14d}")
    big = out["orders"]["all"]["big_kept"]
    print(f"order       pairs  passes  kept of {big} with effect > {BIG}   mean |err| dB  "
          "worst |err| dB")
    for name, r in out["orders"].items():
        e = r["error"]
        print(f"{name:10s} {r['pairs']:6d} {r['passes']:7d} {r['big_kept']:30d} "
              f"{e['mae_db']:14.3f} {e['worst_db']:15.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
