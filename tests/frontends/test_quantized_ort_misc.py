"""misc_small (Concat with different scales, SE gate Sigmoid -> Mul, LeakyRelu) equals
onnxruntime on every intermediate tensor in every configuration of ``CONFIGS`` (issue 14).

``models/misc_small/misc_small.onnx`` (random weights, ``models/misc_small/build.py``)
is quantized by onnxruntime in each configuration of
:data:`tests.ort_quant.CONFIGS`, imported by :func:`load_quantized`, run by fxp's
integer engine and compared with every integer tensor of onnxruntime's default
session (:func:`tests.frontends.test_quantized_ort.compare`): 0 differing
elements, every onnxruntime tensor mapped, logits bit-identical.  A second test
checks with :func:`tests.ort_quant.op_inventory` that the ops under test really
are integer ops in onnxruntime's optimized graph (QLinearConcat, QLinearSigmoid,
QLinearLeakyRelu, QLinearMul) in both formats, and that the Concat inputs have
different scales.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.ort_quant import CONFIGS, op_inventory, probe, quantize

pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")

from tests.frontends.test_quantized_ort import compare

PATH = ROOT / "models" / "misc_small" / "misc_small.onnx"
N_IMAGES, N_CALIB = 4, 32
OPS = ("QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearMul")


@pytest.fixture(scope="module")
def data():
    if not PATH.is_file():
        pytest.skip(f"{PATH} absent (python models/misc_small/build.py)")
    rng = np.random.default_rng(14)
    calib = rng.standard_normal((N_CALIB, 1, 28, 28)).astype(np.float32)
    x = rng.standard_normal((N_IMAGES, 1, 28, 28)).astype(np.float32)
    return calib, x


@pytest.fixture(scope="module")
def quantized(data):
    calib, _ = data
    return {c.id: quantize(PATH, calib, **c.kwargs()) for c in CONFIGS}


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.id)
def test_every_tensor_equals_onnxruntime(cfg, data, quantized):
    _, x = data
    bad, total, unmapped, n = compare(quantized[cfg.id], x)
    assert not unmapped, f"misc_small {cfg.id}: ORT integer tensors without an fxp tensor: " \
                         f"{unmapped}"
    assert total > 5_000, total
    assert not bad, f"misc_small {cfg.id}: differing elements per tensor {bad} (of {total} " \
                    f"in {n} tensors)"


@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
def test_ops_are_integer_in_onnxruntime(fmt, data, quantized):
    """QOperator files hold the four QLinear ops; QDQ files hold the float ops wrapped in
    DQ/Q, which both onnxruntime's optimizer and fxp's :func:`fold_qdq` fuse into them."""
    from fxp.frontends.onnx_qdq import fold_qdq

    cfg = next(c for c in CONFIGS if c.fmt == fmt)
    qb = quantized[cfg.id]
    m = onnx.load_from_string(qb)
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    _, ops_plain, _ = probe(qb, data[1][:1], [])
    folded, n_folded = fold_qdq(onnx, m, dict(consts))
    file_ops, fxp_ops = op_inventory(qb), op_inventory(folded.SerializeToString())
    for op in OPS:
        assert ops_plain[f"com.microsoft:{op}"] >= 1, f"{fmt}: ORT runs no {op}: {ops_plain}"
        assert fxp_ops[f"com.microsoft:{op}"] == ops_plain[f"com.microsoft:{op}"], (op, fxp_ops)
        float_op = op.removeprefix("QLinear")
        if fmt == "QOperator":
            assert file_ops[f"com.microsoft:{op}"] >= 1 and not file_ops[f"ai.onnx:{float_op}"]
        else:
            assert file_ops[f"ai.onnx:{float_op}"] >= 1 and not file_ops[f"com.microsoft:{op}"]
    assert (n_folded > 0) == (fmt == "QDQ")
    # the two Concat inputs have different scales (QLinearConcat rescales one of them)
    concat = [n for n in folded.graph.node if n.op_type == "QLinearConcat"]
    assert len(concat) == 1
    scales = [float(consts[t]) for t in concat[0].input[3::3]]
    assert len(scales) == 2 and scales[0] != scales[1], scales


def test_float_import_and_own_plans(data):
    """The float ONNX import (Mul handler, float_ref) equals onnxruntime in float, and fxp's
    own PTQ plans give the SE-gate Mul an entry and track float under every scheme."""
    import onnxruntime as ort

    from fxp import load_onnx
    from fxp.ir.nodes import Mul
    from fxp.ir.passes import canonicalize
    from fxp.plan.plan import RequantScheme
    from fxp.plan.ptq import ptq_affine, ptq_pow2
    from fxp.sim.evaluate import simulate
    from fxp.sim.float_ref import run_float

    calib, x = data
    g = canonicalize(load_onnx(PATH))
    ref = ort.InferenceSession(str(PATH), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    np.testing.assert_allclose(run_float(g, x), ref, rtol=0, atol=1e-5)
    mul = [n for n in g.nodes if isinstance(n, Mul)]
    assert len(mul) == 1
    labels = np.argmax(run_float(g, calib), axis=1)
    for scheme in ("pow2", "double", "single", "float32"):
        plan = ptq_pow2(g, x) if scheme == "pow2" else ptq_affine(g, x, scheme=scheme)
        lp = plan.layer(mul[0].name)
        assert lp is not None and lp.requant is RequantScheme.from_string(scheme)
        assert lp.output is not None and not lp.float_layer
        rep = simulate(g, plan, calib, labels)
        assert rep.output_sqnr_db > 15, (scheme, rep.output_sqnr_db)
