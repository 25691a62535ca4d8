"""Threading A/B: fxp at batch 256 on numba's OpenMP and workqueue layers, batch split or whole.

Run: ``python benchmarks/bench_threading.py [--repeats 3] [model ...]`` (default mnist_cnn
vgg7 resnet_small).  The threading layer is fixed when numba first launches a parallel
kernel, so each configuration runs in its own process, the configurations interleaved
(split/workqueue, whole/OpenMP, whole/workqueue, split/OpenMP, then again): load from other
jobs hits all alike.  Each process times onnxruntime's U8S8 QOperator and fxp's w8a8 plan
as ``bench_engine.py`` does (a 0.2 s pause, 3 calls, 9 interleaved rounds, medians) and
prints fxp's images/s over onnxruntime's.  "split" is the batch split of
:mod:`fxp.sim.threads` (serial kernels on sub-batches), "whole" the parallel kernels on the
whole batch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIGS = [("split", "workqueue"), ("whole", "omp"), ("whole", "workqueue"), ("split", "omp")]


def one(name: str, mode: str, batch: int = 256, rounds: int = 9) -> None:
    import numba
    import onnxruntime as ort
    from bench_engine import _ort_int8

    import fxp.sim.threads as threads
    from fxp import workflow as fw
    from fxp.plan.ptq import ptq_pow2
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer
    from fxp.zoo import resolve_model

    if mode == "whole":
        threads.workers_for = lambda n: 1
    else:  # the split whatever the layer
        threads.workers_for = lambda n: max(1, min(numba.get_num_threads(), n // 8))
    g = fw.load_model(name)
    d = fw.load_data("mnist5k", g, limit=512)
    with tempfile.TemporaryDirectory() as tmp:
        q = _ort_int8(resolve_model(name), d.x[:64], Path(tmp) / "q.onnx", "qop", "u8")
        s = ort.InferenceSession(str(q), ort.SessionOptions())
    iname = s.get_inputs()[0].name
    m8 = compile_plan(g, ptq_pow2(g, d.x[:256], weight_bits=8, act_bits=8, acc_bits=32))
    xb = np.ascontiguousarray(d.x[:batch])
    fns = {"ort": lambda: s.run(None, {iname: xb}), "fxp": lambda: run_integer(m8, xb)}
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            time.sleep(0.2)
            t0 = time.perf_counter()
            for _ in range(3):
                f()
            times[k].append((time.perf_counter() - t0) / 3)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name:<13}{mode:>6} {numba.config.THREADING_LAYER:>10}  onnxruntime "
          f"{batch / med['ort']:>8.0f}/s  fxp {batch / med['fxp']:>8.0f}/s  ratio "
          f"{med['ort'] / med['fxp']:.3f}", flush=True)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["mnist_cnn", "vgg7", "resnet_small"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        sys.path.insert(0, str(Path(__file__).parent))
        one(*a.one)
        return
    print(f"{'model':<13}{'mode':>6} {'layer':>10}")
    for _ in range(a.repeats):
        for name in a.models:
            for mode, layer in CONFIGS:
                env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
                out = subprocess.run([sys.executable, __file__, "--one", name, mode], env=env,
                                     capture_output=True, text=True)
                lines = [ln for ln in out.stdout.splitlines() if "ratio" in ln]
                print(lines[-1] if lines else f"{name} {mode} {layer}: failed\n{out.stderr}",
                      flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
