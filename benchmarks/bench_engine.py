"""Images/s of fxp's integer engine next to onnxruntime int8 and float32, in one process.

Run: ``python benchmarks/bench_engine.py [model ...]`` (zoo names; default mnist_cnn vgg7).
For each model and batch size (1 and 256) it prints images/s of

* onnxruntime float32 (the zoo ONNX file),
* onnxruntime int8 (QOperator model from ``quantize_static``, per-channel),
* fxp: an int8-equivalent power-of-two plan (8-bit weights/activations, 32-bit wrap
  accumulators) -- the proven-exact float path where the bound allows it,
* fxp: a non-byte-width plan (5-bit weights, 7-bit activations, 20-bit saturating
  accumulators); the float path runs only where the bound proves that no partial
  sum can saturate, else the ordered integer loop,
* each fxp plan also with the ordered integer loop forced (``method="loop"``),

and each fxp figure's ratio to onnxruntime int8 (> 1: fxp is faster).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def _ort_int8(path: Path, calib: np.ndarray, out: Path) -> Path:
    """onnxruntime QOperator int8 model (per-channel weights) calibrated on ``calib``."""
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
    quantize_static(str(path), str(out), Reader(name), quant_format=QuantFormat.QOperator,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def main(models: list[str]) -> None:
    import onnxruntime as ort

    from fxp import workflow as fw
    from fxp.bench import rate
    from fxp.plan.ptq import ptq_pow2
    from fxp.sim.compile import compile_plan
    from fxp.sim.integer import run_integer
    from fxp.zoo import resolve_model

    print(f"{'model':<10}{'batch':>6}  {'engine':<44}{'images/s':>10}{'vs ort-int8':>12}")
    for name in models:
        graph = fw.load_model(name)
        data = fw.load_data("mnist5k", graph, limit=512)
        path = resolve_model(name)
        with tempfile.TemporaryDirectory() as tmp:
            q8 = _ort_int8(path, data.x[:64], Path(tmp) / "q8.onnx")
            so = ort.SessionOptions()
            sess_f = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            sess_q = ort.InferenceSession(str(q8), so, providers=["CPUExecutionProvider"])
            iname = sess_f.get_inputs()[0].name
            plan8 = ptq_pow2(graph, data.x[:256], weight_bits=8, act_bits=8, acc_bits=32)
            plan5 = ptq_pow2(graph, data.x[:256], weight_bits=5, act_bits=7, acc_bits=20,
                             acc_overflow="saturate")
            m8, m5 = compile_plan(graph, plan8), compile_plan(graph, plan5)
            for batch in (1, 256):
                xb = data.x[:batch]
                rows = [
                    ("onnxruntime float32", lambda: sess_f.run(None, {iname: xb})),
                    ("onnxruntime int8 (QOperator, per-channel)", lambda: sess_q.run(None, {iname: xb})),
                    ("fxp pow2 w8a8 acc32 wrap (auto path)", lambda: run_integer(m8, xb)),
                    ("fxp pow2 w8a8 acc32 wrap (ordered loop)",
                     lambda: run_integer(m8, xb, method="loop")),
                    ("fxp pow2 w5a7 acc20 saturate (auto path)", lambda: run_integer(m5, xb)),
                    ("fxp pow2 w5a7 acc20 saturate (ordered loop)",
                     lambda: run_integer(m5, xb, method="loop")),
                ]
                rates = {label: rate(fn, batch) for label, fn in rows}
                base = rates["onnxruntime int8 (QOperator, per-channel)"]
                for label, r in rates.items():
                    print(f"{name:<10}{batch:>6}  {label:<44}{r:>10.1f}{r / base:>12.3f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["mnist_cnn", "vgg7"])
