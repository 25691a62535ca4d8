"""1-D hierarchical clustering: fxp's merges vs scipy's ``linkage`` + ``fcluster``.

Run: ``python benchmarks/bench_cluster.py [n] [k]`` (default n = 100000 weights,
k = 256 clusters, i.e. 8 bits), Laplace-distributed like trained weights.

Paths:

* ``sequential`` -- :func:`fxp.quant.cluster.hc_merge_1d` ``mode="sequential"``:
  closest adjacent pair first (Numba heap), scipy's partition (tested);
* ``mutual``     -- the seed's simultaneous mutual-nearest-neighbour rounds (numpy);
* ``scipy``      -- ``linkage(w[:, None], method)`` + ``fcluster(maxclust)``.  It
  builds the condensed distance matrix, ``n (n-1) / 2`` float64 (10**5 weights:
  40 GB), so it runs here on subsamples up to ``SCIPY_N`` and its time at n is
  extrapolated as ``O(n**2)`` (nn-chain / MST are quadratic in time too).

For each subsample size the script also checks that ``sequential`` gives
exactly scipy's partition.
"""

from __future__ import annotations

import sys

import numpy as np

from fxp.bench import best_of
from fxp.quant.cluster import LINKAGES, _scipy_labels, hc_merge_1d

SCIPY_N = (1000, 2000, 4000, 8000)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def main(n: int = 100_000, k: int = 256) -> None:
    rng = np.random.default_rng(0)
    w = rng.laplace(scale=0.05, size=n)
    hc_merge_1d(w[:100], 4, "ward")  # compile
    sizes = [m for m in SCIPY_N if m < n] + [n] if n <= SCIPY_N[-1] else list(SCIPY_N)
    print(f"n = {n:,} weights, k = {k} clusters")
    print(f"{'linkage':9} {'sequential s':>13} {'mutual s':>9} "
          + " ".join(f"{'scipy@' + str(m):>11}" for m in sizes) + f" {'scipy@n est':>12}")
    for link in LINKAGES:
        t_seq = best_of(lambda link=link: hc_merge_1d(w, k, link, "sequential"), 3)
        t_mut = best_of(lambda link=link: hc_merge_1d(w, k, link, "mutual"), 3)
        t_sp, agree = [], []
        for m in sizes:
            sub = w[:m]
            t_sp.append(best_of(lambda sub=sub, link=link: _scipy_labels(sub, k, link), repeat=1))
            agree.append(_same(hc_merge_1d(sub, k, link, "sequential"),
                               _scipy_labels(sub, k, link)))
        est = t_sp[-1] * (n / sizes[-1]) ** 2  # measured, not extrapolated, when n is small
        print(f"{link:9} {t_seq:13.3f} {t_mut:9.3f} " + " ".join(f"{t:11.3f}" for t in t_sp)
              + f" {est:12.2f}   sequential == scipy on subsamples: {all(agree)}")
    print(f"scipy memory at n: {n * (n - 1) / 2 * 8 / 2**30:.1f} GiB for the distance matrix")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
