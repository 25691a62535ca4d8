"""In-process throughput measurement behind ``fxp bench``.

Numbers are ratios against a baseline run in the same process (machines are
noisy): the float reference is the baseline; onnxruntime float32 is added when
onnxruntime is installed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["bench_model", "rate"]


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Shortest wall time (s) of ``repeat`` calls of ``fn`` (the least disturbed run)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def rate(fn: Callable[[], object], n_items: int, min_time: float = 1.0) -> float:
    """Items per second of ``fn`` (which processes ``n_items``), after one warm-up call."""
    fn()
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return reps * n_items / dt


def bench_model(graph, plan, x: np.ndarray, *, onnx_path=None, min_time: float = 1.0) -> list[dict]:
    """Images/s of the float reference, the integer engine (auto and loop) and onnxruntime."""
    from fxp.sim.compile import compile_plan
    from fxp.sim.float_ref import run_float
    from fxp.sim.integer import run_integer

    model = compile_plan(graph, plan)
    n = x.shape[0]
    rows = [("fxp float reference (numpy)", lambda: run_float(graph, x)),
            ("fxp integer engine (proven float path where exact)", lambda: run_integer(model, x)),
            ("fxp integer engine (ordered integer loop)",
             lambda: run_integer(model, x, method="loop"))]
    if onnx_path is not None:
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - onnxruntime is in the test extra
            ort = None
        if ort is not None:
            sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            rows.append(("onnxruntime float32", lambda: sess.run(None, {name: x})))
    out = [{"engine": label, "images_per_s": rate(fn, n, min_time)} for label, fn in rows]
    base = out[0]["images_per_s"]
    for r in out:
        r["vs_float_reference"] = r["images_per_s"] / base
    return out
