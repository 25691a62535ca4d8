"""The library API the CLI mirrors: load a model and data, make a plan, simulate, export.

Every CLI subcommand is one call here, so everything the CLI does is
available from Python::

    from fxp import workflow as fw
    graph = fw.load_model("mnist_cnn")
    data = fw.load_data("mnist5k", graph, limit=1000)
    plan = fw.make_plan(graph, data, bits=8)
    report = fw.run_simulation(graph, plan, data)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fxp.errors import DataError, PlanError
from fxp.ir.graph import Graph
from fxp.ir.passes import canonicalize
from fxp.ir.stats import layer_stats
from fxp.plan.plan import Plan
from fxp.sim.evaluate import SimulationReport, simulate

__all__ = ["Data", "inspect_model", "load_data", "load_model", "make_plan", "run_simulation"]


@dataclass(frozen=True)
class Data:
    """Preprocessed inputs and labels, with where they came from."""

    x: np.ndarray
    y: np.ndarray
    name: str


def load_model(spec: str | Path) -> Graph:
    """A zoo name (``mnist_cnn``) or an ONNX path -> canonical graph (BN folded, ReLU fused)."""
    from fxp.frontends.onnx_import import load_onnx
    from fxp.zoo import resolve_model

    path = resolve_model(spec)
    graph = load_onnx(path)
    return canonicalize(graph)


def load_data(spec: str, graph: Graph, *, limit: int | None = None,
              preprocess: dict[str, str] | None = None) -> Data:
    """Load a data spec and apply the model's preprocessing (overridable per key)."""
    from fxp.data import Preprocess, load_dataset

    ds = load_dataset(spec, limit=limit)
    meta = dict(graph.metadata)
    if preprocess:
        meta.update({f"fxp.preprocess.{k}": str(v) for k, v in preprocess.items()})
    pre = Preprocess.from_metadata(meta)
    x = pre.apply(ds.x).astype(np.float32)
    want = graph.input_shapes[graph.inputs[0]][1:]
    if tuple(x.shape[1:]) != tuple(want):
        raise DataError(f"data {spec!r} has samples of shape {tuple(x.shape[1:])}, but model "
                        f"{graph.name!r} expects {tuple(want)}")
    return Data(x, ds.y, ds.name)


def make_plan(graph: Graph, data: Data, *, bits: int = 8, weight_bits: int | None = None,
              act_bits: int | None = None, acc_bits: int = 32, scheme: str = "pow2",
              granularity: str = "whole", method: str = "minmax", rounding: str = "half_up",
              calib: int = 512) -> Plan:
    """Post-training quantization plan from the first ``calib`` samples of ``data``."""
    from fxp.plan.ptq import ptq_affine, ptq_pow2

    cx = data.x[:calib]
    if scheme == "pow2":
        return ptq_pow2(graph, cx, weight_bits=weight_bits or bits, act_bits=act_bits or bits,
                        acc_bits=acc_bits, granularity=granularity, method=method,
                        rounding=rounding)
    if scheme in ("double", "single", "float32"):
        return ptq_affine(graph, cx, bits=bits, scheme=scheme, acc_bits=acc_bits,
                          granularity=granularity)
    raise PlanError(f"unknown scheme {scheme!r}; use pow2, double, single or float32")


def run_simulation(graph: Graph, plan: Plan, data: Data, *, batch_size: int = 256,
                   progress: bool = False, method: str = "auto",
                   keep_predictions: bool = False, per_channel: bool = False) -> SimulationReport:
    """Float and fixed-point evaluation of ``plan`` on ``data`` (see :func:`fxp.sim.evaluate.simulate`)."""
    return simulate(graph, plan, data.x, data.y, batch_size=batch_size, model_name=graph.name,
                    data_name=data.name, progress=progress, method=method,
                    keep_predictions=keep_predictions, per_channel=per_channel)


def inspect_model(graph: Graph) -> list[dict]:
    """One row per layer: op, output shape, parameters, MACs and weight statistics."""
    stats = {s.name: s for s in layer_stats(graph)}
    rows = []
    for node in graph.nodes:
        st = stats.get(node.name)
        row = {"name": node.name, "op": type(node).__name__,
               "output_shape": list(graph.shapes[node.output][1:]),
               "params": int(st.params) if st else 0, "macs": int(st.macs) if st else 0}
        w = getattr(node, "weight", None)
        if w is not None:
            wf = w.astype(np.float64).ravel()
            sd = float(wf.std())
            kurt = float(np.mean(((wf - wf.mean()) / sd) ** 4) - 3.0) if sd > 0 else 0.0
            row.update(w_min=float(wf.min()), w_max=float(wf.max()), w_std=sd, w_kurtosis=kurt)
        rows.append(row)
    return rows


def optimize_plan(graph: Graph, data: Data, target_sqnr_db: float, *,
                  cost: str = "weight_memory", min_bits: int | None = None,
                  max_bits: int | None = None, widths=range(2, 17), calib: int = 1000,
                  n_measure: int | None = 256, rounding: str = "half_up",
                  method: str = "minmax", verify: bool = True):
    """Cheapest per-tensor widths meeting an output SQNR target (see :func:`fxp.opt.optimize_bits`).

    The first ``calib`` samples calibrate and measure the per-tensor noise; the
    rest are held out for the integer-engine measurement of the chosen plan.
    Returns a :class:`fxp.opt.BitAllocation` (``.plan`` is a Plan).
    """
    from fxp.opt import optimize_bits

    return optimize_bits(graph, data, target_sqnr_db, cost=cost, min_bits=min_bits,
                         max_bits=max_bits, widths=widths, calib=calib, n_measure=n_measure,
                         rounding=rounding, method=method, verify=verify)


def sweep_quantizers(graph: Graph, data: Data, *, quantizers="midtread,midrise,deadzone:0.4,"
                     "mulaw,minifloat,pow2,kmeans,hc:ward", bits="2-16", tolerance: float = 0.01,
                     per_channel: bool = False, progress: bool = False):
    """Rate-distortion sweep of weight quantizers (see :func:`fxp.quant.sweep.sweep`).

    Returns a :class:`fxp.quant.sweep.SweepResult`: one row per quantizer and
    width (entropy in bits/weight, estimated size, top-1/top-5 accuracy of the
    float reference on the reconstructed weights) and, per quantizer, the
    lowest-entropy point within ``tolerance`` (0.01 = 1 point) of float accuracy.
    """
    from fxp.quant.sweep import sweep

    return sweep(graph, data, quantizers, bits, tolerance=tolerance, per_channel=per_channel,
                 progress=progress)
