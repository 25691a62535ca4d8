"""hls4ml's compiled C simulation computes fxp's integers (issue 15).

A small CNN (conv, ReLU, max pool, flatten, dense, softmax) built with torch
is converted by hls4ml's PyTorch frontend under fxp's types
(:func:`fxp.export.hls4ml.hls4ml_project`: hls4ml's own config, patched), the
C simulation is compiled with g++ (``io_parallel``, no Vivado) and traced, and
every traced tensor that has an fxp counterpart -- the ReLU output, the
pooled tensor and the logits -- is compared with fxp's integer engine, for
three plans: uniform 8-bit PTQ, a mixed plan from the bit optimizer at 30 dB,
and a 16-bit saturating accumulator run in hls4ml's accumulation order.  The
final softmax runs in hls4ml's table arithmetic in every plan
(``LayerPlan.softmax``: the stable default tables, narrow saturating tables,
the latency strategy) and its output is compared too.  Before the fix 302 of
2,000 logits matched for an 8-bit plan.
Skips without torch, hls4ml or g++.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("hls4ml")
if shutil.which("g++") is None:
    pytest.skip("needs g++ for hls4ml's C simulation", allow_module_level=True)

from fxp import workflow as fw  # noqa: E402
from fxp.export.hls4ml import hls4ml_project  # noqa: E402
from fxp.export.hls4ml_types import hls4ml_slots  # noqa: E402
from fxp.frontends.onnx_import import load_onnx  # noqa: E402
from fxp.ir.passes import canonicalize  # noqa: E402
from fxp.core.format import QFormat  # noqa: E402
from fxp.ir.nodes import Softmax  # noqa: E402
from fxp.plan.plan import LayerPlan, TensorSpec  # noqa: E402
from fxp.plan.ptq import ptq_pow2  # noqa: E402
from fxp.plan.softmax import SoftmaxTable  # noqa: E402
from fxp.sim.compile import compile_plan  # noqa: E402
from fxp.sim.integer import run_integer  # noqa: E402
from fxp.sim.values import to_float  # noqa: E402


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.pool1 = torch.nn.MaxPool2d(2)
        self.flat = torch.nn.Flatten()
        self.fc1 = torch.nn.Linear(4 * 4 * 4, 5)
        self.sm = torch.nn.Softmax(dim=1)

    def forward(self, x):
        return self.sm(self.fc1(self.flat(self.pool1(self.relu1(self.conv1(x))))))


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(0)
    net = SmallCNN().eval()
    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    torch.onnx.export(net, (torch.zeros(1, 2, 8, 8),), str(path), dynamo=False,
                      input_names=["x"])
    graph = canonicalize(load_onnx(path))
    x = np.random.default_rng(0).normal(size=(200, 2, 8, 8)).astype(np.float32)
    return net, graph, x


def _plans(graph, x):
    uniform = ptq_pow2(graph, x, name="uniform-8")
    mixed = fw.optimize_plan(graph, fw.Data(x, np.zeros(len(x), int), "random"), 30.0).plan
    sat = ptq_pow2(graph, x, acc_bits=16, acc_overflow="saturate", name="sat-acc16")
    for lp in sat.layers:
        if lp.weight is not None:
            sat = sat.replace_layer(lp.name, acc_order="hls4ml")
    sm = next(n.name for n in graph.nodes if isinstance(n, Softmax))
    tables = {  # default stable tables; narrow saturating ones; the latency strategy
        "uniform": (SoftmaxTable(), QFormat(16, 1, False), "floor", "wrap"),
        "mixed": (SoftmaxTable(table_size=256, exp_table_t="ap_ufixed<10,1,AP_RND,AP_SAT>",
                               inv_table_t="ap_ufixed<12,4,AP_RND_CONV,AP_SAT>",
                               inv_inp_t="ap_ufixed<10,3,AP_TRN,AP_SAT>",
                               accum_t="ap_ufixed<11,3,AP_RND,AP_SAT>"),
                  QFormat(10, 2), "half_up", "saturate"),
        "sat": (SoftmaxTable(strategy="latency", table_size=512), QFormat(18, 2), "half_even",
                "saturate"),
    }
    out = {}
    for key, plan in {"uniform": uniform, "mixed": mixed, "sat": sat}.items():
        sp, fmt, rnd, ovf = tables[key]
        lp = LayerPlan(sm, output=TensorSpec(fmt), rounding=rnd, output_overflow=ovf, softmax=sp)
        out[key] = plan.__class__(plan.input, (*plan.layers, lp), plan.name)
    # the saturating plan also converts its input as an ap_fixed<W,I> without modes would
    # (truncate, wrap): the exporter writes those modes into the input type
    out["sat"] = replace(out["sat"], input_rounding="floor", input_overflow="wrap")
    return out


def test_hls4ml_csim_equals_fxp_engine(cnn, tmp_path):
    net, graph, x = cnn
    report = {}
    for key, plan in _plans(graph, x).items():
        model = compile_plan(graph, plan)
        counters = {}
        run = run_integer(model, x, counters, keep=True, method="loop")
        if key == "sat":  # the accumulator does saturate: the order matters here
            assert sum(c.acc_overflows for c in counters.values()) > 0
            # and truncating/wrapping the input changes input codes (the test can fail)
            rounded = run_integer(compile_plan(graph, replace(plan, input_rounding="half_even",
                                                              input_overflow="saturate")),
                                  x, keep=True)
            assert np.count_nonzero(rounded.values[graph.inputs[0]].codes
                                    != run.values[graph.inputs[0]].codes) > 1000
        hm = hls4ml_project(graph, plan, net, tmp_path / key, compile=True, trace=True)
        _, trace = hm.trace(np.ascontiguousarray(x))
        names = list(hm.config.config["HLSConfig"]["LayerName"])
        slots = hls4ml_slots(model)
        assert len(names) == len(slots)
        total = differ = 0
        compared = []
        for name, slot in zip(names, slots, strict=True):
            if slot.tensor is None or name not in trace:
                continue
            ref = to_float(run.values[slot.tensor])
            if ref.ndim == 4:
                ref = ref.transpose(0, 2, 3, 1)  # hls4ml is channels-last
            got = np.asarray(trace[name]).reshape(ref.shape)
            total += ref.size
            differ += int(np.count_nonzero(got != ref))
            compared.append(name)
        report[key] = (differ, total)
        assert compared == ["relu1", "pool1", "fc1", "sm"], compared
        probs = to_float(run.values[graph.outputs[0]])
        assert np.array_equal(np.asarray(hm.predict(np.ascontiguousarray(x))).reshape(
            probs.shape), probs), f"plan {key}: softmax output differs from predict"
        assert differ == 0, f"plan {key}: {differ} of {total} values differ"
    assert all(t == 200 * (4 * 8 * 8 + 4 * 4 * 4 + 5 + 5) for _, t in report.values()), report
