"""Hwang & Sung's step search: a network-wide initial step, then each layer's step on the output error.

Source: ``shared/seeds/003`` (Athar, "An overview of datatype quantization
techniques for CNNs"), section III-A.2, "Ternary Weights (Hwang et al.)":

1. "Compute an initial step-size ``Delta_init`` for the entire network using
   an L2-error minimization approach similar to Lloyd-Max quantization."
   Here: :class:`fxp.quant.ternary.HwangSung` (grid search + Lloyd-Max
   least-squares refinement of ``||W - Delta Q(W; Delta)||**2``) fitted on the
   weights of every searched layer pooled into one vector (``init="network"``).
2. "Quantize the weights in all layers of the network using step-size
   ``Delta_init``, i.e. ``Delta_i = Delta_init`` for all ``i``."
3. "Fine-tune the step-size layer-wise.  Starting from the quantizer in the
   first layer: try several step-sizes ``Delta'_i`` close to the initial
   step-size, and for each ``Delta'_i`` calculate the L2-error at the output.
   Set ``Delta_i`` to the ``Delta'_i`` that achieved the lowest L2-error", then
   the next layer, until the last.

Choices the seed leaves open, made here:

* **Candidates**: ``Delta'_i = m * Delta_i`` for ``m`` in ``multiples``
  (default :data:`DEFAULT_MULTIPLES`: ``2**(k/8)``, ``k = -24..24``, i.e. 49
  geometric points from 1/8x to 8x, about 9% apart, 1x included), where
  ``Delta_i`` is the layer's step when its turn comes (``Delta_init``).  The
  seed says "close to" without a range; one network-wide step is far from
  some layers' best (on the zoo's ``mnist_cnn`` conv1 picks 6.2x), and a
  0.25x..4x grid stopped at its edge there, hence 8x.  With
  1x in the grid a layer's step only changes if the output error drops, so the
  final error is never above the initial one.  Ties keep the first grid point.
* **Output error**: the network's output (each graph output tensor as it is,
  e.g. the softmax probabilities of the zoo's ``mnist_cnn``) with the
  quantized weights against the float network's, both from the float
  reference :mod:`fxp.sim.float_ref` (float32 activations: the seed quantizes
  only the weights here) on a calibration batch ``x``:
  ``E = (1/N) sum_n ||y_q(x_n) - y(x_n)||_2**2`` -- the squared L2 error per
  image, in squared output units, accumulated in float64.
* **Layers**: every Conv2D / Dense (or ``layers``), in graph order; one pass
  (``passes``; the seed does one).  Each layer is an ``M = 2L + 1`` level
  uniform quantizer (``L = 2**(bits-1) - 1``; ternary at ``bits = 2``) with
  the rule of :class:`~fxp.quant.ternary.HwangSung` (nearest level, ties
  toward zero, clipped to ``+-L``).  Biases stay float.
* ``init="layer"`` starts from each layer's own L2-optimal step instead of the
  network-wide one (fxp's earlier behaviour, then searched the same way);
  ``snap`` maps every step tried to the value actually stored (e.g. an 8-bit
  integer times ``2**-F``), so the errors are those of the stored steps.

Steps are in the weights' units (a weight of level ``k`` is ``k * Delta``).
Deterministic: no randomness, fixed grid order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fxp.errors import FormatError, PlanError
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense
from fxp.quant.base import check_bits
from fxp.quant.ternary import HwangSung, _levels
from fxp.sim.float_ref import run_float, run_node

__all__ = ["DEFAULT_MULTIPLES", "StepSearch", "output_error", "quantize_steps", "search_steps"]

DEFAULT_MULTIPLES: tuple[float, ...] = tuple(2.0 ** (k / 8) for k in range(-24, 25))
"""Candidate multiples of a layer's current step: ``2**(k/8)``, ``k = -24..24`` (1/8x..8x)."""


@dataclass(frozen=True)
class StepSearch:
    """Result of :func:`search_steps` (steps in weight units, errors in squared output units).

    Attributes
    ----------
    steps : dict
        Layer name -> searched step ``Delta_i``.
    initial : dict
        Layer name -> step before the search (``Delta_init`` for every layer with
        ``init="network"``).
    l2 : dict
        Layer name -> the layer's own L2-optimal step (weight space), for comparison.
    init_step : float or None
        The network-wide ``Delta_init`` (``init="network"``), else None.
    multiples : tuple of float
        The grid of multiples tried.
    errors : dict
        Layer name -> output error at each candidate (last pass), in grid order.
    initial_error, error, l2_error : float
        Output error with ``initial``, with ``steps`` and with ``l2`` (all snapped).
    """

    steps: dict
    initial: dict
    l2: dict
    init_step: float | None
    multiples: tuple
    errors: dict = field(repr=False)
    initial_error: float
    error: float
    l2_error: float

    def summary(self) -> dict:
        """JSON-able: the steps, the errors and the grid (without the per-candidate errors)."""
        return {"steps": dict(self.steps), "initial": dict(self.initial), "l2": dict(self.l2),
                "init_step": self.init_step, "multiples": [min(self.multiples),
                                                          max(self.multiples),
                                                          len(self.multiples)],
                "initial_error": self.initial_error, "error": self.error,
                "l2_error": self.l2_error}


def _weighted(graph: Graph, layers) -> list[str]:
    names = [n.name for n in graph.nodes if isinstance(n, (Conv2D, Dense))]
    if not names:
        raise PlanError(f"model {graph.name!r} has no Conv2D or Dense layer to quantize")
    if layers is None:
        return names
    want = list(layers)
    unknown = sorted(set(want) - set(names))
    if unknown:
        raise PlanError(f"unknown layers {unknown}; layers with weights: {names}")
    return [n for n in names if n in set(want)]


def _quantized_node(node, step: float, lmax: int):
    w = node.weight.astype(np.float64)
    return dataclasses.replace(node, weight=(step * _levels(w, step, lmax)).astype(np.float32))


def quantize_steps(graph: Graph, steps: dict, bits: int = 2) -> Graph:
    """``graph`` with each layer of ``steps`` holding ``Delta * Q(W; Delta)`` (float32 weights)."""
    lmax = (1 << (check_bits(bits, 2, 24) - 1)) - 1
    _weighted(graph, steps)
    for name, s in steps.items():
        if not (np.isfinite(s) and s > 0):
            raise FormatError(f"layer {name!r}: step must be a finite number > 0, got {s!r}")
    return graph.replace_nodes({n: _quantized_node(graph.layer(n), float(s), lmax)
                                for n, s in steps.items()})


def _error(out, ref) -> float:
    outs = out if isinstance(out, dict) else {"": out}
    refs = ref if isinstance(ref, dict) else {"": ref}
    total = 0.0
    for k, r in refs.items():
        d = outs[k].astype(np.float64) - r.astype(np.float64)
        total += float(np.sum(d * d))
    return total / next(iter(refs.values())).shape[0]


def output_error(graph: Graph, steps: dict, x: np.ndarray, *, bits: int = 2) -> float:
    """Output error ``(1/N) sum_n ||y_q(x_n) - y(x_n)||**2`` of ``steps`` (module docstring).

    Parameters
    ----------
    graph : Graph
        The float network.
    steps : dict
        Layer name -> step (weight units); other layers stay float.
    x : array ``[N, ...]``
        Calibration batch.
    bits : int
        ``2**bits - 1`` levels (ternary at 2).

    Returns
    -------
    float
        Squared L2 error of the graph output(s) per image, in squared output units.
    """
    return _error(run_float(quantize_steps(graph, steps, bits), x), run_float(graph, x))


class _Suffix:
    """Runs the graph from node ``start`` on, from the tensors a prefix run left live."""

    def __init__(self, graph: Graph, start: int, x: np.ndarray) -> None:
        self.graph, self.start = graph, start
        produced = {n.output for n in graph.nodes[start:]}
        need = sorted({t for n in graph.nodes[start:] for t in n.inputs} - produced)
        self.env = run_float(graph, x, tensors=need)

    def run(self, node) -> np.ndarray | dict:
        env = dict(self.env)
        for n in (node, *self.graph.nodes[self.start + 1:]):
            env[n.output] = run_node(n, *(env[t] for t in n.inputs))
        outs = self.graph.outputs
        return env[outs[0]] if len(outs) == 1 else {t: env[t] for t in outs}


def search_steps(graph: Graph, x: np.ndarray, *, bits: int = 2, init: str = "network",
                 multiples: Sequence[float] = DEFAULT_MULTIPLES, layers=None, passes: int = 1,
                 snap: Callable[[float], float] | None = None) -> StepSearch:
    """Hwang & Sung's layer-wise step search on the output error (module docstring).

    Parameters
    ----------
    graph : Graph
        The pretrained float network.
    x : array ``[N, ...]``
        Calibration batch (the graph's input layout, float).
    bits : int
        2..24: ``2**bits - 1`` levels per layer (ternary at 2).
    init : {"network", "layer"}
        Start from the network-wide ``Delta_init`` (the seed's step 1) or from
        each layer's own L2-optimal step.
    multiples : sequence of float
        Candidate multiples of the layer's current step (all finite, > 0).
    layers : iterable of str, optional
        Layers to quantize and search (default every Conv2D / Dense).
    passes : int
        Sweeps over the layers (the seed: 1).
    snap : callable, optional
        Maps a step to the step actually stored (applied to every step tried).

    Returns
    -------
    StepSearch
    """
    lmax = (1 << (check_bits(bits, 2, 24) - 1)) - 1
    if init not in ("network", "layer"):
        raise FormatError(f"init must be 'network' or 'layer', got {init!r}")
    mult = tuple(float(m) for m in multiples)
    if not mult or not all(np.isfinite(m) and m > 0 for m in mult):
        raise FormatError(f"multiples must be a non-empty list of finite numbers > 0, "
                          f"got {list(multiples)!r}")
    if int(passes) != passes or passes < 1:
        raise FormatError(f"passes must be an integer >= 1, got {passes!r}")
    names = _weighted(graph, layers)
    fix = (lambda s: float(s)) if snap is None else (lambda s: float(snap(float(s))))
    hs = HwangSung()
    weights = {n: graph.layer(n).weight.astype(np.float64) for n in names}
    l2 = {n: fix(hs.fit(weights[n], bits)["step"]) for n in names}
    init_step = None
    if init == "network":
        init_step = float(hs.fit(np.concatenate([w.ravel() for w in weights.values()]),
                                 bits)["step"])
        steps = {n: fix(init_step) for n in names}
    else:
        steps = dict(l2)
    for n, s in steps.items():
        if not (np.isfinite(s) and s > 0):
            raise FormatError(f"layer {n!r}: initial step {s!r} is not > 0 (all-zero weights?)")
    initial = dict(steps)
    ref = run_float(graph, x)
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    errors: dict = {}
    for _ in range(int(passes)):
        for name in names:
            qg = quantize_steps(graph, steps, bits)  # the other layers at their current steps
            suffix = _Suffix(qg, order[name], x)
            base = steps[name]
            cand = [fix(m * base) for m in mult]
            errs = []
            for s in cand:
                if not (np.isfinite(s) and s > 0):
                    raise FormatError(f"layer {name!r}: candidate step {s!r} is not > 0")
                errs.append(_error(suffix.run(_quantized_node(graph.layer(name), s, lmax)), ref))
            errors[name] = np.array(errs)
            steps[name] = cand[int(np.argmin(errs))]
    return StepSearch(steps=steps, initial=initial, l2=l2, init_step=init_step, multiples=mult,
                      errors=errors, initial_error=output_error(graph, initial, x, bits=bits),
                      error=output_error(graph, steps, x, bits=bits),
                      l2_error=output_error(graph, l2, x, bits=bits))
