"""Per-tensor quantization noise measured at the network output (Lin et al., ICML 2016).

A *quantizable tensor* of a power-of-two plan is

* the weights of each Conv2D / Dense layer (``"<layer>.weight"``), and
* each activation that a layer with weights reads: the graph input and the
  output of every Conv2D / Dense layer (named by the graph tensor, e.g.
  ``"relu1"``).  In a :func:`~fxp.plan.ptq.ptq_pow2` plan the width of the
  output of layer ``L`` is ``layer_act_bits[L]`` and it is what the next
  layer reads (max-pool, flatten and ReLU keep the coding); the graph input
  is ``input_bits``.  The last layer's output (the logits) is quantized too
  and is included.

:func:`measure_noise` quantizes **one tensor at a time** at each candidate
width ``b`` (the power-of-two format :func:`~fxp.plan.ptq.ptq_pow2` would
choose: integer bits from the calibration range, ``F = b - I``; weights and
the graph input rounded half-to-even as the integer engine codes them, layer
outputs rounded with the plan's ``rounding``, ``half_up`` by default, all
saturating) while everything else stays float, runs a float32 "fake-quant"
pass over the graph (only the nodes downstream of the perturbed tensor are
recomputed) and records the SQNR of the logits (the input of a final
Softmax), exactly as :func:`fxp.sim.evaluate.simulate` measures it.

Weight formats.  ``weight_method`` picks the integer bits of a weight format:
``"minmax"`` (never clip), ``"mse"`` (least weight-domain squared error), or
``"sqnr"``: at each width, integer-bit counts from the min/max one down to
:data:`SQNR_CLIP_STEPS` fewer are tried in turn, stopping at the first that
does not improve the measured *output* SQNR, and the best is kept (ties to
the wider range).  Weight-domain error is a
poor proxy at low widths: on ``vgg7``'s ``fc1`` at 2 bits the MSE choice gives
4 dB at the output and the SQNR choice 14 dB.  The chosen formats are stored
in :attr:`NoiseTable.formats` and :func:`fxp.opt.model.plan_for_widths` uses
exactly them.

Lin's linear law ``10*log10(gamma_i) = kappa_i * b + c_i`` is then fitted by
least squares **over the widths whose measured SQNR lies in
[FIT_MIN_DB, FIT_MAX_DB]** (10..130 dB): below 10 dB the noise is not small
against the signal (overload, dead zones, the additive model breaks down);
above 130 dB the float32 rounding of the reference itself is no longer
negligible.  ``kappa`` is about 6.02 dB/bit for a uniform source, less for
peaky (Gaussian, Laplacian) ones.  The measured per-width table is kept: the
optimizer uses the measured values, the fit is for reporting and for the
continuous relaxation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fxp.core.format import QFormat
from fxp.errors import CalibrationError, PlanError
from fxp.ir.graph import Graph
from fxp.ir.nodes import (
    AvgPool2D,
    Clip,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool,
    MaxPool2D,
    ReLU,
    Reshape,
    Softmax,
)
from fxp.ir.stats import node_macs
from fxp.ops.fixed import dequantize, quantize
from fxp.opt.f32_kernels import conv_f32, dense_f32, maxpool_f32
from fxp.sim.float_ref import run_node

__all__ = ["FIT_MAX_DB", "FIT_MIN_DB", "SQNR_CLIP_STEPS", "WEIGHT_METHODS", "NoiseTable",
           "QTensor", "fit_lin_law", "logits_of", "measure_noise", "quantizable_tensors"]

FIT_MIN_DB = 10.0
FIT_MAX_DB = 130.0
DEFAULT_WIDTHS = tuple(range(2, 17))
WEIGHT_METHODS = ("minmax", "percentile", "mse", "sqnr")
SQNR_CLIP_STEPS = 4
MAX_ERROR_ELEMENTS = 50_000_000
"""Most float32 elements of :attr:`NoiseTable.errors` (else it is not kept)."""
"""How many integer bits below the min/max format ``weight_method="sqnr"`` tries."""
_PASS_FMT = (MaxPool2D, ReLU, Clip, Flatten, Reshape)


@dataclass(frozen=True)
class QTensor:
    """One quantizable tensor.

    Attributes
    ----------
    name : str
        ``"<layer>.weight"`` for weights, the graph tensor name for activations.
    kind : {"weight", "act"}
    layer : str or None
        The layer owning the weights, or producing the activation (None for the graph input).
    tensor : str
        The graph tensor (activations) or the layer name (weights).
    size : int
        Weight count, or activation elements per sample.
    macs : int
        MACs per sample of the layer (weights) / of the layers reading it (activations).
    consumers : tuple of str
        Layers with weights that read this activation (empty for weights).
    """

    name: str
    kind: str
    layer: str | None
    tensor: str
    size: int
    macs: int
    consumers: tuple[str, ...] = ()


def logits_of(graph: Graph) -> str:
    """The tensor SQNR is measured on: the input of a final Softmax, else the output."""
    last = graph.producer(graph.outputs[0])
    if isinstance(last, Softmax):
        return last.inputs[0]
    return graph.outputs[0]


def _weighted_readers(graph: Graph, tensor: str) -> list[str]:
    """Layers with weights that read ``tensor`` through format-preserving nodes."""
    out, todo = [], [tensor]
    while todo:
        t = todo.pop()
        for n in graph.nodes:
            if t in n.inputs:
                if isinstance(n, (Conv2D, Dense)):
                    out.append(n.name)
                elif isinstance(n, (*_PASS_FMT, AvgPool2D, GlobalAvgPool)):
                    todo.append(n.output)
    return out


def quantizable_tensors(graph: Graph) -> list[QTensor]:
    """Weights and activations a pow2 plan quantizes, in graph order (see the module docstring)."""
    layers = [n for n in graph.nodes if isinstance(n, (Conv2D, Dense))]
    if not layers:
        raise PlanError(f"graph {graph.name!r} has no Conv2D/Dense layer to quantize")
    macs = {n.name: node_macs(n, graph.shapes[n.output]) for n in layers}

    def act(t: str, layer: str | None) -> QTensor:
        readers = tuple(_weighted_readers(graph, t))
        size = int(np.prod(graph.shapes[t][1:], dtype=np.int64))
        return QTensor(t, "act", layer, t, size, sum(macs[r] for r in readers), readers)

    out = [act(graph.inputs[0], None)]
    for n in layers:
        out.append(QTensor(f"{n.name}.weight", "weight", n.name, n.name, int(n.weight.size),
                           macs[n.name]))
        out.append(act(n.output, n.name))
    return out


def _spec_for(values: np.ndarray, bits: int, method: str, percentile: float, name: str,
              signed: bool | None = None) -> QFormat:
    from fxp.plan.ptq import _pow2_spec

    return _pow2_spec(values, bits, method, percentile, name, signed=signed).fmt


class _FakeQuant:
    """Float32 pass over ``graph`` with some tensors replaced by their quantized values."""

    def __init__(self, graph: Graph, x: np.ndarray, rounding: str):
        self.graph = graph
        self.rounding = rounding
        self.logits = logits_of(graph)
        self.base: dict[str, np.ndarray] = {}
        self.base = self.run({}, {}, np.asarray(x, np.float32))

    def _node(self, node, ins, weights):
        if isinstance(node, Conv2D):
            return conv_f32(node, ins[0], weights.get(node.name, node.weight))
        if isinstance(node, Dense):
            return dense_f32(node, ins[0], weights.get(node.name, node.weight))
        if isinstance(node, MaxPool2D):
            return maxpool_f32(node, ins[0])
        return run_node(node, *ins)

    def run(self, acts: dict[str, tuple[QFormat, str]], weights: dict[str, np.ndarray],
            x: np.ndarray | None, base: dict[str, np.ndarray] | None = None
            ) -> dict[str, np.ndarray]:
        """``acts``: tensor -> (format, rounding) to quantize; ``weights``: layer -> new weights.

        With ``x`` None only the nodes downstream of a change are recomputed from
        the cached float pass, or from ``base`` (an earlier pass's values: its changes
        kept, so they must lie upstream of ``acts`` and ``weights``).
        """
        g = self.graph
        base = self.base if base is None else base
        env = {g.inputs[0]: x} if x is not None else dict(base)
        fmt_of: dict[str, tuple[QFormat, str]] = {}
        dirty = set(env) if x is not None else set()
        t0 = g.inputs[0]
        if t0 in acts:
            env[t0] = self._q(env[t0], *acts[t0])
            fmt_of[t0] = acts[t0]
            dirty.add(t0)
        for node in g.nodes:
            changed = node.name in weights or any(t in dirty for t in node.inputs)
            if not changed and node.output not in acts:
                continue
            if changed:
                y = self._node(node, [env[t] for t in node.inputs], weights)
            else:
                y = base[node.output]  # unchanged value, quantized below
            src = fmt_of.get(node.inputs[0])
            if node.output in acts:
                fmt_of[node.output] = acts[node.output]
                y = self._q(y, *acts[node.output])
            elif src is not None and isinstance(node, _PASS_FMT):
                fmt_of[node.output] = src
            elif src is not None and isinstance(node, (AvgPool2D, GlobalAvgPool)):
                fmt_of[node.output] = (src[0], src[1])  # the engine rounds the mean to the LSB
                y = self._q(y, src[0], src[1])
            env[node.output] = y
            dirty.add(node.output)
        return env

    @staticmethod
    def _q(v: np.ndarray, fmt: QFormat, rounding: str) -> np.ndarray:
        codes, _ = quantize(np.asarray(v, np.float64), fmt, rounding, "saturate")
        return dequantize(codes, fmt).astype(np.float32)

    def sqnr_db(self, env: dict[str, np.ndarray]) -> float:
        ref = self.base[self.logits].astype(np.float64)
        q = env[self.logits].astype(np.float64)
        sig, err = float(np.sum(ref * ref)), float(np.sum((q - ref) ** 2))
        if err == 0:
            return math.inf
        if sig == 0:
            return -math.inf
        return 10.0 * math.log10(sig / err)


def fit_lin_law(widths, sqnr_db, lo: float = FIT_MIN_DB, hi: float = FIT_MAX_DB
                ) -> tuple[float, float, tuple[int, int], float]:
    """Least-squares ``sqnr_db = kappa * b + c`` over the points with ``lo <= sqnr <= hi``.

    Returns ``(kappa, c, (b_first, b_last), rms residual dB)``.  With fewer than
    two points in range, the two finite points nearest the range are used.
    """
    b = np.asarray(widths, np.float64)
    s = np.asarray(sqnr_db, np.float64)
    ok = np.isfinite(s) & (s >= lo) & (s <= hi)
    if ok.sum() < 2:
        fin = np.flatnonzero(np.isfinite(s))
        if fin.size < 2:
            return math.nan, math.nan, (0, 0), math.nan
        dist = np.maximum(lo - s[fin], 0) + np.maximum(s[fin] - hi, 0)
        ok = np.zeros_like(ok)
        ok[fin[np.argsort(dist, kind="stable")[:2]]] = True
    kappa, c = np.polyfit(b[ok], s[ok], 1)
    rms = float(np.sqrt(np.mean((kappa * b[ok] + c - s[ok]) ** 2)))
    return float(kappa), float(c), (int(b[ok].min()), int(b[ok].max())), rms


@dataclass
class NoiseTable:
    """Measured output SQNR per (tensor, width) and Lin's fitted law per tensor.

    Attributes
    ----------
    tensors : list of QTensor
    widths : tuple of int
        Candidate widths (columns of ``sqnr_db``).
    sqnr_db : array [n_tensors, n_widths]
        Output (logits) SQNR in dB with only that tensor quantized (``inf``: no error).
    kappa, offset : arrays [n_tensors]
        Lin's law ``sqnr = kappa * b + offset`` (dB, dB/bit).
    fit_widths : list of (first, last)
        Widths the fit used, per tensor.
    fit_rms_db : array [n_tensors]
        RMS residual of the fit over those widths.
    n_samples : int
        Samples the SQNR was measured on.
    rounding, method, weight_method : str
        Rounding of layer outputs; activation and weight range methods.
    formats : dict name -> {width: "fixed<W,I>"}
        The format used at each width.
    correction_db : float
        Calibrated offset added to the additive prediction (see :mod:`fxp.opt.model`).
    errors : array [n_tensors, n_widths, n_samples * n_logits] float32 or None
        The logits' error vector of each measurement (kept when it has at most
        :data:`MAX_ERROR_ELEMENTS` elements): the pairwise interaction terms of
        :mod:`fxp.opt.interactions` come from it.
    reference : array [n_samples * n_logits] float32 or None
        The float logits those errors are relative to (kept with ``errors``).
    dithered : array [n_tensors, n_tensors] bool or None
        Kept with ``errors``: ``dithered[i, j]`` where tensor ``j`` is an activation
        that tensor ``i``'s error reaches before it is quantized (directed,
        :func:`fxp.opt.interactions.dithered_pairs`).
    pair_noise : dict (i, j) -> array [n_widths, n_widths], or None
        The measured interaction terms of the dithered pairs
        (:func:`fxp.opt.pair_noise.measure_pair_noise`; filled by
        :func:`fxp.opt.optimize_bits` on first use); None: not measured.
    """

    tensors: list[QTensor]
    widths: tuple[int, ...]
    sqnr_db: np.ndarray
    kappa: np.ndarray
    offset: np.ndarray
    fit_widths: list[tuple[int, int]]
    fit_rms_db: np.ndarray
    n_samples: int
    rounding: str = "half_up"
    method: str = "minmax"
    weight_method: str = "minmax"
    formats: dict[str, dict[int, str]] = field(default_factory=dict)
    ranges: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    correction_db: float = 0.0
    errors: np.ndarray | None = field(default=None, repr=False)
    reference: np.ndarray | None = field(default=None, repr=False)
    dithered: np.ndarray | None = field(default=None, repr=False)
    pair_noise: dict | None = field(default=None, repr=False)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise PlanError(f"unknown tensor {name!r}; tensors: {self.names}") from None

    def noise(self, name: str, bits: int) -> float:
        """Measured noise-to-signal ratio ``1/gamma`` (linear) of one tensor at ``bits``."""
        i = self.index(name)
        if bits not in self.widths:
            raise PlanError(f"width {bits} was not measured for {name!r}; widths: {self.widths}")
        s = self.sqnr_db[i, self.widths.index(bits)]
        return 0.0 if s == math.inf else 10.0 ** (-s / 10.0)

    def noise_matrix(self) -> np.ndarray:
        """``1/gamma`` per (tensor, width), linear."""
        with np.errstate(over="ignore"):
            m = np.where(np.isinf(self.sqnr_db) & (self.sqnr_db > 0), 0.0,
                         10.0 ** (-self.sqnr_db / 10.0))
        return m

    def to_dict(self) -> dict:
        rows = []
        for i, t in enumerate(self.tensors):
            rows.append({"name": t.name, "kind": t.kind, "layer": t.layer, "size": t.size,
                         "macs": t.macs, "kappa": float(self.kappa[i]),
                         "offset_db": float(self.offset[i]), "fit_widths": list(self.fit_widths[i]),
                         "fit_rms_db": float(self.fit_rms_db[i]),
                         "sqnr_db": {int(b): (float(v) if math.isfinite(v) else str(v))
                                     for b, v in zip(self.widths, self.sqnr_db[i], strict=True)}})
        return {"widths": list(self.widths), "n_samples": self.n_samples,
                "rounding": self.rounding, "method": self.method,
                "weight_method": self.weight_method,
                "fit_range_db": [FIT_MIN_DB, FIT_MAX_DB], "correction_db": self.correction_db,
                "tensors": rows}


def _reduce(values: np.ndarray, method: str) -> np.ndarray:
    """The part of a calibration tensor ptq_pow2 needs: [min, max] for min/max ranges."""
    if method == "minmax":
        return np.array([values.min(), values.max()], np.float32)
    return values


def _check_args(graph: Graph, calib_x, widths, tensors, weight_method: str
                ) -> tuple[tuple[int, ...], np.ndarray, list[QTensor], list[str]]:
    """Validated ``(widths, x float32, tensors to measure, activation tensors)``."""
    from fxp.plan.ptq import calibrate

    if weight_method not in WEIGHT_METHODS:
        raise PlanError(f"weight range method must be one of {WEIGHT_METHODS}, got "
                        f"{weight_method!r}")
    widths = tuple(sorted({int(b) for b in widths}))
    if not widths or widths[0] < 2:
        raise PlanError(f"candidate widths must be integers >= 2, got {widths}")
    x = np.asarray(calib_x, np.float32)
    if x.shape[0] == 0:
        raise CalibrationError("calibration set is empty")
    if not np.all(np.isfinite(x)):
        calibrate(graph, x, [])  # raises CalibrationError naming the sample
    qts = quantizable_tensors(graph)
    if tensors is not None:
        unknown = sorted(set(tensors) - {t.name for t in qts})
        if unknown:
            raise PlanError(f"unknown tensors {unknown}; tensors: {[t.name for t in qts]}")
        qts = [t for t in qts if t.name in set(tensors)]
    acts = [t.tensor for t in quantizable_tensors(graph) if t.kind == "act"]
    return widths, x, qts, acts


RANGE_BATCH = 256
"""Samples per float32 pass of the min/max range scan."""


def _batch_minmax(fq: _FakeQuant, xb: np.ndarray, acts: list[str]) -> list[tuple[float, float]]:
    """``(min, max)`` of each activation over one batch of the range scan."""
    env = fq.run({}, {}, xb)
    return [(float(env[t].min()), float(env[t].max())) for t in acts]


def _combine_minmax(acts: list[str], parts) -> dict[str, np.ndarray]:
    """Per-batch ``(min, max)`` lists, combined with Python ``min``/``max`` in batch order."""
    lo = {t: np.inf for t in acts}
    hi = {t: -np.inf for t in acts}
    for part in parts:
        for t, (a, b) in zip(acts, part, strict=True):
            lo[t] = min(lo[t], a)
            hi[t] = max(hi[t], b)
    return {t: np.array([lo[t], hi[t]], np.float32) for t in acts}


def _cell(fq: _FakeQuant, nodes: dict, t: QTensor, b: int, ranges: dict, method: str,
          percentile: float, rounding: str, weight_method: str
          ) -> tuple[float, str, np.ndarray]:
    """One table cell: ``(output SQNR dB, format, logits)`` with ``t`` alone at width ``b``."""
    if t.kind == "weight":
        w = nodes[t.layer].weight
        if weight_method == "sqnr":
            top = _spec_for(w.ravel(), b, "minmax", percentile, t.name, signed=True)
            cands = [QFormat(b, top.int_bits - k, True) for k in range(SQNR_CLIP_STEPS + 1)]
        else:
            cands = [_spec_for(w.ravel(), b, weight_method, percentile, t.name, signed=True)]
        best = None
        for fmt in cands:
            codes, _ = quantize(w.astype(np.float64), fmt, "half_even", "saturate")
            env = fq.run({}, {t.layer: dequantize(codes, fmt).astype(np.float32)}, None)
            s = fq.sqnr_db(env)
            if best is not None and not s > best[0]:
                break  # clipping one more bit stopped helping
            best = (s, fmt, env[fq.logits])
        return best[0], str(best[1]), best[2]
    is_in = t.layer is None
    fmt = _spec_for(ranges[t.tensor], b, "minmax" if is_in else method, percentile, t.tensor)
    env = fq.run({t.tensor: (fmt, "half_even" if is_in else rounding)}, {}, None)
    return fq.sqnr_db(env), str(fmt), env[fq.logits]


def keeps_errors(n_tensors: int, n_widths: int, n_logit_values: int) -> bool:
    """Whether :attr:`NoiseTable.errors` is kept (at most :data:`MAX_ERROR_ELEMENTS`)."""
    return n_tensors * n_widths * n_logit_values <= MAX_ERROR_ELEMENTS


def _assemble(qts: list[QTensor], widths: tuple[int, ...], cells, n_samples: int,
              ref: np.ndarray, rounding: str, method: str, weight_method: str,
              ranges: dict, graph: Graph | None = None) -> NoiseTable:
    """The table from its cells ``(i, j, sqnr, format, error vector or None)`` (any order);
    with the error vectors kept, ``graph`` gives :attr:`NoiseTable.dithered`."""
    from fxp.opt.interactions import dithered_pairs

    table = np.full((len(qts), len(widths)), np.nan)
    keep = keeps_errors(len(qts), len(widths), ref.size)
    errors = np.zeros((len(qts), len(widths), ref.size), np.float32) if keep else None
    formats: dict[str, dict[int, str]] = {t.name: {} for t in qts}
    for i, j, s, fmt, err in sorted(cells, key=lambda c: (c[0], c[1])):
        formats[qts[i].name][widths[j]] = fmt
        table[i, j] = s
        if keep:
            errors[i, j] = err
    kappa, offset, spans, rms = [], [], [], []
    for i in range(len(qts)):
        k, c, span, r = fit_lin_law(widths, table[i])
        kappa.append(k)
        offset.append(c)
        spans.append(span)
        rms.append(r)
    return NoiseTable(qts, widths, table, np.array(kappa), np.array(offset), spans, np.array(rms),
                      n_samples, rounding, method, weight_method, formats, ranges,
                      errors=errors, reference=ref.ravel().copy() if keep else None,
                      dithered=dithered_pairs(graph, qts) if keep and graph is not None
                      else None)


def measure_noise(graph: Graph, calib_x: np.ndarray, *, widths=DEFAULT_WIDTHS,
                  n_measure: int | None = 256, method: str = "minmax",
                  percentile: float = 99.99, rounding: str = "half_up",
                  tensors: list[str] | None = None, weight_method: str = "minmax"
                  ) -> NoiseTable:
    """Measure each tensor's output SQNR at each width (see the module docstring).

    Parameters
    ----------
    graph : Graph
        Canonical graph.
    calib_x : array [N, ...]
        Calibration inputs: the formats come from all of them (as ptq_pow2 would
        choose them; min/max ranges come from this module's float32 pass, the
        other methods from :func:`~fxp.plan.ptq.calibrate`), the SQNR is
        measured on the first ``n_measure``.  The plans built by
        :func:`fxp.opt.model.plan_for_widths` reuse exactly these ranges.
    widths : iterable of int
        Candidate widths (each >= 2).
    method, percentile, rounding, weight_method :
        As in :func:`~fxp.plan.ptq.ptq_pow2`.
    tensors : list of str, optional
        Measure only these tensors (default: all of :func:`quantizable_tensors`).

    Notes
    -----
    :func:`fxp.dist.noise.measure_noise_dist` computes the same table on a Dask
    cluster from the same pieces (range scan batches, cells, assembly), bit for bit.
    """
    from fxp.plan.ptq import calibrate

    widths, x, qts, acts = _check_args(graph, calib_x, widths, tensors, weight_method)
    xm = x[:n_measure] if n_measure else x
    fq = _FakeQuant(graph, xm, rounding)
    if method == "minmax":  # [min, max] per tensor from the fast float32 pass, in batches
        ranges = _combine_minmax(acts, (_batch_minmax(fq, x[s0:s0 + RANGE_BATCH], acts)
                                        for s0 in range(0, x.shape[0], RANGE_BATCH)))
    else:
        full = calibrate(graph, x, acts)
        ranges = {t: _reduce(v, method if t != graph.inputs[0] else "minmax")
                  for t, v in full.items()}
        del full
    nodes = {n.name: n for n in graph.nodes}
    ref = fq.base[fq.logits]
    keep = keeps_errors(len(qts), len(widths), ref.size)
    cells = []
    for i, t in enumerate(qts):
        for j, b in enumerate(widths):
            s, fmt, logits = _cell(fq, nodes, t, b, ranges, method, percentile, rounding,
                                   weight_method)
            cells.append((i, j, s, fmt, (logits - ref).ravel() if keep else None))
    return _assemble(qts, widths, cells, int(xm.shape[0]), ref, rounding, method, weight_method,
                     ranges, graph)
