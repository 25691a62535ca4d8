"""Run one mutated model through fxp as a user would; classify what happened.

Outcomes: ``"ok"`` (ran, every reported number finite), ``"fxp"`` (an
:class:`~fxp.errors.FxpError`), ``"silent"`` (ran but produced NaN/Inf or
accepted non-finite weights), ``"crash"`` (any other exception: a bug).
"""

from __future__ import annotations

import math
import traceback
import warnings
from pathlib import Path

import numpy as np

from fxp.errors import FxpError

N_SAMPLES = 4
MAX_RUN_ELEMENTS = 1 << 16
"""Inputs larger than this per sample are only loaded and inspected: a declared
shape the limits accept (a legal, huge model) is not a bug, only slow to run."""


def _finite_rows(rows: list[dict]) -> bool:
    for row in rows:
        for v in row.values():
            if isinstance(v, float) and not math.isfinite(v):
                return False
    return True


def run_model(path: Path) -> tuple[str, str]:
    """``(outcome, detail)`` of inspect + plan + simulate on ``path``."""
    from fxp import workflow as fw

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fxp's warnings (e.g. a lowered batch) are fine
            return _run_model(fw, path)
    except Exception as exc:  # noqa: BLE001 - the point of the harness
        return _classify(exc)


def _run_model(fw, path: Path) -> tuple[str, str]:
    graph = fw.load_model(str(path))
    rows = fw.inspect_model(graph)
    if not _finite_rows(rows):
        return "silent", "inspect printed a non-finite statistic"
    shape = graph.input_shapes[graph.inputs[0]][1:]
    if math.prod(shape) > MAX_RUN_ELEMENTS:
        return "ok", "loaded and inspected (input too large to run here)"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_SAMPLES, *shape)).astype(np.float32)
    n_cls = fw.num_classes(graph)
    data = fw.Data(x, rng.integers(0, n_cls, N_SAMPLES), "fuzz")
    plan = fw.embedded_plan(graph) or fw.make_plan(graph, data, calib=N_SAMPLES)
    rep = fw.run_simulation(graph, plan, data, batch_size=N_SAMPLES)
    d = rep.to_dict()
    if not (math.isfinite(d["fixed_top1"]) and math.isfinite(d["float_top1"])):
        return "silent", "non-finite accuracy"
    return "ok", ""


def _classify(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, FxpError):
        msg = str(exc)
        if "\n" in msg.strip():
            return "crash", f"multi-line FxpError: {msg[:200]!r}"
        return "fxp", f"{type(exc).__name__}: {msg[:160]}"
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(tb)
                  if "/fxp/" in f.filename), "?")
    return "crash", f"{type(exc).__name__} at {where}: {str(exc)[:160]}"


def run_plan(graph, path: Path, x: np.ndarray, y: np.ndarray) -> tuple[str, str]:
    """``(outcome, detail)`` of loading the plan file ``path`` and simulating it on ``x``."""
    from fxp import workflow as fw
    from fxp.plan.io import load_plan

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = load_plan(path)
            rep = fw.run_simulation(graph, plan, fw.Data(x, y, "fuzz"), batch_size=len(x))
        d = rep.to_dict()
        if not (math.isfinite(d["fixed_top1"]) and math.isfinite(d["float_top1"])):
            return "silent", "non-finite accuracy"
        return "ok", ""
    except Exception as exc:  # noqa: BLE001 - the point of the harness
        return _classify(exc)


def run_data(graph, spec: str) -> tuple[str, str]:
    """``(outcome, detail)`` of loading the data ``spec`` for ``graph`` (finite or refused)."""
    from fxp import workflow as fw

    try:
        data = fw.load_data(spec, graph)
        if not np.all(np.isfinite(data.x)):
            return "silent", "non-finite samples accepted"
        return "ok", ""
    except Exception as exc:  # noqa: BLE001 - the point of the harness
        return _classify(exc)
