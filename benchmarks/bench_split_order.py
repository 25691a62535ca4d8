"""Contiguous ranges against a shuffled order: how far one split's SQNR predicts another's.

Run: ``python benchmarks/bench_split_order.py [--models mnist_cnn,lenet5,fashion_cnn]
[--weight-bits 6] [--orders 200] [--json FILE]``

Per model, one plan (every weight at ``--weight-bits``, activations at 16 bits, built on the
first 1,000 samples as ``fxp plan`` builds them) runs once over the 5,000 samples
``bench_fidelity.py`` uses, keeping each sample's signal and noise power (float and integer
logits).  From those:

* the SQNR of each contiguous 1,000-sample range and their standard deviation;
* the delta-method standard error of a 1,000-sample measurement
  (:func:`fxp.sim.sqnr_error.sqnr_standard_error_db`, samples as independent draws), per range;
* over ``--orders`` random orders (seeds 0..), the SQNR difference between the held-out part
  (positions 2000..4999) and the calibration part (0..999), as :mod:`fxp.opt.splits` cuts
  them: its standard deviation, and the delta-method prediction of it.

If the samples were stored in no particular order the ranges would spread like the standard
error says.  Where they spread more, contiguous splits are biased samples of each other.
"""

from __future__ import annotations

import argparse
import json
import math

import bench_fidelity as bf
import numpy as np


def sqnr_of(s, n):
    return 10 * math.log10(s.sum() / n.sum())


def run(model: str, weight_bits: int, orders: int) -> dict:
    from fxp import workflow as fw
    from fxp.opt import measure_noise, plan_for_widths
    from fxp.opt.model import BIAS_GUARD_BITS
    from fxp.opt.splits import split_data
    from fxp.sim.compile import compile_plan
    from fxp.sim.float_ref import run_float
    from fxp.sim.integer import logits_tensor, run_integer
    from fxp.sim.sqnr_error import sample_powers, sqnr_standard_error_db
    from fxp.sim.values import to_float

    spec, limit = bf.DATA[model]
    g = fw.load_model(model)
    d = fw.load_data(spec, g, limit=limit)
    x = d.x[:5000]
    nt = measure_noise(g, x[:1000], widths=[weight_bits, 16], n_measure=256)
    w = {t.name: (weight_bits if t.kind == "weight" else 16) for t in nt.tensors}
    cm = compile_plan(g, plan_for_widths(g, x[:1000], nt, w, bias_guard=BIAS_GUARD_BITS))
    logits = logits_tensor(cm)
    fs, qs = [], []
    for a in range(0, len(x), 250):  # float reference and integer engine, batch by batch
        xb = x[a:a + 250]
        fs.append(run_float(g, xb, tensors=[logits])[logits])
        qs.append(to_float(run_integer(cm, xb, keep=True).values[logits]))
    s, n = sample_powers(np.concatenate(fs), np.concatenate(qs))
    ranges = [(a, a + 1000) for a in range(0, len(x), 1000)]
    range_db = [sqnr_of(s[a:b], n[a:b]) for a, b in ranges]
    range_se = [sqnr_standard_error_db(s[a:b], n[a:b]) for a, b in ranges]
    diffs, predicted = [], []
    for seed in range(orders):
        sp = split_data(len(x), 1000, seed=seed)
        ci, hi = sp.indices("calibration"), sp.indices("held_out")
        diffs.append(sqnr_of(s[hi], n[hi]) - sqnr_of(s[ci], n[ci]))
        se_c, se_h = sqnr_standard_error_db(s[ci], n[ci]), sqnr_standard_error_db(s[hi], n[hi])
        predicted.append(math.hypot(se_c, se_h))
    ordered = sqnr_of(s[2000:], n[2000:]) - sqnr_of(s[:1000], n[:1000])
    out = {"model": model, "weight_bits": weight_bits, "sqnr_db": sqnr_of(s, n),
           "ranges": [f"{a}..{b - 1}" for a, b in ranges], "range_db": range_db,
           "range_sd_db": float(np.std(range_db, ddof=1)), "range_se_db": range_se,
           "data_order_held_minus_cal_db": ordered,
           "shuffled_held_minus_cal_sd_db": float(np.std(diffs, ddof=1)),
           "shuffled_held_minus_cal_mean_db": float(np.mean(diffs)),
           "shuffled_predicted_sd_db": float(np.sqrt(np.mean(np.square(predicted)))),
           "orders": orders}
    print(f"{model} ({weight_bits}-bit weights, {out['sqnr_db']:.2f} dB on all 5,000): "
          f"contiguous 1,000-sample ranges {', '.join(f'{v:.2f}' for v in range_db)} dB, "
          f"standard deviation {out['range_sd_db']:.2f} dB against a standard error of "
          f"{np.mean(range_se):.2f} dB; data order: held-out - calibration "
          f"{ordered:+.2f} dB; {orders} shuffled orders: held-out - calibration standard "
          f"deviation {out['shuffled_held_minus_cal_sd_db']:.2f} dB (mean "
          f"{out['shuffled_held_minus_cal_mean_db']:+.3f}), predicted "
          f"{out['shuffled_predicted_sd_db']:.2f} dB", flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mnist_cnn,lenet5,fashion_cnn")
    ap.add_argument("--weight-bits", type=int, default=6)
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    out = [run(m, a.weight_bits, a.orders) for m in a.models.split(",")]
    if a.json:
        from fxp.fileio import write_text

        write_text(a.json, json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
