"""Same inputs, same integers: every engine path, any thread count, any batch split (issue 22).

Each case is a real model and plan from one of fxp's flows (power-of-two PTQ on
the fast float32 path and on the ordered loop, saturating narrow accumulators,
hls4ml's accumulation order and rounded products, shift-add weights, TFLite int8 /
int16x8 / mixed int8-int16x8 under each runtime profile, onnxruntime QDQ and
QOperator, XNOR-popcount).  Every tensor the engine keeps is compared between
one numba thread with batches of 1 and all threads (2 here) with the whole batch
at once: a difference would be a data race, an order that depends on the
chunking, or a dispatch that changes the arithmetic with the batch size.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest

from fxp import workflow as fw
from fxp.sim.compile import compile_plan
from fxp.sim.integer import IntValue, run_integer

ROOT = Path(__file__).resolve().parents[2]
N = 40  # above the engine's batch thresholds (16: BLAS threads, the loop's batch minimum)


def _digits(graph, n: int = N) -> np.ndarray:
    return fw.load_data("mnist5k", graph, limit=n).x


def _pow2(name: str, **kw):
    from fxp.plan.ptq import ptq_pow2

    graph = fw.load_model(name)
    x = _digits(graph)
    return graph, ptq_pow2(graph, x[:32], **kw), x


def _tflite(name: str, runtime: str = "tflm", wide=()):
    pytest.importorskip("tflite")
    graph = fw.load_model(str(ROOT / "models" / "tflite" / f"{name}.tflite"), runtime=runtime)
    plan = fw.embedded_plan(graph)
    if wide:
        from fxp.plan.tflite_int16 import widen_plan

        plan = widen_plan(graph, plan, wide)
    x = (np.asarray(__import__("fxp.data", fromlist=["load_dataset"]).load_dataset(
        "mnist5k", limit=N).x, np.float64) / 255.0 - 0.1307) / 0.3081
    return graph, plan, x.astype(np.float32)


def _hls4ml_order():
    graph, plan, x = _pow2("mnist_cnn", weight_bits=6, act_bits=8, acc_bits=18)
    for lp in plan.layers:
        if lp.weight is not None:
            plan = plan.replace_layer(lp.name, acc_order="hls4ml", acc_overflow="saturate",
                                      acc_frac_bits=lp.weight.fmt.frac_bits + 3,
                                      acc_rounding="half_even")
    return graph, plan, x


def _ort(fmt: str):
    pytest.importorskip("onnxruntime")
    from tests.ort_quant import quantize

    graph = fw.load_model("mnist_cnn")
    x = _digits(graph)
    q = quantize(ROOT / "models" / "mnist_cnn" / "mnist_cnn.onnx", x[:16], fmt=fmt,
                 per_channel=True, op_types=["Conv", "Gemm", "MatMul", "MaxPool", "Relu"])
    from fxp.frontends.onnx_quantized import load_quantized

    g, p = load_quantized(q)
    return g, p, x


def _shift_add():
    """lenet5 with every weight rounded to +-2**k, planned with shift-add weights."""
    from fxp.ir.nodes import Conv2D, Dense
    from fxp.plan.ptq import ptq_pow2

    graph = fw.load_model("lenet5")
    nodes = []
    for n in graph.nodes:
        if isinstance(n, (Conv2D, Dense)):
            k = np.clip(np.round(np.log2(np.abs(n.weight) + 1e-12)), -6, -1)
            n = type(n)(**{**n.__dict__, "weight": (np.sign(n.weight) * 2.0 ** k)
                           .astype(np.float32)})
        nodes.append(n)
    graph = graph.with_nodes(nodes)
    x = _digits(graph)
    return graph, ptq_pow2(graph, x[:32], weight_bits=8, act_bits=8,
                           acc_bits=24).with_shift_weights(), x


def _qonnx(binary: bool):
    pytest.importorskip("qonnx")
    from fxp.frontends.qonnx import load_qonnx
    from tests.frontends.test_qonnx_import import _cnn, _Net

    rng = np.random.default_rng(7)
    if not binary:
        model, _ = _cnn(3, 4, 4, per_channel=True, signed_act=0, narrow=0, mode="ROUND")
        graph, plan = load_qonnx(model)
        return graph, plan, rng.normal(0, 1, (N, 2, 6, 6)).astype(np.float32)
    n = _Net(6)  # BipolarQuant activations and weights: XNOR-popcount layers
    x = n.bipolar("x", "xb", 1.0)
    w1 = n.bipolar(n.const("W1", n.rng.normal(0, 1, (6, 2, 3, 3))), "W1b", 2.0 ** -1)
    c1 = n.op("Conv", [x, w1, n.const("B1", n.rng.integers(-4, 4, 6) * 0.5)], "c1",
              pads=[1, 1, 1, 1])
    f = n.op("Flatten", [n.op("MaxPool", [n.bipolar(c1, "c1b", 0.5)], "p", kernel_shape=[2, 2],
                              strides=[2, 2])], "f")
    w2 = n.bipolar(n.const("W2", n.rng.normal(0, 1, (4, 24))), "W2b", 2.0 ** -1)
    y = n.quant(n.op("Gemm", [f, w2], "y", transB=1), "yq", 2.0 ** -2, 8, mode="FLOOR")
    graph, plan = load_qonnx(n.model([2, 4, 4], y, [4]))
    assert any(lp.is_binary for lp in plan.layers)
    return graph, plan, rng.normal(0, 1, (N, 2, 4, 4)).astype(np.float32)


CASES = {
    "pow2 w8a8 fast path": lambda: _pow2("mnist_cnn", weight_bits=8, act_bits=8, acc_bits=32),
    "pow2 w5a7 acc20 saturating": lambda: _pow2("mnist_cnn", weight_bits=5, act_bits=7,
                                                acc_bits=20, acc_overflow="saturate"),
    "pow2 residual narrow channels": lambda: _pow2("resnet_small", weight_bits=8, act_bits=8,
                                                   acc_bits=32),
    "hls4ml order, rounded products": _hls4ml_order,
    "shift-add weights": _shift_add,
    "tflite int8 tflm": lambda: _tflite("residual_mean_int8"),
    "tflite int16x8 tflm": lambda: _tflite("residual_mean_int16x8"),
    "tflite activations int8": lambda: _tflite("activations_int8"),
    "tflite mixed int8/int16x8": lambda: _tflite("dw_avgpool_int8", wide=["op3_depthwise_conv_2d"]),
    "tflite litert-opt": lambda: _tflite("mnist_cnn_int8", "litert-opt"),
    "tflite xnnpack": lambda: _tflite("mnist_cnn_int8", "xnnpack"),
    "tflite cmsis-nn": lambda: _tflite("mnist_cnn_int8", "cmsis-nn"),
    "onnxruntime QDQ": lambda: _ort("QDQ"),
    "onnxruntime QOperator": lambda: _ort("QOperator"),
    "qonnx 4-bit per-channel": lambda: _qonnx(False),
    "qonnx xnor-popcount": lambda: _qonnx(True),
}


def _codes(graph, plan, x, *, threads: int, batch: int) -> dict[str, np.ndarray]:
    model = compile_plan(graph, plan)
    saved = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        parts: dict[str, list] = {}
        for s in range(0, len(x), batch):
            run = run_integer(model, x[s:s + batch], keep=True)
            for name, v in run.values.items():
                if isinstance(v, IntValue):
                    parts.setdefault(name, []).append(np.asarray(v.codes, np.int64))
        return {k: np.concatenate(v) for k, v in parts.items()}
    finally:
        numba.set_num_threads(saved)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_integers_for_any_threads_and_batch(case: str) -> None:
    graph, plan, x = CASES[case]()
    one = _codes(graph, plan, x, threads=1, batch=1)
    many = _codes(graph, plan, x, threads=numba.config.NUMBA_NUM_THREADS, batch=len(x))
    assert one.keys() == many.keys() and len(one) >= 3
    diff = {k: int(np.count_nonzero(one[k] != many[k])) for k in one}
    assert diff == dict.fromkeys(diff, 0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_batch_split_gives_the_unsplit_integers_and_counters(case: str, monkeypatch) -> None:
    """The batch split (:mod:`fxp.sim.threads`, taken under numba's workqueue layer; forced
    here whatever the layer) gives the outputs and the integer counters of the run on one
    thread, one image at a time."""
    import fxp.kernels._jit as jit
    from fxp.sim.threads import workers_for

    if numba.get_num_threads() < 2:
        pytest.skip("one numba thread: nothing to split over")
    graph, plan, x = CASES[case]()
    model = compile_plan(graph, plan)
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        c_one: dict = {}
        one = np.concatenate([run_integer(model, x[i:i + 1], c_one).output
                              for i in range(len(x))])
    finally:
        numba.set_num_threads(saved)
    monkeypatch.setattr(jit, "LAYER", "workqueue")
    assert workers_for(len(x)) == min(numba.get_num_threads(), len(x) // 8) > 1
    c_split: dict = {}
    split = run_integer(model, x, c_split).output
    assert np.array_equal(one, split)
    for name, c in c_one.items():
        s = c_split[name]
        assert (c.acc_overflows, c.output_saturations) == (s.acc_overflows,
                                                           s.output_saturations), name
