"""What the prediction jump costs in time and saves in bits, against the search without it.

Run::

    .venv/bin/python benchmarks/bench_jump_time.py [--model lenet5] [--targets 16,22,30]

Per target, ``optimize_bits`` runs twice in this process on the same splits and the same noise
table (measured once, dithered pairs included): with the jump
(``jumps`` = :data:`fxp.opt.prediction_jump.MAX_JUMPS`, the default) and with ``jumps=0``
(``fxp plan --jumps 0``: the search as it was before the jump), in alternating order.
Printed: each run's wall time, their ratio, the plans' costs and the number of solves.
Ratios only: the machine is shared.
"""

from __future__ import annotations

import argparse
import time

import bench_fidelity as bf


def main(argv=None) -> int:
    from fxp.opt import measure_noise, optimize_bits
    from fxp.opt.pair_noise import measure_pair_noise
    from fxp.opt.prediction_jump import MAX_JUMPS as default

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--targets", default="16,22,30")
    a = ap.parse_args(argv)
    g, d, sp, ci, _ = bf.model_splits(a.model, 0)
    cx = d.x[ci]
    t0 = time.perf_counter()
    nt = measure_noise(g, cx, weight_method="sqnr", n_measure=None)
    nt.pair_noise = measure_pair_noise(g, cx, nt)
    print(f"{a.model}: {len(nt.tensors)} tensors; noise table and pairs "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    ratios = []
    for k, t in enumerate(float(x) for x in a.targets.split(",")):
        out = {}
        for jumps in ((default, 0) if k % 2 == 0 else (0, default)):
            t1 = time.perf_counter()
            r = optimize_bits(g, (d.x, d.y), t, noise_table=nt, n_eval=3000, jumps=jumps)
            out[jumps] = (time.perf_counter() - t1, r.cost, len(r.solves),
                          r.measured_sqnr_db)
        (tj, cj, nj, mj), (t0_, c0, n0, m0) = out[default], out[0]
        ratios.append(tj / t0_)
        print(f"  {t:g} dB: with the jump {tj:.1f} s, {cj:,.0f} bits, {nj} solves, held-out "
              f"{mj:.2f} dB; without {t0_:.1f} s, {c0:,.0f} bits, {n0} solves, held-out "
              f"{m0:.2f} dB; time ratio {tj / t0_:.2f}, cost ratio {cj / c0:.3f}", flush=True)
    print(f"  time ratio, mean {sum(ratios) / len(ratios):.2f}, largest {max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
