"""Rate-distortion sweep: every quantizer x width -> entropy, size, accuracy (seed 001, Table 6).

For each quantizer spec and width, every Conv2D / Dense weight tensor of the
graph is quantized (per tensor, or per output channel with ``per_channel``),
the reconstruction ``X-hat`` replaces the node's weight (``dataclasses.replace``
on the frozen node, ``graph.with_nodes``; biases stay float), and the float
reference (:func:`fxp.sim.float_ref.run_float`) measures top-1 / top-5 accuracy.
The node stores float32, so ``X-hat`` is rounded to float32 there (exact for
power-of-two steps, pow2, minifloats up to float32 precision; otherwise within
half a float32 ulp).

Rate is the parameter-weighted weight entropy (bits/weight, see
:mod:`fxp.quant.entropy`) and the estimated entropy-coded size with side
information.  Table 6's "best RD point" per quantizer is the lowest-entropy
point whose top-1 *and* top-5 accuracy are within ``tolerance`` (default 0.01
= 1 point) of the float model's (ties: fewer bits).  Fixed-width quantizers
(minifloat presets, TWN, binary) run once; widths below a quantizer's
``min_bits`` are skipped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from fxp.errors import DataError, FormatError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense
from fxp.quant.base import QuantizedTensor, Quantizer, get
from fxp.quant.entropy import compressed_size

__all__ = ["SweepResult", "SweepRow", "accuracy", "parse_bits", "quantize_graph", "sweep"]


@dataclass(frozen=True)
class SweepRow:
    """One (quantizer, width) point: rate, size and accuracy.

    ``entropy`` is bits/weight (parameter-weighted), ``bits_per_weight``
    includes side information, ``size_bytes`` is the estimated entropy-coded
    weight size, ``ratio`` the compression versus float32, ``top1``/``top5``
    the accuracies (fractions) and ``drop_top1``/``drop_top5`` the float minus
    quantized accuracies.
    """

    quantizer: str
    bits: int
    entropy: float
    bits_per_weight: float
    size_bytes: float
    ratio: float
    top1: float
    top5: float
    drop_top1: float
    drop_top5: float


@dataclass(frozen=True)
class SweepResult:
    """All sweep points plus Table 6: the best point per quantizer within ``tolerance``."""

    model: str
    data: str
    n_images: int
    n_weights: int
    float_top1: float
    float_top5: float
    tolerance: float
    rows: tuple[SweepRow, ...]
    best: dict[str, SweepRow | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["best"] = {k: (dataclasses.asdict(v) if v else None) for k, v in self.best.items()}
        return d


def parse_bits(spec) -> list[int]:
    """``"2-16"``, ``"2,4,8"``, ``"8"`` or an iterable of ints -> sorted unique widths."""
    if isinstance(spec, str):
        out: set[int] = set()
        try:
            for part in spec.split(","):
                lo, _, hi = part.strip().partition("-")
                out.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise FormatError(f"bits must look like '2-16' or '2,4,8', got {spec!r}") from None
    else:
        out = {int(b) for b in spec}
    if not out or min(out) < 1 or max(out) > 32:
        raise FormatError(f"bits must be a non-empty set of widths in 1..32, got {spec!r}")
    return sorted(out)


def quantize_graph(graph: Graph, quantizer: str | Quantizer, bits: int | None = None, *,
                   per_channel: bool = False) -> tuple[Graph, dict[str, QuantizedTensor]]:
    """The graph with every Conv2D/Dense weight replaced by its reconstruction, and the tensors."""
    q = get(quantizer)
    nodes, tensors = [], {}
    for node in graph.nodes:
        if isinstance(node, (Conv2D, Dense)):
            qt = q(node.weight, bits, axis=0 if per_channel else None)
            tensors[node.name] = qt
            node = dataclasses.replace(node, weight=qt.values.astype(np.float32))
        nodes.append(node)
    if not tensors:
        raise DataError(f"model {graph.name!r} has no Conv2D or Dense weights to quantize")
    return graph.with_nodes(nodes), tensors


def accuracy(graph: Graph, x: np.ndarray, y: np.ndarray, *,
             batch_size: int = 256) -> tuple[float, float]:
    """Top-1 and top-5 accuracy of the float reference on ``(x, y)``."""
    from fxp.sim.float_ref import run_float

    y = np.asarray(y)
    hit1 = hit5 = 0
    for s in range(0, x.shape[0], batch_size):
        out = np.asarray(run_float(graph, x[s:s + batch_size]))
        out = out.reshape(out.shape[0], -1)
        k = min(5, out.shape[1])
        top = np.argsort(-out, axis=1, kind="stable")[:, :k]
        yy = y[s:s + batch_size]
        hit1 += int(np.sum(top[:, 0] == yy))
        hit5 += int(np.sum(np.any(top == yy[:, None], axis=1)))
    return hit1 / x.shape[0], hit5 / x.shape[0]


def _jobs(quantizers, widths: list[int]) -> list[tuple[Quantizer, int | None]]:
    jobs = []
    for spec in quantizers:
        q = get(spec)
        if q.fixed_bits is not None:
            jobs.append((q, None))
        else:
            jobs.extend((q, b) for b in widths if b >= q.min_bits)
    return jobs



def sweep_inputs(data, quantizers, bits_range) -> tuple[np.ndarray, np.ndarray, list]:
    """``(x float32, y, [(quantizer spec, bits), ...])`` of a sweep's arguments, checked
    (shared by :func:`sweep` and :func:`fxp.dist.sweep.sweep_dist`)."""
    x, y = (data.x, data.y) if hasattr(data, "x") else data
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.shape[0] == 0 or x.shape[0] != y.shape[0]:
        raise DataError(f"need as many labels as images, got {x.shape[0]} and {y.shape[0]}")
    if isinstance(quantizers, str):
        quantizers = [s for s in quantizers.split(",") if s.strip()]
    return x, y, _jobs(quantizers, parse_bits(bits_range))

def sweep(graph: Graph, data, quantizers, bits_range="2-16", *, tolerance: float = 0.01,
          per_channel: bool = False, batch_size: int = 256,
          progress: bool = False) -> SweepResult:
    """Quantize, measure and rank (module docstring).

    Parameters
    ----------
    graph : Graph
    data : object with ``x``, ``y`` (and optional ``name``), or a pair ``(x, y)``
    quantizers : iterable of specs (``"deadzone:0.4"``) or a comma-separated string
    bits_range : ``"2-16"``, ``"2,4,8"`` or an iterable of widths
    tolerance : accuracy drop allowed for the best point (fraction; 0.01 = 1 point)
    """
    x, y, jobs = sweep_inputs(data, quantizers, bits_range)
    f1, f5 = accuracy(graph, x, y, batch_size=batch_size)
    it = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="sweep", unit="point", disable=None)
    rows = []
    for q, b in it:
        qg, tensors = quantize_graph(graph, q, b, per_channel=per_channel)
        size = compressed_size(tensors.values())
        a1, a5 = accuracy(qg, x, y, batch_size=batch_size)
        bits = b if b is not None else q.fixed_bits
        rows.append(SweepRow(q.name, int(bits), size.entropy, size.bits_per_weight,
                             size.total_bits / 8, size.ratio, a1, a5, f1 - a1, f5 - a5))
    best: dict[str, SweepRow | None] = {}
    for q, _ in jobs:
        ok = [r for r in rows if r.quantizer == q.name
              and r.drop_top1 <= tolerance + 1e-12 and r.drop_top5 <= tolerance + 1e-12]
        best[q.name] = min(ok, key=lambda r: (r.entropy, r.bits)) if ok else None
    n_w = sum(int(n.weight.size) for n in graph.nodes if isinstance(n, (Conv2D, Dense)))
    return SweepResult(graph.name, str(getattr(data, "name", "data")), int(x.shape[0]), n_w,
                       f1, f5, float(tolerance), tuple(rows), best)
