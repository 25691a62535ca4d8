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

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fxp.errors import DataError, PlanError
from fxp.ir.graph import Graph
from fxp.ir.passes import canonicalize
from fxp.ir.stats import layer_stats
from fxp.plan.plan import Plan
from fxp.sim.evaluate import SimulationReport, check_labels, simulate

__all__ = ["EMBEDDED_PLAN_KEY", "Data", "embedded_plan", "float_departure", "inspect_model",
           "load_data", "load_model", "make_plan", "model_plan", "num_classes", "run_simulation"]


@dataclass(frozen=True)
class Data:
    """Preprocessed inputs and labels, with where they came from."""

    x: np.ndarray
    y: np.ndarray
    name: str


EMBEDDED_PLAN_KEY = "fxp.quantized.plan"
"""Graph metadata key: the JSON plan a quantized ONNX file carries (see :func:`load_model`)."""


def load_model(spec: str | Path, *, runtime: str | None = None) -> Graph:
    """A zoo name (``mnist_cnn``), an ONNX or a ``.tflite`` path -> canonical graph (BN folded,
    ReLU fused).

    ``runtime`` (``.tflite`` only; default ``"tflm"``) picks whose integers the
    embedded plan reproduces (:mod:`fxp.frontends.tflite_runtime`); another
    model with a ``runtime`` is a :class:`~fxp.errors.PlanError`.

    A ``.tflite`` file is read by :func:`fxp.frontends.tflite.load_tflite`; its
    plan (the file's own quantization) is embedded like a quantized ONNX
    model's.  TFLite has no standard field for input normalisation: only
    ``fxp.preprocess.*`` entries of the file's ``metadata`` table become graph
    metadata (the committed models carry them, ``models/tflite/add_metadata.py``);
    without them the data is fed as loaded.

    A quantized file (onnxruntime QOperator or QDQ: QuantizeLinear, QLinear*
    nodes or DequantizeLinear of int8 weights) is read by
    :func:`fxp.frontends.onnx_quantized.load_quantized`; the plan it carries is
    kept in the graph's metadata (:data:`EMBEDDED_PLAN_KEY`, read back by
    :func:`embedded_plan`).  A QONNX file (a node in a QONNX domain: ``Quant``,
    ``BipolarQuant``) is read by :func:`fxp.frontends.qonnx.load_qonnx` and its
    plan embedded the same way.  A binarized model (``Where``/``Sign`` sign
    activations after Conv/Gemm) is read by
    :func:`fxp.frontends.onnx_binary.load_binarized`: XNOR-popcount layers with
    integer thresholds, its plan embedded the same way.
    """
    from fxp.frontends.onnx_import import load_onnx
    from fxp.zoo import resolve_model

    path = resolve_model(spec)
    if Path(path).suffix.lower() == ".tflite":  # full-integer TFLite: the reader's plan
        from fxp.frontends.tflite import load_tflite

        return _with_plan(*load_tflite(path, runtime or "tflm"))
    if runtime is not None:
        raise PlanError(f"a runtime profile ({str(runtime)[:40]!r}) applies to .tflite models; "
                        f"{str(spec)[:200]!r} is not one")
    kind = _quantized_kind(path)
    if kind == "qonnx":  # Quant / BipolarQuant nodes: the plan their quantizers say
        from fxp.frontends.qonnx import load_qonnx

        return _with_plan(*load_qonnx(path))
    if kind == "binary":  # Where / Sign activations: popcount layers, exact thresholds
        from fxp.frontends.onnx_binary import load_binarized

        return _with_plan(*load_binarized(path))
    if kind == "ort":
        import json

        from fxp.frontends.onnx_quantized import load_quantized
        from fxp.plan.io import plan_to_dict

        graph, plan = load_quantized(path)
        meta = {**graph.metadata, EMBEDDED_PLAN_KEY: json.dumps(plan_to_dict(plan))}
        graph = Graph(nodes=graph.nodes, inputs=graph.inputs, input_shapes=graph.input_shapes,
                      outputs=graph.outputs, metadata=meta, name=graph.name)
        return canonicalize(graph)
    graph = load_onnx(path)
    return canonicalize(graph)


def _with_plan(graph: Graph, plan: Plan) -> Graph:
    """``graph`` carrying ``plan`` under :data:`EMBEDDED_PLAN_KEY`, canonicalized."""
    import json

    from fxp.plan.io import plan_to_dict

    meta = {**graph.metadata, EMBEDDED_PLAN_KEY: json.dumps(plan_to_dict(plan))}
    return canonicalize(Graph(nodes=graph.nodes, inputs=graph.inputs,
                              input_shapes=graph.input_shapes, outputs=graph.outputs,
                              metadata=meta, name=graph.name))


def _quantized_kind(path: Path) -> str | None:
    """``"qonnx"`` (a node in a QONNX domain), ``"ort"`` (onnxruntime QOperator/QDQ),
    ``"binary"`` (``Where``/``Sign`` activations) or None."""
    from fxp.frontends.onnx_import import MAX_MODEL_BYTES, _import_onnx, _read
    from fxp.frontends.onnx_quantized import is_quantized_model
    from fxp.frontends.qonnx import is_qonnx_model

    model, _, _ = _read(_import_onnx(), str(path), MAX_MODEL_BYTES)
    if is_qonnx_model(model):
        return "qonnx"
    from fxp.frontends.onnx_binary import is_binarized_model

    if is_binarized_model(model):
        return "binary"
    return "ort" if is_quantized_model(model) else None


def embedded_plan(graph: Graph) -> Plan | None:
    """The plan a quantized model carries (:func:`load_model`), or None for a float model."""
    import json

    from fxp.plan.io import plan_from_dict

    raw = graph.metadata.get(EMBEDDED_PLAN_KEY)
    return None if raw is None else plan_from_dict(json.loads(raw), f"model {graph.name!r}")


def model_plan(graph: Graph, plan_path: str | Path | None, model: str = "model") -> Plan:
    """``plan_path`` when given, else the plan the quantized model carries.

    Raises
    ------
    PlanError
        No ``plan_path`` and ``graph`` is a float model.
    """
    from fxp.plan.io import load_plan

    if plan_path is not None:
        return load_plan(plan_path)
    plan = embedded_plan(graph)
    if plan is None:
        raise PlanError(f"{str(model)[:200]!r} is a float model: give --plan PLAN.json (make "
                        f"one with 'fxp plan {str(model)[:100]} --data ... --out PLAN.json'), "
                        f"or pass a quantized ONNX model, which carries its own plan")
    return plan


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
    if not np.all(np.isfinite(x)):
        i = int(np.argmax(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)))
        raise DataError(f"data {spec!r}: preprocessing gives NaN/Inf (first in sample {i}); "
                        "check the model's fxp.preprocess.* metadata")
    y = check_labels(ds.y, num_classes(graph), f"data {spec!r}")
    return Data(x, y, ds.name)


def num_classes(graph: Graph) -> int:
    """Number of logits per sample: the input of a final Softmax, else the graph output."""
    from fxp.ir.nodes import Softmax

    last = graph.producer(graph.outputs[0])
    t = last.inputs[0] if isinstance(last, Softmax) else graph.outputs[0]
    return math.prod(graph.shapes[t][1:])


def _check_int(value: object, what: str, lo: int, hi: int | None = None, *,
               error: type[Exception] = PlanError) -> int:
    """``value`` as an int in ``lo..hi``; bools, floats and strings are refused, not coerced."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise error(f"{what} must be an integer {rng}, got {str(value)[:60]!r}")
    return int(value)


def _check_float(value: object, what: str, lo: float, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a finite float in the range; PlanError otherwise (NaN included)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    if ok:
        v = float(value)
        ok = (v > lo if lo_open else v >= lo) and (hi is None or (v < hi if hi_open else v <= hi))
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo:g}, {'inf)' if hi is None else f'{hi:g}'}"
        rng += "" if hi is None else (")" if hi_open else "]")
        raise PlanError(f"{what} must be a finite number in {rng}, got {str(value)[:60]!r}")
    return float(value)


def make_plan(graph: Graph, data: Data, *, bits: int = 8, weight_bits: int | None = None,
              act_bits: int | None = None, acc_bits: int = 32, scheme: str = "pow2",
              granularity: str = "whole", method: str = "minmax", rounding: str = "half_up",
              calib: int = 512, binary_layers=(), alpha_bits: int | None = 8,
              binary_output: str = "scale", pad_value: int = 0,
              weight_method: str = "minmax") -> Plan:
    """Post-training quantization plan from the first ``calib`` samples of ``data``.

    ``binary_layers`` (pow2 scheme only) makes the named layers binary
    (XNOR-popcount) with ``alpha_bits``, ``binary_output`` and ``pad_value``;
    see :func:`fxp.plan.ptq.ptq_pow2`.
    """
    from fxp.plan.ptq import ptq_affine, ptq_pow2

    bits = _check_int(bits, "bits", 1, 64)
    weight_bits = bits if weight_bits is None else _check_int(weight_bits, "weight_bits", 1, 64)
    act_bits = bits if act_bits is None else _check_int(act_bits, "act_bits", 1, 64)
    acc_bits = _check_int(acc_bits, "acc_bits", 1, 64)
    calib = _check_int(calib, "calib (calibration samples)", 1)
    if alpha_bits is not None:
        alpha_bits = _check_int(alpha_bits, "alpha_bits", 1, 63)
    cx = data.x[:calib]
    if weight_method == "sqnr":
        raise PlanError("weight range 'sqnr' needs the output-SQNR measurement of an optimized "
                        "plan (--target-sqnr / --max-accuracy-drop); use minmax, percentile "
                        "or mse here")
    if binary_layers and scheme != "pow2":
        raise PlanError(f"binary layers need the pow2 scheme, got {scheme!r}")
    if scheme == "pow2":
        return ptq_pow2(graph, cx, weight_bits=weight_bits, act_bits=act_bits,
                        acc_bits=acc_bits, granularity=granularity, method=method,
                        rounding=rounding, binary_layers=tuple(binary_layers),
                        alpha_bits=alpha_bits, binary_output=binary_output,
                        pad_value=pad_value, weight_method=weight_method)
    if scheme in ("double", "single", "float32"):
        if (weight_bits, act_bits) != (bits, bits):
            raise PlanError(f"the affine {scheme!r} scheme codes weights and activations in "
                            f"--bits {bits}; separate weight/activation bits are for pow2")
        if bits < 2:
            raise PlanError(f"the affine {scheme!r} scheme needs at least 2 bits, got {bits}")
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


def _float_name(onnx_name: str) -> str:
    for suffix in ("_QuantizeLinear_Output", "_quantized"):
        if onnx_name.endswith(suffix):
            return onnx_name[:-len(suffix)]
    return onnx_name


def float_departure(graph: Graph, plan: Plan, float_model: str | Path, data: Data, *,
                    batch_size: int = 256) -> dict:
    """Where a quantized model departs from its float source, tensor by tensor.

    Each integer tensor of ``graph`` (imported by
    :func:`~fxp.frontends.onnx_quantized.load_quantized`) is compared with the
    tensor of the float model ``float_model`` that has the same name (the
    quantized name without ``_quantized`` / ``_QuantizeLinear_Output``; when
    that float tensor is read only by a Relu or Clip, the activation's output,
    which onnxruntime folded into the quantized tensor's range).  SQNR is
    ``10 log10(sum f**2 / sum (f - q)**2)`` over ``data``, with ``q`` the
    dequantized codes.

    Returns
    -------
    dict
        ``rows`` (``tensor``, ``float_tensor``, ``layer``, ``sqnr_db`` in node
        order), ``matched`` / ``unmatched`` counts, ``quant_top1``,
        ``float_top1`` and ``agreement`` (argmax of the two outputs) on ``data``.
    """
    from fxp.frontends.onnx_import import load_onnx
    from fxp.frontends.onnx_quantized import quantized_tensor_map
    from fxp.ir.nodes import Clip, ReLU
    from fxp.sim.compile import compile_plan
    from fxp.sim.float_ref import run_float
    from fxp.sim.integer import run_integer
    from fxp.sim.values import to_float
    from fxp.zoo import resolve_model

    fgraph = load_onnx(resolve_model(float_model))
    compiled = compile_plan(graph, plan)
    pairs: dict[str, tuple[str, str]] = {}  # IR tensor -> (onnx name, float tensor)
    for onnx_name, t in quantized_tensor_map(graph).items():
        f = _float_name(onnx_name)
        while f in fgraph.shapes and len(fgraph.consumers(f)) == 1 and \
                isinstance(fgraph.consumers(f)[0], (ReLU, Clip)):
            f = fgraph.consumers(f)[0].output
        if f in fgraph.shapes and t in compiled.graph.shapes and \
                tuple(fgraph.shapes[f][1:]) == tuple(compiled.graph.shapes[t][1:]):
            pairs[t] = (onnx_name, f)
    sig = dict.fromkeys(pairs, 0.0)
    noise = dict.fromkeys(pairs, 0.0)
    qpred, fpred = [], []
    for s in range(0, len(data.x), batch_size):
        xb = data.x[s:s + batch_size]
        got = run_integer(compiled, xb, keep=True)
        ref = run_float(fgraph, xb, tensors={f for _, f in pairs.values()} | set(fgraph.outputs))
        for t, (_, f) in pairs.items():
            fv = ref[f].astype(np.float64)
            qv = np.asarray(to_float(got.values[t], t), np.float64)
            sig[t] += float(np.sum(fv * fv))
            noise[t] += float(np.sum((fv - qv) ** 2))
        qpred.append(np.asarray(got.output).reshape(len(xb), -1).argmax(1))
        fpred.append(np.asarray(ref[fgraph.outputs[0]]).reshape(len(xb), -1).argmax(1))
    order = {n.output: i for i, n in enumerate(compiled.graph.nodes)}
    rows = []
    for t in sorted(pairs, key=lambda t: order.get(t, -1)):
        p = compiled.graph.producer(t)
        db = float("inf") if noise[t] == 0 else (
            float("-inf") if sig[t] == 0 else 10 * math.log10(sig[t] / noise[t]))
        rows.append({"tensor": pairs[t][0], "float_tensor": pairs[t][1],
                     "layer": p.name if p is not None else "(input)", "sqnr_db": db})
    qp, fp = np.concatenate(qpred), np.concatenate(fpred)
    return {"rows": rows, "matched": len(pairs),
            "unmatched": len(quantized_tensor_map(graph)) - len(pairs),
            "quant_top1": float(np.mean(qp == data.y)), "float_top1": float(np.mean(fp == data.y)),
            "agreement": float(np.mean(qp == fp)), "n": int(len(data.x))}


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


def optimize_plan(graph: Graph, data: Data, target_sqnr_db: float | None, *,
                  cost: str = "weight_memory", min_bits: int | None = None,
                  max_bits: int | None = None, widths=range(2, 17), calib: int = 1000,
                  selection: int | None = None, tolerance_db: float = 0.0,
                  n_measure: int | None = None, rounding: str = "half_up",
                  method: str = "minmax", verify: bool = True,
                  weight_method: str = "sqnr", noise_table=None, target: str | None = None,
                  cost_file=None, budgets: dict | None = None, reuse_factor: int | None = None,
                  acc_saturate: int | None = None, client=None,
                  interactions: bool | str = True, margin_se: float = 0.0,
                  calibration_check: bool = True, confidence: float | None = None,
                  split_seed: int | None = 0, jumps: int | None = None):
    """Cheapest per-tensor widths meeting an output SQNR target (see :func:`fxp.opt.optimize_bits`).

    ``data`` is put in a random order (``split_seed``, default 0; None: the data's own
    order) and cut into three disjoint splits (:mod:`fxp.opt.splits`): the first
    ``calib`` samples of that order calibrate and measure the per-tensor noise (all of
    them unless ``n_measure``); the next ``selection`` (default ``min(1000,
    rest // 2)``) check each plan with the integer engine and may trigger
    re-solves; the rest are held out for the final check, which ``success``
    reports (held-out SQNR >= target - ``tolerance_db``, 0 dB by default).
    ``confidence`` (default 0.95; 0: none): the calibration measurement must clear the
    target by the one-sided bound on the held-out measurement
    (:func:`fxp.opt.measured_goal.held_out_margin_db`).
    Returns a :class:`fxp.opt.BitAllocation` (``.plan`` is a Plan).
    ``weight_method="sqnr"`` (default) gives each weight, at each width, the
    clip (integer bits) with the best measured output SQNR; ``"minmax"`` never
    clips (see :mod:`fxp.opt.noise`).  ``noise_table`` reuses a table measured
    before on the same calibration samples.  ``target`` (``"fpga"``/``"mcu"``),
    ``cost_file``, ``budgets`` (``{"dsp": N, "lut": N, "bram": N, "flash": bytes,
    "ram": bytes}``; without a target SQNR the SQNR is maximised under them),
    ``reuse_factor`` and ``acc_saturate``: see :func:`fxp.opt.optimize_bits`.
    ``client`` (a ``distributed.Client``, :func:`fxp.dist.cluster.open_client`)
    measures the noise table on that Dask cluster (the same table, bit for bit).
    ``interactions``: True checks each optimum against the pairwise interaction
    terms (the default), ``"milp"`` solves with them in the MILP (see
    :func:`fxp.opt.optimize_bits`); ``margin_se``: the plan's second-order
    prediction (and its measured SQNR on the calibration split) must clear the target by
    that many of the prediction's standard errors; ``calibration_check``: measure each
    searched plan on the calibration split with the integer engine and keep the cheapest
    that meets the goal there (:mod:`fxp.opt.measured_goal`); ``jumps``: most measurements
    of its prediction jump per goal (:mod:`fxp.opt.prediction_jump`; default 4, 0: none).
    """
    from fxp.opt import optimize_bits

    calib = _check_int(calib, "calib (calibration samples)", 1)
    if n_measure is not None:
        n_measure = _check_int(n_measure, "n_measure", 1)
    if selection is not None:
        selection = _check_int(selection, "selection (selection samples)", 0)
    _check_float(tolerance_db, "tolerance_db (dB below the target still met)", 0.0, 100.0)
    return optimize_bits(graph, data, target_sqnr_db, cost=cost, min_bits=min_bits,
                         max_bits=max_bits, widths=widths, calib=calib, n_measure=n_measure,
                         selection=selection, tolerance_db=float(tolerance_db),
                         rounding=rounding, method=method, verify=verify,
                         weight_method=weight_method, noise_table=noise_table, target=target,
                         cost_file=cost_file, budgets=budgets, reuse_factor=reuse_factor,
                         acc_saturate=acc_saturate, client=client, interactions=interactions,
                         margin_se=margin_se, calibration_check=bool(calibration_check),
                         split_seed=split_seed,
                         **({} if confidence is None else {"confidence": confidence}),
                         **({} if jumps is None else {"jumps": jumps}))


def sweep_quantizers(graph: Graph, data: Data, *, quantizers="midtread,midrise,deadzone:0.4,"
                     "mulaw,minifloat,pow2,kmeans,hc:ward", bits="2-16", tolerance: float = 0.01,
                     per_channel: bool = False, progress: bool = False, client=None):
    """Rate-distortion sweep of weight quantizers (see :func:`fxp.quant.sweep.sweep`).

    Returns a :class:`fxp.quant.sweep.SweepResult`: one row per quantizer and
    width (entropy in bits/weight, estimated size, top-1/top-5 accuracy of the
    float reference on the reconstructed weights) and, per quantizer, the
    lowest-entropy point within ``tolerance`` (0.01 = 1 point) of float accuracy.
    ``client`` (a ``distributed.Client``) evaluates each point as a task on that
    Dask cluster (:func:`fxp.dist.sweep.sweep_dist`, the same result).
    """

    _check_float(tolerance, "tolerance (accuracy drop, 0.01 = 1 point)", 0.0, 1.0)
    if isinstance(bits, str) and any(len(n) > 2 for n in re.findall(r"[0-9]+", bits)):
        raise PlanError(f"bits must be widths in 1..32 like '2-16' or '2,4,8', got "
                        f"{bits[:40]!r}")
    from fxp.dist.sweep import sweep_dist  # client None: fxp.quant.sweep.sweep in-process

    return sweep_dist(graph, data, quantizers, bits, tolerance=tolerance,
                      per_channel=per_channel, progress=progress, client=client)


ACCURACY_SEARCH_TARGETS_DB = tuple(float(t) for t in range(2, 41))
DROP_TOLERANCE = 1e-9
"""Points: a drop equal to the limit up to float rounding of the accuracies meets it."""


def optimize_for_accuracy(graph: Graph, data: Data, max_drop_points: float, *,
                          targets_db=ACCURACY_SEARCH_TARGETS_DB, **kwargs):
    """Cheapest optimized plan whose measured top-1 drop is at most ``max_drop_points``.

    Bisects the sorted output-SQNR targets ``targets_db`` (default 2..40 dB in
    1 dB steps) with :func:`optimize_plan` for the lowest one whose plan's
    accuracy, measured by the integer engine on the **selection** split, is
    within ``max_drop_points`` (percentage points) of float; the held-out
    split then checks the chosen plan only (``success`` is False, status
    ``drop_not_met``, when its held-out drop exceeds the limit).  Without a
    selection split the held-out drop chooses, and the message says it is then
    not held out.  A stricter
    target never costs less, so that is the cheapest plan on the grid *if*
    accuracy does not fall as the SQNR target rises; it usually holds but is
    not guaranteed (the message lists every target tried and its drop).  The
    per-tensor noise is measured once and shared by every try; a try costs
    one MILP solve and one integer-engine verification (about log2 of the
    grid size tries).  ``total_time_s`` of the result is the wall time of the
    whole search, ``tries`` lists every try (target, drop, seconds) and the
    message the total and each try's time.

    Raises
    ------
    InfeasibleTargetError
        When even the highest reachable target misses the drop.
    """
    import dataclasses
    import math
    import time

    from fxp.errors import InfeasibleTargetError, PlanError

    if not (isinstance(max_drop_points, (int, float)) and math.isfinite(max_drop_points)
            and max_drop_points >= 0):
        raise PlanError(f"max accuracy drop must be a finite number of points >= 0, "
                        f"got {max_drop_points!r}")
    grid = sorted({float(t) for t in targets_db})
    if not grid:
        raise PlanError("no output-SQNR targets to search")
    tried: dict[int, object] = {}
    seconds: dict[int, float] = {}
    t_start = time.perf_counter()

    def attempt(i: int):
        if i not in tried:
            t0 = time.perf_counter()
            try:
                res = optimize_plan(graph, data, grid[i], **kwargs)
            except InfeasibleTargetError:
                res = None
            else:
                kwargs["noise_table"] = res.noise_table
            tried[i] = res
            seconds[i] = time.perf_counter() - t0
        return tried[i]

    def drop(res) -> float:  # on the selection split, which may drive the choice
        top = getattr(res, "selection_top1", None) or (res.float_top1, res.fixed_top1)
        return 100.0 * (top[0] - top[1])

    def held_drop(res) -> float:
        return 100.0 * (res.float_top1 - res.fixed_top1)

    def meets(i: int) -> bool:
        res = attempt(i)
        return res is not None and drop(res) <= max_drop_points + DROP_TOLERANCE

    def log() -> str:
        return "; ".join(f"{grid[i]:g} dB: " + ("infeasible" if r is None else
                                                 f"drop {drop(r):.2f}") + f" ({seconds[i]:.1f} s)"
                         for i, r in sorted(tried.items()))

    lo, hi = 0, len(grid) - 1
    while hi >= 0 and attempt(hi) is None:  # the highest reachable target
        hi -= 1
    if hi < 0 or not meets(hi):
        raise InfeasibleTargetError(f"no output-SQNR target up to {grid[-1]:g} dB keeps the "
                                    f"top-1 drop within {max_drop_points:g} points "
                                    f"(tried {log() or 'none'})")
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid + 1
    res = tried[hi]
    total = time.perf_counter() - t_start
    tries = [{"target_sqnr_db": grid[i], "drop_points": None if r is None else drop(r),
              "time_s": seconds[i], "chosen": i == hi} for i, r in sorted(tried.items())]
    on_sel = getattr(res, "selection_top1", None) is not None
    hd = held_drop(res)
    held = hd <= max_drop_points + DROP_TOLERANCE
    check = (f"held-out drop {hd:.2f} points {'within' if held else 'EXCEEDS'} the limit"
             if on_sel else "no selection split: the held-out drop chose the target, so it is "
             "not held out")
    extra = {}
    if on_sel and not held:
        extra = {"success": False, "status": "drop_not_met"}
    return dataclasses.replace(res, total_time_s=total, tries=tries, **extra,
                               message=f"{res.message}; lowest target meeting a "
                               f"{max_drop_points:g}-point accuracy drop on the selection split "
                               f"by bisection, {len(tries)} tries in {total:.1f} s ({log()}); "
                               f"{check}")


from fxp.workflow_train import TRAIN_DEFAULT_BITS, TRAIN_METHODS, train_model  # noqa: E402,F401
