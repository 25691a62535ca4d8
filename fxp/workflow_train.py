"""``fxp train``: retraining methods behind one call (see :func:`train_model`).

Split from :mod:`fxp.workflow` (which re-exports these names); the argument
checks are the workflow's own.
"""

from __future__ import annotations

from pathlib import Path

from fxp.errors import PlanError
from fxp.ir.graph import Graph

TRAIN_METHODS = ("qat", "qat-conv", "qat-dense", "inq", "twn", "hwang-sung", "binaryconnect", "bnn",
                 "cluster")
"""Methods of :func:`train_model` (``fxp train METHOD``)."""

TRAIN_DEFAULT_BITS = {"qat": 8, "qat-conv": 8, "qat-dense": 8, "inq": 8, "twn": 2,
                      "hwang-sung": 2, "binaryconnect": 1, "bnn": 1,
                      "cluster": 4}
"""``bits`` of :func:`train_model` when not given, per method."""


def train_model(method: str, model: str | Path | Graph, data: str, *, bits: int | None = None,
                out: str | Path, epochs: int | None = None, seed: int = 0,
                eval_data: str | None = None, limit: int | None = None,
                eval_limit: int | None = None, act_bits: int | None = None,
                scratch: bool = False, lr: float | None = None, batch_size: int = 64,
                rounding: str = "half_up", calib: int = 512, threads: int = 1,
                dropout: float = 0.0, shift: int = 0, steps_per_epoch: int | None = None,
                eval_each_epoch: bool = True, verify: bool = True, progress: bool = False,
                log=None, cluster: str = "kmeans", scale_bits: int = 8,
                step_search: str | None = "network") -> dict:
    """Retrain ``model`` with fxp's quantizers, export ONNX + plan to ``out``, verify with fxp.

    ``method``: ``qat`` (every layer), ``qat-conv`` / ``qat-dense`` (only
    convolutions / dense layers quantized, the others float; seed 000) or
    ``inq`` (seed 002; ``bits`` is the power-of-two weight width, activations
    take ``act_bits``, default 8); ``twn``, ``hwang-sung`` (``bits`` 2..8: ``2**bits
    - 1`` levels, ternary at 2), ``binaryconnect`` (seed 003) or ``cluster``
    (seed 004: ``2**bits`` shared weights per layer, codebook by ``cluster`` =
    ``kmeans`` or ``hc:ward|complete|average|single``, centroids fine-tuned);
    ``bnn`` trains a binarized network (binary weights and activations, STE;
    :mod:`fxp.train.bnn`) from scratch, sized from ``model``'s input and
    classes, and exports an ONNX file that ``fxp simulate`` runs on the
    popcount path (default 1 epoch, lr 5e-3);
    these four store per-layer scales / codebooks in ``scale_bits`` bits
    (:mod:`fxp.train.ternary`, :mod:`fxp.train.cluster`).  ``bits`` defaults to
    :data:`TRAIN_DEFAULT_BITS`.  ``scratch=True`` (QAT only) re-initialises
    the weights.  Defaults: ``epochs`` 3 (QAT fine-tuning and the four above), 10
    (from scratch), 2 per INQ stage; ``lr`` 1e-4 (fine-tuning, INQ), 2e-3 (scratch).

    Checkpoints go to ``out/checkpoint.pt`` after every epoch; calling again
    with the same arguments resumes (or only re-exports a finished run).
    Returns a summary (also written to ``out/train_result.json``): accuracy of
    the fake-quantized model on the evaluation data (``eval_data``, default
    ``data``), the exported files, and -- with ``verify`` -- the fxp
    simulation of the exported files and its top-1 agreement with torch.
    Needs PyTorch (:class:`~fxp.errors.MissingDependencyError` otherwise).
    """
    from fxp import workflow as _wf  # not at import: fxp.workflow re-exports this module
    from fxp.train import require_torch

    require_torch()
    from fxp.train.export import export_trained, verify_export, write_json
    from fxp.train.inq import train_inq
    from fxp.train.loop import TrainConfig
    from fxp.train.qat import train_qat

    if method not in TRAIN_METHODS:
        raise PlanError(f"unknown training method {method!r}; use one of {list(TRAIN_METHODS)}")
    if method == "bnn":
        unused = [k for k, v in (("act_bits", act_bits), ("scratch", scratch),
                                 ("dropout", dropout), ("shift", shift),
                                 ("steps_per_epoch", steps_per_epoch)) if v]
        if unused:
            raise PlanError(f"bnn trains binary weights and activations from scratch; "
                            f"{unused} do not apply to it")
        return _train_bnn(model, data, bits=bits, out=out, epochs=epochs, seed=seed,
                          eval_data=eval_data, limit=limit, eval_limit=eval_limit, lr=lr,
                          batch_size=batch_size, threads=threads, log=log)
    for what, v, lo, hi in (("bits", bits, 1, 64), ("act_bits", act_bits, 1, 64),
                            ("epochs", epochs, 0, None), ("limit", limit, 1, None),
                            ("eval_limit", eval_limit, 1, None), ("steps_per_epoch",
                                                                 steps_per_epoch, 1, None)):
        if v is not None:
            _wf._check_int(v, what, lo, hi)
    _wf._check_int(batch_size, "batch_size", 1)
    _wf._check_int(calib, "calib (calibration samples)", 1)
    _wf._check_int(threads, "threads", 1)
    _wf._check_int(scale_bits, "scale_bits", 1, 63)
    _wf._check_int(seed, "seed", 0, 2**32 - 1)
    _wf._check_int(shift, "shift", 0)
    _wf._check_float(dropout, "dropout", 0.0, 1.0, hi_open=True)
    if lr is not None:
        _wf._check_float(lr, "lr (learning rate)", 0.0, lo_open=True)
    from fxp.fileio import ensure_dir

    ensure_dir(out)  # fail fast: an unwritable output folder before any training
    if scratch and not method.startswith("qat"):
        raise PlanError(f"{method} quantizes a pretrained model; --scratch is for qat")
    if bits is None:
        bits = TRAIN_DEFAULT_BITS[method]
    projected = method in ("twn", "hwang-sung", "binaryconnect", "cluster")
    if projected:  # validate before loading anything
        from fxp.train.cluster import cluster_quantizer

        fixed = {"twn": 2, "binaryconnect": 1}.get(method)
        if fixed is not None and bits != fixed:
            raise PlanError(f"{method} weights have {fixed} bit{'s' if fixed > 1 else ''}; got "
                            f"--bits {bits}")
        if method == "hwang-sung" and not 2 <= bits <= 8:
            raise PlanError(f"hwang-sung bits must be in 2..8, got {bits}")
        if step_search not in ("network", "layer", None):
            raise PlanError(f"step_search must be 'network', 'layer' or None (L2 steps), got "
                            f"{step_search!r}")
        if method == "cluster":
            cluster_quantizer(cluster)
            if not 1 <= bits <= 16:
                raise PlanError(f"cluster bits must be in 1..16, got {bits}")
    graph = model if isinstance(model, Graph) else _wf.load_model(model)
    train = _wf.load_data(data, graph, limit=limit)
    ev = _wf.load_data(eval_data, graph, limit=eval_limit) if eval_data else train
    if epochs is None:
        epochs = 2 if method == "inq" else (10 if scratch else 3)
    if lr is None:
        lr = 2e-3 if scratch else 1e-4
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=threads,
                      dropout=dropout, shift=shift, steps_per_epoch=steps_per_epoch,
                      eval_each_epoch=eval_each_epoch, progress=progress)
    ident = {"model": str(model) if not isinstance(model, Graph) else graph.name, "data": data,
             "limit": limit, "lr": lr, "batch_size": batch_size,
             "calib": calib}
    common = dict(config=cfg, eval_x=ev.x, eval_y=ev.y, out_dir=out, identity=ident, log=log,
                  rounding=rounding, calib=calib)
    if method == "inq":
        res = train_inq(graph, train.x, train.y, bits=bits,
                        act_bits=8 if act_bits is None else act_bits, **common)
    elif projected:
        from fxp.train.cluster import train_cluster
        from fxp.train.ternary import train_binaryconnect, train_hwang_sung, train_twn

        fn = {"twn": train_twn, "hwang-sung": train_hwang_sung,
              "binaryconnect": train_binaryconnect, "cluster": train_cluster}[method]
        kw = {"algorithm": cluster} if method == "cluster" else \
            {"step_search": step_search} if method == "hwang-sung" else {}
        res = fn(graph, train.x, train.y, bits=bits, act_bits=8 if act_bits is None else act_bits,
                 scale_bits=scale_bits, **common, **kw)
    else:
        gran = {"qat": "whole", "qat-conv": "conv", "qat-dense": "dense"}[method]
        res = train_qat(graph, train.x, train.y, bits=bits, act_bits=act_bits, granularity=gran,
                        scratch=scratch, **common)
    tag = f"cluster-{cluster.replace(':', '-')}" if method == "cluster" else method
    name = f"{graph.name}-{tag}-w{bits}"
    opts = f" --cluster {cluster}" if method == "cluster" else ""
    meta = {"fxp.train.method": method if method != "cluster" else f"cluster {cluster}",
            "fxp.train.bits": bits, "fxp.train.seed": seed, "fxp.train.data": data,
            "fxp.eval.data": ev.name, "fxp.eval.accuracy": f"{res.eval_top1:.4f}",
            "fxp.train.command": f"fxp train {method} {ident['model']} --data {data} "
                                 f"--bits {bits} --epochs {epochs} --seed {seed}{opts}"}
    exp = export_trained(res.net, out, name, metadata=meta,
                         doc=f"{graph.name} retrained by fxp train {method} ({bits} bits)")
    summary = {"method": method, "model": ident["model"], "bits": bits, "seed": seed,
               **({"cluster": cluster} if method == "cluster" else {}),
               "epochs": epochs, "train_data": train.name, "eval_data": ev.name,
               "n_eval": int(len(ev.y)), "torch_fake_quant_top1": res.eval_top1,
               "onnx": str(exp.onnx_path), "plan": str(exp.plan_path),
               "history": res.history, **res.extra}
    if verify:
        summary["fxp_simulation"] = verify_export(exp, ev, res.eval_predictions)
    write_json(Path(out) / "train_result.json", summary)
    return summary


def _train_bnn(model, data: str, *, bits, out, epochs, seed, eval_data, limit, eval_limit, lr,
               batch_size, threads, log) -> dict:
    """``fxp train bnn``: :func:`fxp.train.bnn.train_bnn` sized from ``model``'s input and classes.

    ``model`` only gives the input shape ``[C, H, W]`` and the class count; the
    BNN is trained from scratch on the raw codes of ``data``.
    """
    from fxp import workflow as _wf
    from fxp.train.bnn import train_bnn
    from fxp.train.export import write_json

    if bits not in (None, 1):
        raise PlanError(f"bnn weights and activations have 1 bit; got --bits {bits}")
    graph = model if isinstance(model, Graph) else _wf.load_model(model)
    shape = graph.input_shapes[graph.inputs[0]][1:]
    if len(shape) != 3:
        raise PlanError(f"bnn needs an image model ([N, C, H, W] input); {graph.name!r} has "
                        f"input shape {list(shape)}")
    try:
        res = train_bnn(data, eval_data or data, out, shape=shape,
                        classes=_wf.num_classes(graph), epochs=1 if epochs is None else epochs,
                        seed=seed, lr=5e-3 if lr is None else lr, batch_size=batch_size,
                        limit=limit, eval_limit=eval_limit, threads=threads, log=log)
    except ValueError as e:
        raise PlanError(f"bnn on {graph.name!r}: {e}") from None
    res.update(model=str(model) if not isinstance(model, Graph) else graph.name, bits=1,
               torch_fake_quant_top1=res["torch_top1"])
    write_json(Path(out) / "train_result.json", res)
    return res
