"""Clustered fine-tuning (weight sharing with trained centroids, seed 004), exported bit-exactly.

Deep Compression's trained quantization (Han, Mao & Dally 2016, section 3,
the "parameters sharing" slides of seed 004): each layer's weights are
clustered into ``K = 2**bits`` groups (fewer when the layer has fewer distinct
values) on the *pretrained* weights, with

* ``kmeans``: 1-D Lloyd k-means with linear initialisation
  ``linspace(min W, max W, K)`` (:func:`fxp.quant.cluster.kmeans_1d`, Deep
  Compression section 3.2), or
* ``hc:LINKAGE``: agglomerative clustering with the ward / complete / average
  / single linkage (:class:`fxp.quant.cluster.Hierarchical`; seed 004, Hu &
  Rao, slides 14-16 and their Table 1).

The index map ``I`` (a buffer, ``W``'s shape) is then fixed and the
codebook ``c`` (the cluster means, a trainable ``Parameter``) is fine-tuned:
the layer computes with ``W_q = c[I]``, so by the chain rule

    dL/dc_k = sum over i with I_i = k of dL/dW_q,i

-- each centroid's gradient is the sum of its members' gradients (Deep
Compression section 3.3, figure 3: "the gradients are grouped by color and
summed together").  The float weights ``W`` are frozen (``requires_grad``
False); biases are trained in float and quantized to the accumulator format.

What the hardware stores: a ``bits``-bit index per weight and, per layer, a
codebook of ``K`` integers ``round(c_k * 2**F)`` of ``scale_bits`` bits
(default 8; Deep Compression keeps float32 centroids), ``F`` chosen so the
largest ``|c_k|`` fits (:func:`fxp.train.project.scale_format`, re-chosen at
each epoch).  The plan's weight format is that ``fixed<scale_bits,
scale_bits-F>``, so the exported weight codes take at most ``K`` distinct
values (two centroids may round to the same code) and the integer engine
computes exactly what the codebook lookup + multiply does.
"""

from __future__ import annotations

import numpy as np

from fxp.errors import FxpError
from fxp.ir.graph import Graph
from fxp.quant.cluster import LINKAGES, Hierarchical, KMeans
from fxp.train import require_torch
from fxp.train.loop import TrainConfig, TrainResult
from fxp.train.project import WeightProjection, train_projected

torch = require_torch()
from torch import nn  # noqa: E402

__all__ = ["ALGORITHMS", "ClusterProjection", "cluster_quantizer", "train_cluster"]

ALGORITHMS = ("kmeans", *(f"hc:{link}" for link in LINKAGES))
"""Codebook algorithms of :func:`train_cluster`."""


def cluster_quantizer(algorithm: str):
    """``"kmeans"`` -> :class:`KMeans`; ``"hc:LINKAGE"`` -> :class:`Hierarchical` (auto method)."""
    if algorithm == "kmeans":
        return KMeans()
    if algorithm.startswith("hc:") and algorithm[3:] in LINKAGES:
        return Hierarchical(algorithm[3:])
    raise FxpError(f"unknown clustering algorithm {algorithm!r}; use one of {list(ALGORITHMS)}")


class ClusterProjection(WeightProjection):
    """``W_q = centroids[index]``: fixed index map, trainable codebook (module docstring).

    Parameters
    ----------
    w0 : array
        Pretrained weights the codebook is fitted on.
    bits : int
        ``2**bits`` clusters (1..16).
    algorithm : str
        One of :data:`ALGORITHMS`.
    """

    freeze_raw = True

    def __init__(self, w0: np.ndarray, bits: int, algorithm: str = "kmeans") -> None:
        super().__init__()
        if not 1 <= int(bits) <= 16:
            raise FxpError(f"cluster bits must be in 1..16, got {bits}")
        q = cluster_quantizer(algorithm)
        a = np.asarray(w0, np.float64)
        p = q.fit(a.ravel(), int(bits))
        idx = q.encode(a, p)
        self.code_bits = int(bits)
        self.algorithm = algorithm
        self.centroids = nn.Parameter(torch.from_numpy(np.asarray(p["codebook"], np.float64)))
        self.register_buffer("index", torch.from_numpy(idx.astype(np.int64)))

    def forward(self, w):
        return self.centroids[self.index]

    def describe(self, w) -> dict:
        c = self.centroids.detach().numpy()
        return {"algorithm": self.algorithm, "clusters": int(c.size),
                "centroids": [float(v) for v in c]}


def train_cluster(graph: Graph, x: np.ndarray, y: np.ndarray, *, bits: int = 4,
                  algorithm: str = "kmeans", act_bits: int = 8, scale_bits: int = 8,
                  config: TrainConfig = TrainConfig(), eval_x=None, eval_y=None, out_dir=None,
                  identity: dict | None = None, log=None, **plan_kw) -> TrainResult:
    """Clustered fine-tuning with ``2**bits`` shared weights per layer (module docstring).

    ``plan_kw``: ``input_bits``, ``rounding``, ``acc_bits``, ``calib``, ``layers``,
    ``refit`` of :func:`fxp.train.project.train_projected`.
    """
    cluster_quantizer(algorithm)  # validate before any work
    if not 1 <= bits <= 16:
        raise FxpError(f"cluster bits must be in 1..16, got {bits}")
    ident = {"method": "cluster", "bits": bits, "algorithm": algorithm, **(identity or {})}
    return train_projected(graph, x, y, lambda n, w: ClusterProjection(w, bits, algorithm),
                           identity=ident, act_bits=act_bits, scale_bits=scale_bits,
                           config=config, eval_x=eval_x, eval_y=eval_y, out_dir=out_dir,
                           log=log, desc=f"cluster {algorithm} w{bits}", **plan_kw)
