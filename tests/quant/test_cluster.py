"""Clustering: determinism, scipy agreement of the 1-D merges, k-means, codebooks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.cluster.hierarchy import fcluster, linkage

from fxp.errors import FormatError
from fxp.quant import get
from fxp.quant.cluster import LINKAGES, Hierarchical, KMeans, hc_merge_1d, kmeans_1d

RNG = np.random.default_rng(20240607)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def _dendrogram_nodes(w: np.ndarray, link: str) -> set[frozenset]:
    z = linkage(w.reshape(-1, 1), method=link)
    sets = [frozenset([i]) for i in range(w.size)]
    for a, b, _, _ in z:
        sets.append(sets[int(a)] | sets[int(b)])
    return set(sets)


CASES = [(RNG.integers(3, 160), RNG.laplace(size=160)) for _ in range(12)]


@pytest.mark.parametrize("link", LINKAGES)
def test_sequential_merge_equals_scipy(link) -> None:
    """The one-pair-at-a-time adjacent merge gives scipy's fcluster(maxclust) partition.

    Holds for ward, complete, average and single linkage on tie-free 1-D data:
    the closest pair of 1-D interval clusters is always adjacent.
    """
    for k, w in CASES:
        w = w[: 3 * k]
        ref = fcluster(linkage(w.reshape(-1, 1), method=link), k, criterion="maxclust")
        assert _same_partition(hc_merge_1d(w, k, link, "sequential"), ref)


@pytest.mark.parametrize("link", LINKAGES)
def test_mutual_merge_cuts_scipys_dendrogram(link) -> None:
    """The seed's simultaneous mutual-NN merge: exactly k clusters, each a node of scipy's tree.

    It is *not* in general scipy's k-cluster partition (a round may merge a pair
    before a lower pair elsewhere): the test records how often they coincide.
    """
    equal = 0
    for k, w in CASES:
        lab = hc_merge_1d(w, k, link, "mutual")
        assert len(np.unique(lab)) == k
        nodes = _dendrogram_nodes(w, link)
        assert all(frozenset(np.flatnonzero(lab == c).tolist()) in nodes for c in np.unique(lab))
        ref = fcluster(linkage(w.reshape(-1, 1), method=link), k, criterion="maxclust")
        equal += _same_partition(lab, ref)
    assert equal < len(CASES)      # the variants do differ on this data


def test_mutual_differs_from_greedy_golden() -> None:
    """0, 1, 10, 10.5, 11.2 single linkage into 3: greedy merges 10-10.5 and 10.5-11.2, the
    mutual round merges 0-1 and 10-10.5 together."""
    w = np.array([0.0, 1.0, 10.0, 10.5, 11.2])
    assert hc_merge_1d(w, 3, "single", "sequential").tolist() == [0, 1, 2, 2, 2]
    assert hc_merge_1d(w, 3, "single", "mutual").tolist() == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("spec", ["kmeans", "hc:ward", "hc:single:sequential", "hcfast:average",
                                  "hc:complete:scipy"])
def test_clustering_is_deterministic_and_idempotent(spec) -> None:
    w = RNG.normal(size=(4, 60))
    q = get(spec)
    a, b = q(w, 3), q(w.copy(), 3)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.codebook, b.codebook)
    assert a.codebook.size == 8 and np.all(np.diff(a.codebook) > 0)
    np.testing.assert_array_equal(a.values, a.codebook[a.codes])
    again = q.apply(a.values, a)
    np.testing.assert_array_equal(again.codes, a.codes)
    per = q(w, 2, axis=0)
    assert per.codebook.shape == (4, 4) and per.codes.max() <= 3


@settings(max_examples=60)
@given(arrays(np.float64, st.integers(2, 60),
              elements=st.floats(-10, 10, allow_nan=False, allow_infinity=False)),
       st.integers(1, 4))
def test_kmeans_is_a_lloyd_fixed_point(w, bits) -> None:
    """Converged k-means: each weight's level is a nearest codebook entry and each level the
    mean of its weights; at most 2**bits levels; lossless when few distinct values."""
    qt = KMeans()(w, bits)
    book = qt.codebook
    assert book.size <= min(2 ** bits, np.unique(w).size)
    d = np.abs(w[:, None] - book[None, :])
    assert np.all(d[np.arange(w.size), qt.codes] <= d.min(axis=1) + 1e-9 * (1 + np.abs(w)))
    for c in range(book.size):
        assert book[c] == pytest.approx(w[qt.codes == c].mean(), rel=1e-12, abs=1e-12)
    if np.unique(w).size <= 2 ** bits:
        np.testing.assert_array_equal(qt.values, w)


def test_kmeans_linear_init_golden() -> None:
    """Init linspace(0, 5, 3) = 0, 2.5, 5: the middle cluster never gets a weight, keeps its
    centroid, and is dropped; Lloyd converges to {0 .. 1.0} and {5}."""
    c, lab, it = kmeans_1d([0.0, 0.1, 0.2, 0.9, 1.0, 5.0], 3)
    np.testing.assert_allclose(c, [0.44, 5.0])
    assert lab.tolist() == [0, 0, 0, 0, 0, 1] and it == 2
    c, lab, _ = kmeans_1d([0.0, 0.1, 0.2, 2.4, 2.6, 5.0], 3)
    np.testing.assert_allclose(c, [0.1, 2.5, 5.0])


def test_cluster_errors() -> None:
    with pytest.raises(FormatError, match="unknown linkage 'median'"):
        Hierarchical("median")
    with pytest.raises(FormatError, match="method must be"):
        get("hc:ward:fast")
    with pytest.raises(FormatError, match="mode must be"):
        hc_merge_1d([1.0, 2.0], 1, "ward", "x")
