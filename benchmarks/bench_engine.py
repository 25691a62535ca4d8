"""Images/s of fxp's integer engine against onnxruntime int8, interleaved in one process.

Run: ``python benchmarks/bench_engine.py [--rounds 7] [model ...]`` (zoo names; default
mnist_cnn vgg7 resnet_small).  For each model and batch size (1 and 256) every engine
is timed once per round (the mean of 3 calls at batch 256 and of 20 at batch 1, after a
pause), the rounds interleaved (engine A, B, C, A, B, C, ...) so that load from other
processes hits all alike, and the median per engine is reported with its
ratio to onnxruntime's fast x86 int8 path (U8S8 QOperator: uint8 activations, int8
per-channel weights).  Rows:

* onnxruntime U8S8 QOperator (the baseline), U8S8 QDQ, S8S8 QOperator, float32;
* fxp w8a8 acc32: an int8-equivalent power-of-two plan (8-bit weights and activations,
  32-bit accumulators) on the default path (the proven path: the int8 VNNI GEMM on CPUs
  that have it, else float32 GEMMs where exact);
* fxp w5a7 acc20 saturate: 5-bit weights, 7-bit activations, 20-bit saturating
  accumulators (the proven path where the bound proves no saturation, else the loop);
* both plans with the ordered integer loop forced (``method="loop"``);
* at batch 256, also onnxruntime U8S8 QOperator and fxp w8a8 on one thread each
  (``intra_op_num_threads=1``; serial kernels, no batch split), 128 images, their ratio
  to that onnxruntime row: the engines' own speed, apart from how two threads scale on
  the machine.

``--memory`` also streams a 10,000-image evaluation of resnet_small through
``fxp.workflow.run_simulation`` and prints the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _ort_int8(path: Path, calib: np.ndarray, out: Path, fmt: str, act: str) -> Path:
    """An onnxruntime int8 model (per-channel weights) calibrated on ``calib``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.it = iter([{name: calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    name = onnx.load(str(path)).graph.input[0].name
    quantize_static(str(path), str(out), Reader(name),
                    quant_format=QuantFormat.QOperator if fmt == "qop" else QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8 if act == "u8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    return out


SETTLE_S = 0.2
"""Untimed pause before each engine's timing: the previous engine's worker threads
(onnxruntime's intra-op pool spins after each run) go idle first instead of sharing the
2 cores with the engine being timed."""


def _interleaved(fns: dict, rounds: int, batch: int) -> dict[str, float]:
    """Median images/s per engine over ``rounds`` interleaved timings (after a warm-up)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    reps = 3 if batch > 1 else 20  # after the pause: throughput, not one cold call
    for _ in range(rounds):
        for label, fn in fns.items():
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            times[label].append((time.perf_counter() - t0) / reps)
    return {k: batch / statistics.median(v) for k, v in times.items()}


def bench(name: str, rounds: int, loop_rounds: int) -> None:
    import onnxruntime as ort

    from fxp import workflow as fw
    from fxp.plan.ptq import ptq_pow2
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer
    from fxp.zoo import resolve_model

    graph = fw.load_model(name)
    data = fw.load_data("mnist5k", graph, limit=512)
    path = resolve_model(name)
    so = ort.SessionOptions()
    with tempfile.TemporaryDirectory() as tmp:
        sess = {"onnxruntime float32": ort.InferenceSession(str(path), so)}
        for label, fmt, act in (("onnxruntime int8 U8S8 QOperator", "qop", "u8"),
                                ("onnxruntime int8 U8S8 QDQ", "qdq", "u8"),
                                ("onnxruntime int8 S8S8 QOperator", "qop", "s8")):
            q = _ort_int8(path, data.x[:64], Path(tmp) / f"{fmt}{act}.onnx", fmt, act)
            sess[label] = ort.InferenceSession(str(q), so)
            if label == "onnxruntime int8 U8S8 QOperator":
                so1 = ort.SessionOptions()
                so1.intra_op_num_threads = 1
                sess1 = ort.InferenceSession(str(q), so1)
        iname = sess["onnxruntime float32"].get_inputs()[0].name
        plan8 = ptq_pow2(graph, data.x[:256], weight_bits=8, act_bits=8, acc_bits=32)
        plan5 = ptq_pow2(graph, data.x[:256], weight_bits=5, act_bits=7, acc_bits=20,
                         acc_overflow="saturate")
        m8, m5 = compile_plan(graph, plan8), compile_plan(graph, plan5)
        for batch in (256, 1):
            xb = np.ascontiguousarray(data.x[:batch])
            fns = {label: (lambda s=s: s.run(None, {iname: xb})) for label, s in sess.items()}
            fns["fxp w8a8 acc32 wrap (default path)"] = lambda: run_integer(m8, xb)
            fns["fxp w5a7 acc20 saturate (default path)"] = lambda: run_integer(m5, xb)
            rates = _interleaved(fns, rounds, batch)
            loops = {"fxp w8a8 acc32 wrap (ordered loop)":
                     lambda: run_integer(m8, xb[:min(batch, 32)], method="loop"),
                     "fxp w5a7 acc20 saturate (ordered loop)":
                     lambda: run_integer(m5, xb[:min(batch, 32)], method="loop")}
            rates.update(_interleaved(loops, loop_rounds, min(batch, 32)))
            base = rates["onnxruntime int8 U8S8 QOperator"]
            for label, r in rates.items():
                print(f"{name:<13}{batch:>6}  {label:<42}{r:>11.1f}{r / base:>10.3f}", flush=True)
            if batch > 1:  # one thread each: the engines' own speed, without the VM's scaling
                one = _interleaved({"onnxruntime U8S8 QOperator, 1 thread":
                                    lambda: sess1.run(None, {iname: xb[:128]}),
                                    "fxp w8a8 acc32, 1 thread": lambda: _one_thread(m8, xb[:128])},
                                   rounds, 128)
                base1 = one["onnxruntime U8S8 QOperator, 1 thread"]
                for label, r in one.items():
                    print(f"{name:<13}{128:>6}  {label:<42}{r:>11.1f}{r / base1:>10.3f}",
                          flush=True)


def _one_thread(model, x):
    """fxp on the calling thread alone: serial kernels, no batch split."""
    from fxp.kernels._jit import serial_kernels
    from fxp.sim.integer import _run_batch

    with serial_kernels():
        return _run_batch(model, x, {}, "auto")


def memory(n: int = 10_000) -> None:
    """Peak RSS of a streamed ``n``-image evaluation of resnet_small (batches of 256)."""
    import resource

    from fxp import workflow as fw
    from fxp.plan.ptq import ptq_pow2

    graph = fw.load_model("resnet_small")
    real = fw.load_data("mnist5k", graph)
    reps = -(-n // len(real.x))
    data = fw.Data(np.concatenate([real.x] * reps)[:n], np.concatenate([real.y] * reps)[:n],
                   f"mnist5k repeated to {n}")
    plan = ptq_pow2(graph, real.x[:256], weight_bits=8, act_bits=8, acc_bits=32)
    t0 = time.perf_counter()
    rep = fw.run_simulation(graph, plan, data, batch_size=256, progress=False)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"resnet_small: {n:,} images in {dt:.1f} s, top-1 {rep.fixed_top1:.4f}, "
          f"peak RSS {peak:,.0f} MiB (the data itself: {data.x.nbytes / 2**20:,.0f} MiB)")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["mnist_cnn", "vgg7", "resnet_small"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--loop-rounds", type=int, default=3)
    ap.add_argument("--memory", action="store_true")
    args = ap.parse_args(argv)
    print(f"{'model':<13}{'batch':>6}  {'engine':<42}{'images/s':>11}{'vs U8S8':>10}")
    for name in args.models:
        bench(name, args.rounds, args.loop_rounds)
    if args.memory:
        memory()


if __name__ == "__main__":
    main(sys.argv[1:])
