"""hls4ml's compiled C simulation computes fxp's integers (issue 15).

A small CNN (conv, ReLU, max pool, flatten, dense, softmax) built with torch
is converted by hls4ml's PyTorch frontend under fxp's types
(:func:`fxp.export.hls4ml.hls4ml_project`: hls4ml's own config, patched), the
C simulation is compiled with g++ (``io_parallel``, no Vivado) and traced, and
every traced tensor that has an fxp counterpart -- the ReLU output, the
pooled tensor and the logits -- is compared with fxp's integer engine, for
three plans: uniform 8-bit PTQ, a mixed plan from the bit optimizer at 30 dB,
and a 16-bit saturating accumulator run in hls4ml's accumulation order.  The
final softmax (hls4ml's lookup tables) is not modelled by fxp yet and is not
compared.  Before the fix 302 of 2,000 logits matched for an 8-bit plan.
Skips without torch, hls4ml or g++.
"""

from __future__ import annotations

import shutil

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
from fxp.plan.ptq import ptq_pow2  # noqa: E402
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
    return {"uniform": uniform, "mixed": mixed, "sat": sat}


def test_hls4ml_csim_equals_fxp_engine(cnn, tmp_path):
    net, graph, x = cnn
    report = {}
    for key, plan in _plans(graph, x).items():
        model = compile_plan(graph, plan)
        counters = {}
        run = run_integer(model, x, counters, keep=True, method="loop")
        if key == "sat":  # the accumulator does saturate: the order matters here
            assert sum(c.acc_overflows for c in counters.values()) > 0
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
        assert compared == ["relu1", "pool1", "fc1"], compared
        assert differ == 0, f"plan {key}: {differ} of {total} values differ"
    assert all(t == 200 * (4 * 8 * 8 + 4 * 4 * 4 + 5) for _, t in report.values()), report
