"""Optimizer fidelity on data the optimizer never touched (issue 23).

Run: ``python benchmarks/bench_fidelity.py [--models mnist_cnn,lenet5,fashion_cnn]
[--plans 60] [--n-eval 1000] [--json FILE] [--windows]``

Per model, with the splits ``fxp plan`` uses (:mod:`fxp.opt.splits`; 5,000
samples in the order shuffled with ``--split-seed`` (0; ``none``: the data's order, as
report sections 1-11 ran): calibration positions 0..999, selection 1000..1999, held-out
2000..4999), the
noise table and the dithered pairs' joint terms (:mod:`fxp.opt.pair_noise`) measured on
every sample of the calibration split only (as ``fxp plan``), the plans built as ``fxp plan``
builds them (biases guarded), and every "measured"
figure from the integer engine on the first ``--n-eval`` held-out samples:

1. **Model error** over ``--plans`` random mixed plans (a third jittered
   around a common width, a third weight-only with 16-bit activations, a third
   activation-only; additive prediction 10..60 dB): mean and worst
   |measured - predicted| for the second-order prediction
   (:mod:`fxp.opt.interactions`) and for the additive one alone.
2. **Targets** 10..40 dB (2 dB steps): the plan of the *first* goal (the
   solves checked on the calibration split only, before any selection
   measurement) and the final plan of :func:`fxp.opt.optimize_bits`, each
   measured on the held-out samples; also the old first solve (additive model,
   no interaction check) for comparison.
3. **Against exhaustive search** (weight-memory cost; activations are free, so
   the optimum leaves them at 16 bits): every combination of the weight widths
   2..16 is scored with the held-out samples' own second-order noise (error
   vectors of single-tensor fake-quant passes over the held-out samples, with
   the calibration formats), and the cheapest meeting the target is compared
   with the optimizer's first and final plans (cost gap in %); that plan is
   then measured with the integer engine.  The **verified** optimum is the
   cheapest grid plan whose integer-engine SQNR on the held-out samples meets
   the target (:func:`verified_optimum`: the plans within
   :data:`VERIFY_WINDOW_DB` of it by that prediction measured cheapest first).
   Both peek at the held-out samples, which the optimizer must not do.
   The **calibration-verified** optimum is the same search measured on the calibration
   samples (the optimizer's own data; candidates ranked by the calibration samples' own
   second-order noise, and no dearer than the first plan where that plan meets the target
   there): how far the first plan is from the best that data allows, and how far that best
   is from the held-out optimum.

4. **The 2% test** (:func:`cheaper_meeting`): every *maximal* plan under the first plan's
   cost / 1.02 is measured with the integer engine, no prediction window, no cap, until one
   meets the target.  Exact if the SQNR never falls as a width grows; that is spot-checked one
   bit below the best failing maximal plan, and is not always true (report section 9).
   ``--n-eval 3000 --verify-max 0`` asks it on the whole held-out split alone.

``--windows`` also measures, per target, the first plan and both verified optima on each
1,000-sample window of the held-out split and on all of it: whether an optimum searched on
one window holds on the rest.

``--calibration-check off`` runs the optimizer without its integer-engine check on the
calibration split (:mod:`fxp.opt.measured_goal`).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

SEED = 61206
"""Random plans' seed.  Seed 20231's plans (the first runs) led to the bias guard and
20261206's to measuring the dithered pairs; the reported plans are new."""
DATA = {"mnist_cnn": ("mnist5k", None), "lenet5": ("mnist5k", None),
        "fashion_cnn": ("fashion-mnist:test", 5000)}


def _draw(table, rng, kind: int) -> dict[str, int]:
    lo, hi = min(table.widths), max(table.widths)
    base = int(rng.integers(3, 13))
    out = {}
    for t in table.tensors:
        b = int(np.clip(base + rng.integers(-2, 3), lo, hi))
        if (kind == 1 and t.kind == "act") or (kind == 2 and t.kind == "weight"):
            b = hi
        out[t.name] = b
    return out


def _stats(err) -> dict:
    e = np.abs(np.asarray(err))
    if not e.size:  # --plans 0
        return {"n": 0}
    return {"mae_db": round(float(e.mean()), 3), "worst_db": round(float(e.max()), 3),
            "bias_db": round(float(np.mean(err)), 3), "n": len(err)}


def held_out_errors(graph, table, hx):
    """Logits' error vectors of every (tensor, width) on ``hx`` with the calibration formats."""
    from fxp.core.format import QFormat
    from fxp.ops.fixed import dequantize, quantize
    from fxp.opt.noise import _FakeQuant

    fq = _FakeQuant(graph, hx, table.rounding)
    nodes = {n.name: n for n in graph.nodes}
    ref = fq.base[fq.logits].astype(np.float64).ravel()
    errs = np.zeros((len(table.tensors), len(table.widths), ref.size))
    for i, t in enumerate(table.tensors):
        for j, b in enumerate(table.widths):
            fmt = QFormat.parse(table.formats[t.name][b])
            if t.kind == "weight":
                codes, _ = quantize(nodes[t.layer].weight.astype(np.float64), fmt, "half_even",
                                    "saturate")
                env = fq.run({}, {t.layer: dequantize(codes, fmt).astype(np.float32)}, None)
            else:
                rnd = "half_even" if t.layer is None else table.rounding
                env = fq.run({t.tensor: (fmt, rnd)}, {}, None)
            errs[i, j] = env[fq.logits].astype(np.float64).ravel() - ref
    return errs, float(ref @ ref)


def exhaustive(table, errs, signal):
    """Cheapest weight widths (activations at the widest) per noise level, by enumeration.

    Returns ``(costs, noise, combos)`` over every combination of the weight widths.
    """
    hi = table.widths.index(max(table.widths))
    wi = [i for i, t in enumerate(table.tensors) if t.kind == "weight"]
    fixed = sum(errs[i, hi] for i, t in enumerate(table.tensors) if t.kind == "act")
    vecs = [errs[i] for i in wi]  # [n_widths, D] each
    nw = len(table.widths)
    # Gram terms: |fixed + sum_k v_k(b_k)|^2 over the grid, built pairwise
    shape = (nw,) * len(wi)
    total = np.full(shape, float(fixed @ fixed))
    for a, va in enumerate(vecs):
        sh = [1] * len(wi)
        sh[a] = nw
        total = total + (np.einsum("wd,wd->w", va, va) + 2 * (va @ fixed)).reshape(sh)
        for b in range(a + 1, len(wi)):
            g = 2 * (va @ vecs[b].T)  # [nw, nw]
            sh2 = [1] * len(wi)
            sh2[a], sh2[b] = nw, nw
            total = total + g.reshape(sh2)
    cost = np.zeros(shape)
    for a, i in enumerate(wi):
        sh = [1] * len(wi)
        sh[a] = nw
        cost = cost + (table.tensors[i].size * np.asarray(table.widths, float)).reshape(sh)
    return cost, total / signal, wi


def restrict_grid(table, weight_index, cost_grid, noise_grid, weight_widths):
    """The grids with every point outside ``weight_widths`` (``(lo, hi)`` bits for every weight;
    None: no restriction) at infinite cost and noise: no search, count or test sees it."""
    if weight_widths is None:
        return cost_grid, noise_grid
    lo, hi = weight_widths
    bad = np.array([not lo <= b <= hi for b in table.widths])
    out = np.zeros(cost_grid.shape, bool)
    for a in range(len(weight_index)):
        sh = [1] * len(weight_index)
        sh[a] = len(table.widths)
        out = out | bad.reshape(sh)
    return np.where(out, np.inf, cost_grid), np.where(out, np.inf, noise_grid)


def allowed_widths(table, weight_widths) -> dict | None:
    """``optimize_bits(allowed=...)`` of ``weight_widths`` (weights only; None: all)."""
    if weight_widths is None:
        return None
    lo, hi = weight_widths
    return {t.name: [b for b in table.widths if lo <= b <= hi] for t in table.tensors
            if t.kind == "weight"}


VERIFY_WINDOW_DB = 2.0
"""Grid plans whose held-out second-order SQNR is at least the target minus this are the
candidates of the verified exhaustive optimum."""
VERIFY_MAX = 120
"""Most integer-engine measurements per target for the verified optimum."""


def verified_optimum(cost_grid, noise_grid, target_db, measure_idx, upper=np.inf,
                     limit=VERIFY_MAX):
    """The cheapest weight widths whose **integer-engine** held-out SQNR meets the target.

    Candidates: the grid's plans cheaper than ``upper`` (the cost of a plan already measured
    meeting it) whose held-out second-order SQNR is at least ``target_db -``
    :data:`VERIFY_WINDOW_DB`, measured in order of cost (ties: the higher prediction first)
    until one meets it.  Returns ``(cost, measured_db, n_measured, complete, index)``: the
    first that meets it and its grid index (None, None, ..., None where none does: then the
    optimum costs ``upper``), and
    whether every candidate up to it was measured (False when ``limit`` ran out).
    Cheaper plans outside the window are taken as failing."""
    pred = -10 * np.log10(np.maximum(noise_grid, 1e-300))
    ok = np.flatnonzero((pred.ravel() >= target_db - VERIFY_WINDOW_DB)
                        & (cost_grid.ravel() < upper))
    order = ok[np.lexsort((-pred.ravel()[ok], cost_grid.ravel()[ok]))]
    for n, flat in enumerate(order[:limit], 1):
        idx = np.unravel_index(flat, cost_grid.shape)
        m = measure_idx(idx)
        if m >= target_db:
            return float(cost_grid[idx]), m, n, True, idx
    return None, None, min(len(order), limit), len(order) <= limit, None


def maximal_under(cost_grid, below):
    """Grid plans costing less than ``below`` that no single-width step up keeps below it.

    Boolean mask over the grid.  If the output SQNR never falls when a width grows (checked
    by :func:`cheaper_meeting`'s callers, not assumed silently), every plan under the budget
    is dominated by one of these, so they alone decide whether any plan under it meets a
    target."""
    under = cost_grid < below
    maximal = under.copy()
    for a in range(cost_grid.ndim):
        up = np.zeros_like(under)
        inner = [slice(None)] * cost_grid.ndim
        inner[a] = slice(0, -1)
        up[tuple(inner)] = np.take(cost_grid, range(1, cost_grid.shape[a]), axis=a) < below
        maximal &= ~up
    return maximal


def cheaper_meeting(cost_grid, noise_grid, target_db, below, measure_idx):
    """Does any grid plan cheaper than ``below`` meet the target on the integer engine?

    The direct test of the 2% goal (``below`` = the first plan's cost / 1.02), with no
    prediction window: every *maximal* plan under the budget (:func:`maximal_under`) is a
    candidate, measured in order of the held-out second-order prediction, highest first,
    until one meets the target.  Returns ``(index, measured_db, n_measured, n_candidates,
    best_failing)``: ``index`` None where no candidate meets it, and ``best_failing`` the
    (index, measured dB) of the highest-measured candidate that fails (for the monotonicity
    check), or None."""
    pred = -10 * np.log10(np.maximum(noise_grid, 1e-300)).ravel()
    ok = np.flatnonzero(maximal_under(cost_grid, below).ravel())
    order = ok[np.lexsort((cost_grid.ravel()[ok], -pred[ok]))]
    best = None
    for n, flat in enumerate(order, 1):
        idx = np.unravel_index(flat, cost_grid.shape)
        m = measure_idx(idx)
        if m >= target_db:
            return idx, m, n, len(order), best
        if best is None or m > best[1]:
            best = (idx, m)
    return None, None, len(order), len(order), best


def model_splits(model: str, split_seed: int | None, n_eval: int | None = None):
    """``(graph, data, splits, calibration indices, held-out indices)`` of ``model`` on its
    :data:`DATA`, cut as ``fxp plan`` cuts it (1,000 calibration samples, ``split_seed``);
    the held-out indices are those of the first ``n_eval`` held-out positions (all: None)."""
    from fxp import workflow as fw
    from fxp.opt.splits import split_data

    spec, limit = DATA[model]
    g = fw.load_model(model)
    d = fw.load_data(spec, g, limit=limit)
    sp = split_data(len(d.x), 1000, seed=split_seed)
    h0, h1 = sp.held_out
    h1 = h1 if n_eval is None else min(h1, h0 + n_eval)
    return g, d, sp, sp.indices("calibration"), np.sort(sp.order[h0:h1])


def grid_widths(table, weight_index, idx) -> dict[str, int]:
    """The widths of grid point ``idx`` (one index per weight tensor of ``weight_index``, as
    :func:`exhaustive` returns it): those weights' widths, every other tensor at the widest."""
    w = dict.fromkeys(table.names, max(table.widths))
    for a, i in enumerate(weight_index):
        w[table.names[i]] = table.widths[idx[a]]
    return w


def steps_down(idx):
    """The grid indices one width step below ``idx`` in each dimension."""
    for a, i in enumerate(idx):
        if i > 0:
            yield tuple(i - 1 if k == a else j for k, j in enumerate(idx))


def run_model(model: str, n_plans: int, n_eval: int, targets, interactions=True,
              margin_se: float = 0.0, calibration_check: bool = True,
              windows: bool = False, verify_max: int = VERIFY_MAX, checkpoint=None,
              confidence: float = 0.95, split_seed: int | None = 0,
              maximal_test: bool = True, weight_widths: tuple[int, int] | None = None) -> dict:
    """Every number of one model; ``checkpoint(out)``, when given, sees the partial result
    after each target (a stopped run keeps the targets it finished)."""
    from fxp.opt import measure_noise, optimize_bits, plan_for_widths, predict_sqnr_db
    from fxp.opt.interactions import Interactions
    from fxp.opt.model import BIAS_GUARD_BITS
    from fxp.opt.pair_noise import measure_pair_noise
    from fxp.sim.evaluate import simulate

    spec = DATA[model][0]
    g, d, sp, ci, hi = model_splits(model, split_seed, n_eval)
    cx, cy = d.x[ci], d.y[ci]
    h0 = sp.held_out[0]
    hx, hy = d.x[hi], d.y[hi]
    t0 = time.perf_counter()
    nt = measure_noise(g, cx, weight_method="sqnr", n_measure=None)  # as fxp plan: every sample
    t_noise = time.perf_counter() - t0
    t0 = time.perf_counter()
    nt.pair_noise = measure_pair_noise(g, cx, nt)  # as optimize_bits does on first use
    t_pairs = time.perf_counter() - t0
    inter = Interactions(nt)
    out = {"model": model, "data": spec, "n_data": len(d.x), "splits": sp.to_dict(),
           "held_out_evaluated": [h0, h0 + len(hx)], "noise_seconds": round(t_noise, 1),
           "pair_seconds": round(t_pairs, 1),
           "pair_passes": sum(int(np.isfinite(m).sum()) for m in nt.pair_noise.values()),
           "settings": {"interactions": interactions, "margin_se": margin_se,
                        "calibration_check": calibration_check, "confidence": confidence,
                        "split_seed": split_seed,
                        "weight_widths": None if weight_widths is None else list(weight_widths)}}
    print(f"== {model} on {spec}: {sp.describe()}; noise table {t_noise:.0f} s, dithered pairs "
          f"{t_pairs:.0f} s; integer-engine checks on held-out positions {h0}..{h0 + len(hx) - 1}",
          flush=True)

    measured, measured_cal = {}, {}

    def measure(w, split="held-out"):  # the plan fxp plan builds (biases guarded)
        key = tuple(int(w[n]) for n in nt.names)
        memo, (x, y) = ((measured, (hx, hy)) if split == "held-out"
                        else (measured_cal, (cx, cy)))
        if key not in memo:
            plan = plan_for_widths(g, cx, nt, w, bias_guard=BIAS_GUARD_BITS)
            memo[key] = simulate(g, plan, x, y).output_sqnr_db
        return memo[key]

    def on_windows(w):  # the plan on each 1000-position window of the held-out split, and on all
        plan = plan_for_widths(g, cx, nt, w, bias_guard=BIAS_GUARD_BITS)
        lo, top = sp.held_out
        edges = list(range(lo, top, 1000)) + [top]

        def at(a, b):
            idx = np.sort(sp.order[a:b])
            return simulate(g, plan, d.x[idx], d.y[idx]).output_sqnr_db

        out = {f"{a}..{b - 1}": at(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)}
        out[f"{lo}..{top - 1}"] = at(lo, top)
        return out

    rng = np.random.default_rng(SEED)
    rows, k = [], 0
    while len(rows) < n_plans:
        w = _draw(nt, rng, k % 3)
        k += 1
        add = predict_sqnr_db(nt, w)
        if not 10.0 <= add <= 60.0:
            continue
        rows.append({"kind": ("mixed", "weight-only", "act-only")[(k - 1) % 3],
                     "widths": w, "additive_db": add, "predicted_db": inter.sqnr_db(w),
                     "measured_db": measure(w)})
    e2 = [r["measured_db"] - r["predicted_db"] for r in rows]
    e1 = [r["measured_db"] - r["additive_db"] for r in rows]
    out["random_plans"] = {"second_order": _stats(e2), "additive": _stats(e1),
                           "by_kind": {kd: _stats([r["measured_db"] - r["predicted_db"]
                                                   for r in rows if r["kind"] == kd])
                                       for kd in ("mixed", "weight-only", "act-only")},
                           "plans": rows}
    print(f"  {len(rows)} random plans: second-order MAE {out['random_plans']['second_order']}; "
          f"additive {out['random_plans']['additive']}", flush=True)
    errs, sig = held_out_errors(g, nt, hx)
    cost_grid, noise_grid, wi = exhaustive(nt, errs, sig)
    cal_noise_grid = exhaustive(nt, *held_out_errors(g, nt, cx))[1]
    cost_grid, noise_grid = restrict_grid(nt, wi, cost_grid, noise_grid, weight_widths)
    cal_noise_grid = restrict_grid(nt, wi, cost_grid, cal_noise_grid, weight_widths)[1]
    allowed = allowed_widths(nt, weight_widths)

    def widths_at(idx):  # a grid point: weight widths, activations at the widest
        return grid_widths(nt, wi, idx)

    res_rows = []
    for t in targets:
        r = optimize_bits(g, d, t, noise_table=nt, n_eval=n_eval, interactions=interactions,
                          margin_se=margin_se, calibration_check=calibration_check,
                          confidence=confidence, split_seed=split_seed, allowed=allowed)
        first = next(s for s in r.solves if s.get("chosen"))
        wf = dict(zip(nt.names, first["widths"], strict=True))
        first_db = r.measured_sqnr_db if wf == r.widths else measure(wf)
        old = optimize_bits(g, d, t, noise_table=nt, interactions=False, verify=False,
                            calibration_check=False, split_seed=split_seed, allowed=allowed)
        old_db = measure(old.widths)
        ok = noise_grid <= 10 ** (-t / 10)
        row = {"target_db": t, "first_held_out_db": first_db, "first_met": first_db >= t,
               "final_held_out_db": r.measured_sqnr_db, "final_met": r.success,
               "selection_db": r.selection_sqnr_db, "n_solves": len(r.solves),
               "internal_targets_db": [s["internal_target_db"] for s in r.solves],
               "cost": r.cost, "first_cost": first["cost"],
               "old_first_held_out_db": old_db, "old_first_met": old_db >= t,
               "old_cost": old.cost}
        row["first_calibration_db"] = first.get("calibration_sqnr_db")
        if ok.any():
            idx = np.unravel_index(np.argmin(np.where(ok, cost_grid, np.inf)), cost_grid.shape)
            row["exhaustive_cost"] = float(cost_grid[idx])
            row["exhaustive_measured_db"] = measure(widths_at(idx))
            row["gap_pct"] = 100 * (r.cost / row["exhaustive_cost"] - 1)
            row["first_gap_pct"] = 100 * (first["cost"] / row["exhaustive_cost"] - 1)
        ex_w = widths_at(idx) if ok.any() else None
        met = [(c, w) for c, m, w in ((r.cost, r.measured_sqnr_db, r.widths),
                                      (first["cost"], first_db, wf),
                                      (row.get("exhaustive_cost"),
                                       row.get("exhaustive_measured_db"), ex_w))
               if c is not None and m >= t]
        upper, upper_w = min(met, key=lambda cw: cw[0], default=(np.inf, None))
        vn = cn = 0
        if verify_max > 0:  # the cost-ascending searches (capped)
            vc, vm, vn, complete, vi = verified_optimum(cost_grid, noise_grid, t,
                                                        lambda i: measure(widths_at(i)), upper,
                                                        verify_max)
            vc = vc if vc is not None else (upper if np.isfinite(upper) else None)
            row["verified_measured_plans"], row["verified_complete"] = vn, complete
            if vc is not None:
                row["verified_cost"], row["verified_measured_db"] = vc, vm
                row["verified_widths"] = widths_at(vi) if vi is not None else upper_w
                row["verified_gap_pct"] = 100 * (r.cost / vc - 1)
                row["first_verified_gap_pct"] = 100 * (first["cost"] / vc - 1)
            # the same search on the calibration split: the best a plan chosen from the
            # optimizer's own data could do (the first plan is measured there, so it bounds it)
            cal_first = row["first_calibration_db"]
            cal_upper = first["cost"] if cal_first is not None and cal_first >= t else np.inf
            cc, cm, cn, ccomp, ci = verified_optimum(
                cost_grid, cal_noise_grid, t, lambda i: measure(widths_at(i), "calibration"),
                cal_upper, verify_max)
            cc = cc if cc is not None else (cal_upper if np.isfinite(cal_upper) else None)
            row["calibration_verified_measured_plans"] = cn
            row["calibration_verified_complete"] = ccomp
            if cc is not None:
                row["calibration_verified_cost"] = cc
                row["calibration_verified_widths"] = widths_at(ci) if ci is not None else wf
                row["first_calibration_verified_gap_pct"] = 100 * (first["cost"] / cc - 1)
                if vc is not None:
                    row["calibration_vs_held_out_optimum_pct"] = 100 * (cc / vc - 1)
        row["first_widths"] = wf
        if maximal_test:  # the 2% test on every maximal plan (bench_fidelity_all: every plan)
            gi, gm, gn, gc, fail = cheaper_meeting(cost_grid, noise_grid, t, first["cost"] / 1.02,
                                                   lambda i: measure(widths_at(i)))
            row["cheaper_by_2pct"] = {"candidates": gc, "measured": gn, "found": gi is not None}
            if fail is not None:  # monotonicity: does a plan below the best failing one meet it?
                down = {str(widths_at(i)): measure(widths_at(i)) for i in steps_down(fail[0])}
                row["cheaper_by_2pct"].update(
                    best_failing={"widths": widths_at(fail[0]), "measured_db": fail[1]},
                    one_step_below_db=down,
                    one_step_below_meeting=sum(v >= t for v in down.values()))
            # the final plan (after the selection split): the first plan is a witness where it
            # meets the target 2% cheaper; otherwise the same test
            if r.cost <= first["cost"]:
                row["final_within_2pct"] = not row["cheaper_by_2pct"]["found"]
            elif first_db >= t and first["cost"] < r.cost / 1.02:
                row["final_within_2pct"] = False
            else:
                found = cheaper_meeting(cost_grid, noise_grid, t, r.cost / 1.02,
                                        lambda i: measure(widths_at(i)))[0]
                row["final_within_2pct"] = found is None
            if gi is not None:
                row["cheaper_by_2pct"].update(widths=widths_at(gi), measured_db=gm,
                                              cost=float(cost_grid[gi]),
                                              calibration_db=measure(widths_at(gi),
                                                                     "calibration"))
        if windows:  # is the held-out optimum a property of the window it was searched on?
            row["first_windows_db"] = on_windows(wf)
            for k in ("verified", "calibration_verified"):
                if f"{k}_widths" in row:
                    row[f"{k}_windows_db"] = (row["first_windows_db"]
                                              if row[f"{k}_widths"] == wf
                                              else on_windows(row[f"{k}_widths"]))
            print(f"  target {t:g} on held-out windows: first {row['first_windows_db']}; "
                  f"verified {row.get('verified_windows_db')}; calibration-verified "
                  f"{row.get('calibration_verified_windows_db')}", flush=True)
        res_rows.append(row)
        if checkpoint is not None:
            checkpoint({**out, "targets": res_rows, "partial": True})
        print(f"  target {t:g}: first {first_db:.2f} ({'met' if first_db >= t else 'MISSED'}; "
              f"calibration {row['first_calibration_db'] or math.nan:.2f}), "
              f"final {r.measured_sqnr_db:.2f} after {len(r.solves)} solves; old first "
              f"{old_db:.2f}; first plan's gap vs exhaustive "
              f"{row.get('first_gap_pct', math.nan):+.1f}% (that plan measures "
              f"{row.get('exhaustive_measured_db', math.nan):.2f}), vs verified "
              f"{row.get('first_verified_gap_pct', math.nan):+.1f}% ({vn} measured); vs the "
              f"calibration split's verified optimum "
              f"{row.get('first_calibration_verified_gap_pct', math.nan):+.1f}% ({cn} measured), "
              "which is "
              f"{row.get('calibration_vs_held_out_optimum_pct', math.nan):+.1f}% from the "
              "held-out one", flush=True)
        cb = row.get("cheaper_by_2pct")
        if cb is None:
            continue
        print(f"  target {t:g}: maximal plans 2% cheaper than the first: "
              f"{cb['candidates']}, {cb['measured']} measured; "
              + (f"one meets it ({cb['measured_db']:.2f} dB held-out, "
                 f"{cb['calibration_db']:.2f} dB calibration)" if cb["found"] else
                 "none meets it") + (f"; best failing {cb['best_failing']['measured_db']:.2f} "
                                     f"dB, {cb['one_step_below_meeting']} of "
                                     f"{len(cb['one_step_below_db'])} plans one step below it "
                                     "meet the target" if "best_failing" in cb else ""),
              flush=True)
    n = len(res_rows)
    out["targets"] = res_rows
    out["summary"] = {
        "first_solve_met": f"{sum(r['first_met'] for r in res_rows)}/{n}",
        "final_met": f"{sum(r['final_met'] for r in res_rows)}/{n}",
        "old_first_solve_met": f"{sum(r['old_first_met'] for r in res_rows)}/{n}",
        "worst_first_shortfall_db": round(max(0.0, max(t["target_db"] - t["first_held_out_db"]
                                                       for t in res_rows)), 3),
        "max_gap_pct": round(max(r.get("gap_pct", -math.inf) for r in res_rows), 2),
        "mean_gap_pct": round(float(np.mean([r["gap_pct"] for r in res_rows
                                             if "gap_pct" in r])), 2),
        "first_within_2pct": f"{sum(r.get('first_gap_pct', 99) <= 2 for r in res_rows)}/{n}",
        "first_within_2pct_verified":
            f"{sum(r.get('first_verified_gap_pct', 99) <= 2 for r in res_rows)}/{n}",
        "first_within_2pct_calibration_verified":
            f"{sum(r.get('first_calibration_verified_gap_pct', 99) <= 2 for r in res_rows)}/{n}",
        "calibration_optimum_within_2pct_of_held_out":
            f"{sum(r.get('calibration_vs_held_out_optimum_pct', 99) <= 2 for r in res_rows)}"
            f"/{n}",
        "first_met_and_within_2pct_verified":
            f"{sum(r['first_met'] and r.get('first_verified_gap_pct', 99) <= 2 for r in res_rows)}"
            f"/{n}",
    }
    if maximal_test:
        out["summary"].update({
            "first_within_2pct_of_maximal_plans":
                f"{sum(not r['cheaper_by_2pct']['found'] for r in res_rows)}/{n}",
            "final_within_2pct_of_maximal_plans":
                f"{sum(r['final_within_2pct'] for r in res_rows)}/{n}",
            "monotonicity_violations": sum(r["cheaper_by_2pct"].get("one_step_below_meeting",
                                                                    0) for r in res_rows)})
    if verify_max == 0:  # no cost-ascending searches ran
        for k in ("first_within_2pct_verified", "first_within_2pct_calibration_verified",
                  "calibration_optimum_within_2pct_of_held_out",
                  "first_met_and_within_2pct_verified"):
            del out["summary"][k]
    print(f"  summary: {out['summary']}", flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mnist_cnn,lenet5,fashion_cnn")
    ap.add_argument("--plans", type=int, default=60)
    ap.add_argument("--n-eval", type=int, default=1000)
    ap.add_argument("--targets", default="10:40:2", help="first:last:step in dB")
    ap.add_argument("--json", default=None, help="write every number here")
    ap.add_argument("--interactions", choices=["check", "milp"], default="check",
                    help="the optimizer's use of the pairwise terms: check each MILP optimum "
                         "and search locally (default), or put them in the MILP")
    ap.add_argument("--margin-se", type=float, default=0.0, metavar="Z",
                    help="the plan's second-order prediction must reach the target plus Z of "
                         "its standard errors (optimize_bits(margin_se=Z))")
    ap.add_argument("--calibration-check", choices=["on", "off"], default="on",
                    help="the optimizer's integer-engine check on the calibration split")
    ap.add_argument("--confidence", type=float, default=0.95,
                    help="the optimizer's held-out margin (optimize_bits(confidence=P); 0: "
                         "none)")
    ap.add_argument("--split-seed", default="0",
                    help="seed of the splits' random order, or 'none' for the data's order")
    ap.add_argument("--maximal-test", choices=["on", "off"], default="on",
                    help="the 2%% test on every maximal plan (off: leave the 2%% question to "
                         "bench_fidelity_all.py, which measures every plan)")
    ap.add_argument("--windows", action="store_true",
                    help="also measure the first plan and both verified optima on each "
                         "1000-sample window of the held-out split and on all of it")
    ap.add_argument("--verify-max", type=int, default=VERIFY_MAX,
                    help="most integer-engine measurements per target of each verified "
                         "optimum's search (0: skip both; the maximal-plan test still runs)")
    ap.add_argument("--weight-widths", default=None, metavar="LO:HI",
                    help="a small search space: every weight's width in LO..HI bits, for the "
                         "optimizer (allowed=) and every exhaustive search alike")
    a = ap.parse_args(argv)
    ww = None if a.weight_widths is None else tuple(int(v) for v in a.weight_widths.split(":"))
    lo, hi, st = (float(v) for v in a.targets.split(":"))
    targets = [float(t) for t in np.arange(lo, hi + st / 2, st)]
    mode = True if a.interactions == "check" else "milp"
    from fxp.fileio import write_text

    results = []

    def save(partial=None):  # after each target, so a stopped run keeps what it measured
        if a.json:
            done = results + ([partial] if partial is not None else [])
            write_text(a.json, json.dumps(done, indent=1, default=float))

    for m in a.models.split(","):
        results.append(run_model(m, a.plans, a.n_eval, targets, mode, a.margin_se,
                                 a.calibration_check == "on", a.windows, a.verify_max,
                                 checkpoint=save, confidence=a.confidence,
                                 split_seed=None if a.split_seed == "none"
                                 else int(a.split_seed),
                                 maximal_test=a.maximal_test == "on", weight_widths=ww))
        save()


if __name__ == "__main__":
    main()
