"""The optimizer's noise table in-process vs on a local Dask cluster (issue 20).

Run: ``python benchmarks/bench_dist.py [--model vgg7] [--data mnist5k] [--images 64]
[--workers 2]``

Measures :func:`fxp.opt.noise.measure_noise` (every quantizable tensor x widths
2..16, ``weight_method="sqnr"`` as ``fxp plan --target-sqnr`` uses it) on the
first ``--images`` samples, then :func:`fxp.dist.noise.measure_noise_dist` on a
``LocalCluster`` of ``--workers`` single-threaded processes, checks the two
tables are identical (SQNRs, formats, error vectors) and prints both wall
times (seconds) and their ratio.  The cluster's start-up is timed apart (a
long-running cluster pays it once); the distributed time includes scattering
the model and the images and each worker's own float pass.  Set
``OPENBLAS_NUM_THREADS=1`` to compare one in-process core with N worker cores;
by default the in-process run may use every core for its matrix products.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg7")
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--images", type=int, default=64, help="calibration = measured samples")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--widths", default="2-16", help="'2-16' or '2,4,8'")
    args = ap.parse_args(argv)

    from fxp import workflow as fw
    from fxp.dist.cluster import open_client
    from fxp.dist.noise import measure_noise_dist
    from fxp.opt.noise import measure_noise
    from fxp.quant.sweep import parse_bits

    graph = fw.load_model(args.model)
    x = fw.load_data(args.data, graph, limit=args.images).x
    kw = {"widths": parse_bits(args.widths), "n_measure": None, "weight_method": "sqnr"}
    t0 = time.perf_counter()
    ref = measure_noise(graph, x, **kw)
    t_in = time.perf_counter() - t0
    n_cells = ref.sqnr_db.size
    print(f"{args.model}: {len(ref.tensors)} tensors x {len(ref.widths)} widths = {n_cells} "
          f"cells on {x.shape[0]} images")
    print(f"in-process:            {t_in:8.2f} s")
    t0 = time.perf_counter()
    with open_client(workers=args.workers) as client:
        t_start = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = measure_noise_dist(graph, x, client=client, **kw)
        t_dist = time.perf_counter() - t0
    same = (got.to_dict() == ref.to_dict() and np.array_equal(got.sqnr_db, ref.sqnr_db)
            and got.formats == ref.formats
            and (ref.errors is None or np.array_equal(got.errors, ref.errors)))
    print(f"--workers {args.workers} (LocalCluster start {t_start:.2f} s, not included): "
          f"{t_dist:8.2f} s")
    print(f"speed-up in-process / distributed: {t_in / t_dist:.2f}x "
          f"({t_in / (t_dist + t_start):.2f}x counting the start-up)")
    print(f"tables identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
