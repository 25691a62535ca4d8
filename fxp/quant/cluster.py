"""Weight sharing by 1-D clustering: k-means and hierarchical (``shared/seeds/004``).

``2**bits`` clusters (fewer when the tensor has fewer distinct values: then
every distinct value is its own level, losslessly).  The codebook holds the
cluster means in increasing order and the codes index it.  Every partition
here is a set of intervals of the sorted weights, stored as ``edges`` (the
largest weight of each cluster but the last): ``code = #{edges < w}``, so
:meth:`Quantizer.apply` re-assigns new values consistently (and idempotently:
a mean lies inside its interval).

k-means (Lloyd; Han et al. "Deep Compression" weight sharing): deterministic
*linear* initialisation ``linspace(min, max, K)``; assignment to the nearest
centroid on the sorted data (a weight exactly at the midpoint of two
centroids goes to the lower one); update to the mean (an empty cluster keeps
its centroid and is dropped at the end); repeat until the assignment stops
changing (at most ``max_iter``).  Each iteration costs ``O(K log n)`` after one
sort, thanks to prefix sums.

Hierarchical (Hu & Rao, "Quantization-based DNN compression", slides 14-16):
agglomerative clustering with the Lance-Williams linkages of
:func:`scipy.cluster.hierarchy.linkage` -- in 1-D, for clusters ``A < B``
(intervals): single ``min B - max A``; complete ``max B - min A``; average
``mean B - mean A``; ward ``sqrt(2|A||B|/(|A|+|B|)) * (mean B - mean A)``.

* ``method="scipy"``: ``linkage`` + ``fcluster(criterion="maxclust")``;
  needs the ``n(n-1)/2`` condensed distance matrix (8 bytes each: 10**4
  weights = 400 MB), so ``method="auto"`` (default) uses it only up to
  ``SCIPY_MAX`` weights and the sequential merge beyond.
* ``method="sequential"``: merge the closest *adjacent* pair, one at a time
  (heap with lazy deletion, ``O(n log n)``, Numba).  For these four
  linkages the globally closest pair of 1-D interval clusters is always
  adjacent, so this is scipy's greedy algorithm; the tests check that it gives
  scipy's partition for all four linkages on tie-free data.  Ties: the
  leftmost pair of equal distance merges first.
* ``method="mutual"``: the seed's fast algorithm -- each cluster points to its
  nearer neighbour (right only if strictly nearer), every *mutual* nearest pair
  merges at once, repeat.  If a round would go below K, only the K-needed
  pairs with the smallest distances merge (fxp's choice; the seed does not
  say).  The linkages are reducible, so each merge is one of scipy's dendrogram
  merges, but a round can merge a pair before a lower one elsewhere: the tests
  check that every cluster is a node of scipy's dendrogram (a coarser or
  different *cut*), not equality.  Typically ``O(log n)`` rounds of numpy work;
  worst case (gaps growing along the line) one pair per round.

>>> q = kmeans([0.0, 0.1, 0.9, 1.0], bits=1)
>>> q.codebook.tolist(), q.codes.tolist()
([0.05, 0.95], [0, 0, 1, 1])
"""

from __future__ import annotations

import heapq

import numpy as np

from fxp.errors import FormatError, SolverError
from fxp.kernels._jit import jit
from fxp.quant.base import QuantizedTensor, Quantizer, as_weights, check_bits, register

__all__ = ["LINKAGES", "SCIPY_MAX", "Hierarchical", "KMeans", "hc_merge_1d", "hierarchical",
           "kmeans", "kmeans_1d"]

LINKAGES = ("ward", "complete", "average", "single")
SCIPY_MAX = 4096
"""Largest tensor ``method="auto"`` hands to scipy (its distance matrix: n**2/2 doubles)."""
_LINK_CODE = {name: i for i, name in enumerate(LINKAGES)}


def _k(bits: int, s: np.ndarray) -> tuple[int, np.ndarray]:
    uniq = np.unique(s)
    return min(1 << bits, uniq.size), uniq


# ------------------------------------------------------------------ k-means
def kmeans_1d(w, k: int, max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray, int]:
    """Lloyd k-means in 1-D: ``(centroids sorted, labels, iterations)`` (module docstring)."""
    s = np.sort(as_weights(w).ravel())
    k = int(k)
    if k < 1:
        raise FormatError(f"k must be >= 1, got {k}")
    cs = np.concatenate([[0.0], np.cumsum(s)])
    c = np.linspace(s[0], s[-1], k)
    idx = None
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        cut = np.searchsorted(s, (c[:-1] + c[1:]) / 2, side="right")
        if idx is not None and np.array_equal(cut, idx):
            break
        idx = cut
        b = np.concatenate([[0], idx, [s.size]])
        cnt = np.diff(b)
        c = np.sort(np.where(cnt > 0, (cs[b[1:]] - cs[b[:-1]]) / np.maximum(cnt, 1), c))
    b = np.concatenate([[0], idx if idx is not None else [], [s.size]]).astype(np.int64)
    keep = np.diff(b) > 0
    means = ((cs[b[1:]] - cs[b[:-1]]) / np.maximum(np.diff(b), 1))[keep]
    labels = np.repeat(np.arange(keep.sum()), np.diff(b)[keep])
    return means, labels, it


# ------------------------------------------------------------------ hierarchical, 1-D
@jit
def _link(code, ci, si, loi, hii, cj, sj, loj, hij):  # pragma: no cover - jitted
    if code == 3:
        return loj - hii
    if code == 1:
        return hij - loi
    d = sj / cj - si / ci
    if code == 2:
        return d
    return np.sqrt(2.0 * ci * cj / (ci + cj)) * d


@jit
def _sequential(s, k, code):  # pragma: no cover - jitted
    n = s.size
    cnt = np.ones(n)
    sm = s.copy()
    lo = s.copy()
    hi = s.copy()
    right = np.arange(1, n + 1)
    right[n - 1] = -1
    left = np.arange(-1, n - 1)
    ver = np.zeros(n, np.int64)
    alive = np.ones(n, np.bool_)
    heap = [(0.0, 0, 0, 0, 0)]
    heap.pop()
    for i in range(n - 1):
        heap.append((_link(code, 1.0, s[i], s[i], s[i], 1.0, s[i + 1], s[i + 1], s[i + 1]),
                     i, i + 1, 0, 0))
    heapq.heapify(heap)
    m = n
    while m > k and len(heap) > 0:
        d, i, j, vi, vj = heapq.heappop(heap)
        if not (alive[i] and alive[j]) or ver[i] != vi or ver[j] != vj or right[i] != j:
            continue
        cnt[i] += cnt[j]
        sm[i] += sm[j]
        hi[i] = hi[j]
        alive[j] = False
        right[i] = right[j]
        if right[j] >= 0:
            left[right[j]] = i
        ver[i] += 1
        m -= 1
        a = left[i]
        if a >= 0:
            heapq.heappush(heap, (_link(code, cnt[a], sm[a], lo[a], hi[a], cnt[i], sm[i], lo[i],
                                        hi[i]), a, i, ver[a], ver[i]))
        b = right[i]
        if b >= 0:
            heapq.heappush(heap, (_link(code, cnt[i], sm[i], lo[i], hi[i], cnt[b], sm[b], lo[b],
                                        hi[b]), i, b, ver[i], ver[b]))
    labels = np.empty(n, np.int64)
    lab = -1
    for i in range(n):
        if alive[i]:
            lab += 1
        labels[i] = lab
    return labels


def _mutual(s: np.ndarray, k: int, code: int) -> np.ndarray:
    cnt = np.ones(s.size)
    sm, lo, hi = s.copy(), s.copy(), s.copy()
    group = np.arange(s.size)  # cluster of each sorted weight
    while cnt.size > k:
        ci, cj = cnt[:-1], cnt[1:]
        if code == 3:
            d = lo[1:] - hi[:-1]
        elif code == 1:
            d = hi[1:] - lo[:-1]
        else:
            d = sm[1:] / cj - sm[:-1] / ci
            if code == 0:
                d = np.sqrt(2.0 * ci * cj / (ci + cj)) * d
        dl = np.concatenate([[np.inf], d])
        dr = np.concatenate([d, [np.inf]])
        to_right = dr < dl                       # ties point left (seed step 3)
        pairs = np.flatnonzero(to_right[:-1] & ~to_right[1:])
        need = cnt.size - k
        if pairs.size > need:
            pairs = np.sort(pairs[np.argsort(d[pairs], kind="stable")[:need]])
        start = np.ones(cnt.size, bool)
        start[pairs + 1] = False
        gid = np.cumsum(start) - 1
        heads = np.flatnonzero(start)
        cnt, sm = np.add.reduceat(cnt, heads), np.add.reduceat(sm, heads)
        lo, hi = np.minimum.reduceat(lo, heads), np.maximum.reduceat(hi, heads)
        group = gid[group]
    return group


def hc_merge_1d(w, k: int, linkage: str = "ward", mode: str = "sequential") -> np.ndarray:
    """Labels (0..K-1, increasing with the weight) of 1-D agglomerative clustering into ``k``.

    ``mode`` is ``"sequential"`` (scipy's greedy order) or ``"mutual"`` (the
    seed's simultaneous mutual-nearest-neighbour rounds); see the module docstring.
    """
    a = as_weights(w).ravel()
    if linkage not in _LINK_CODE:
        raise FormatError(f"unknown linkage {linkage!r}; valid: {', '.join(LINKAGES)}")
    if mode not in ("sequential", "mutual"):
        raise FormatError(f"mode must be 'sequential' or 'mutual', got {mode!r}")
    k = max(1, min(int(k), a.size))
    order = np.argsort(a, kind="stable")
    s = a[order]
    lab = (_sequential(s, k, _LINK_CODE[linkage]) if mode == "sequential"
           else _mutual(s, k, _LINK_CODE[linkage]))
    out = np.empty(a.size, np.int64)
    out[order] = lab
    return out


def _scipy_labels(a: np.ndarray, k: int, linkage: str) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as sp_linkage

    z = sp_linkage(a.reshape(-1, 1), method=linkage)
    return fcluster(z, k, criterion="maxclust").astype(np.int64)


# ------------------------------------------------------------------ quantizers
def _partition_params(a: np.ndarray, labels: np.ndarray, bits: int, **extra) -> dict:
    """Codebook (means, ascending) and interval edges from any interval partition of ``a``."""
    order = np.argsort(a, kind="stable")
    s, lab = a[order], labels[order]
    heads = np.flatnonzero(np.concatenate([[True], lab[1:] != lab[:-1]]))
    if np.unique(lab).size != heads.size:
        raise SolverError("a 1-D clustering returned clusters that are not intervals of the "
                          "sorted weights")
    sums = np.add.reduceat(s, heads)
    cnts = np.diff(np.concatenate([heads, [s.size]]))
    lo, hi = s[heads], s[np.concatenate([heads[1:], [s.size]]) - 1]
    # the mean, kept inside its interval despite rounding (exact for a one-value cluster)
    book = np.clip(sums / cnts, lo, hi)
    return {"bits": bits, "codebook": book, "edges": hi[:-1], **extra}


class _Cluster(Quantizer):
    min_bits = 1

    def encode(self, w: np.ndarray, p: dict) -> np.ndarray:
        return np.searchsorted(p["edges"], w, side="left").astype(np.int64)

    def decode(self, codes: np.ndarray, p: dict) -> np.ndarray:
        return p["codebook"][codes]

    def levels(self, p: dict) -> np.ndarray:
        return p["codebook"]

    def side_bits(self, p: dict) -> int:
        return 32 * len(p["codebook"])


class KMeans(_Cluster):
    """1-D k-means weight sharing with linear initialisation (module docstring)."""

    name = "kmeans"

    def __init__(self, max_iter: int = 1000) -> None:
        self.max_iter = int(max_iter)

    def fit(self, w: np.ndarray, bits: int) -> dict:
        bits = check_bits(bits, 1, 24)
        a = w.ravel()
        k, uniq = _k(bits, a)
        if k == uniq.size:
            return _partition_params(a, np.searchsorted(uniq, a), bits, iterations=0)
        cent, _, it = kmeans_1d(a, k, self.max_iter)
        lab = np.searchsorted((cent[:-1] + cent[1:]) / 2, a, side="left")
        return _partition_params(a, lab, bits, iterations=it)


class Hierarchical(_Cluster):
    """Agglomerative 1-D clustering with a scipy linkage (module docstring)."""

    def __init__(self, linkage: str = "ward", method: str = "auto") -> None:
        if linkage not in LINKAGES:
            raise FormatError(f"unknown linkage {linkage!r}; valid: {', '.join(LINKAGES)}")
        if method not in ("auto", "scipy", "sequential", "mutual"):
            raise FormatError(f"method must be auto, scipy, sequential or mutual, got {method!r}")
        self.linkage, self.method = linkage, method
        self.name = ("hcfast:" if method == "mutual" else "hc:") + linkage
        if method not in ("auto", "mutual"):
            self.name += f":{method}"

    def fit(self, w: np.ndarray, bits: int) -> dict:
        bits = check_bits(bits, 1, 24)
        a = w.ravel()
        k, uniq = _k(bits, a)
        if k == uniq.size:
            return _partition_params(a, np.searchsorted(uniq, a), bits, method="exact")
        method = self.method
        if method == "auto":
            method = "scipy" if a.size <= SCIPY_MAX else "sequential"
        lab = (_scipy_labels(a, k, self.linkage) if method == "scipy"
               else hc_merge_1d(a, k, self.linkage, method))
        return _partition_params(a, lab, bits, method=method)


def kmeans(w, bits: int = 4, *, axis: int | None = None) -> QuantizedTensor:
    """k-means weight sharing with ``2**bits`` clusters (module docstring)."""
    return KMeans()(w, bits, axis=axis)


def hierarchical(w, bits: int = 4, linkage: str = "ward", *, method: str = "auto",
                 axis: int | None = None) -> QuantizedTensor:
    """Hierarchical-clustering weight sharing with ``2**bits`` clusters (module docstring)."""
    return Hierarchical(linkage, method)(w, bits, axis=axis)


register("kmeans", "kmeans (1-D Lloyd, linear init, 2**bits clusters)")(KMeans)
register("hc", "hc[:ward|complete|average|single[:scipy|sequential|mutual]]")(
    lambda link="ward", method="auto": Hierarchical(link, method))
register("hcfast", "hcfast[:LINKAGE] (the seed's mutual-nearest-neighbour merge)")(
    lambda link="ward": Hierarchical(link, "mutual"))
