"""Preprocess: arithmetic, metadata round trip, overrides, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fxp.data import Preprocess, read_model_preprocess
from fxp.errors import DataError, ModelImportError


def test_apply_matches_formula():
    p = Preprocess(scale=1 / 255, mean=0.1307, std=0.3081)
    x = np.arange(0, 256, dtype=np.float32).reshape(1, 1, 16, 16)
    expect = (x.astype(np.float64) / 255 - 0.1307) / 0.3081
    out = p.apply(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, expect, rtol=1e-6)


def test_per_channel_and_nhwc():
    p = Preprocess(scale=1.0, mean=(1.0, 2.0), std=(1.0, 4.0), layout="nhwc")
    x = np.full((2, 2, 3, 3), 6.0, np.float32)
    out = p.apply(x)
    assert out.shape == (2, 3, 3, 2)
    assert out[0, 0, 0].tolist() == [5.0, 1.0]
    with pytest.raises(DataError, match="2 values but the images have 3 channels"):
        p.apply(np.zeros((1, 3, 2, 2), np.float32))


@pytest.mark.parametrize("p", [
    Preprocess(),
    Preprocess(scale=1 / 255, mean=0.1307, std=0.3081),
    Preprocess(scale=0.1, mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0), layout="NHWC"),
])
def test_metadata_round_trip_is_exact(p):
    meta = p.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert set(meta) >= {"fxp.preprocess.scale", "fxp.preprocess.mean", "fxp.preprocess.std"}
    assert Preprocess.from_metadata(meta) == p


def test_from_metadata_ignores_other_keys_and_uses_default():
    base = Preprocess(scale=2.0, mean=1.0)
    p = Preprocess.from_metadata({"author": "x", "fxp.preprocess.std": "0.5"}, default=base)
    assert (p.scale, p.mean, p.std) == (2.0, 1.0, 0.5)
    assert Preprocess.from_metadata({"fxp.preprocess.scale": " 1/255 "}).scale == 1 / 255


def test_override():
    p = Preprocess(scale=1 / 255).override(mean=0.5, std=None)
    assert (p.scale, p.mean, p.std) == (1 / 255, 0.5, 1.0)
    with pytest.raises(DataError, match="unknown preprocessing field"):
        p.override(gamma=2)


@pytest.mark.parametrize("kwargs, match", [
    ({"std": 0.0}, "std must be non-zero"),
    ({"scale": 0}, "scale must be non-zero"),
    ({"mean": float("nan")}, "finite"),
    ({"layout": "CHW"}, "layout"),
    ({"scale": (1.0, 2.0)}, "single number"),
    ({"mean": "abc"}, "cannot parse"),
])
def test_invalid_values(kwargs, match):
    with pytest.raises(DataError, match=match):
        Preprocess(**kwargs)


def test_bad_metadata_key_and_value():
    with pytest.raises(DataError, match="unknown preprocessing key"):
        Preprocess.from_metadata({"fxp.preprocess.gamma": "1"})
    with pytest.raises(DataError, match="fxp.preprocess.std"):
        Preprocess.from_metadata({"fxp.preprocess.std": "1/0"})


def test_apply_rejects_non_nchw():
    with pytest.raises(DataError, match="4-D"):
        Preprocess().apply(np.zeros((3, 28, 28)))


def test_read_model_preprocess(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    want = Preprocess(scale=1 / 255, mean=0.2860, std=0.3530)
    helper.set_model_props(model, want.to_metadata())
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert read_model_preprocess(path) == want
    (tmp_path / "junk.onnx").write_bytes(b"not onnx at all")
    with pytest.raises(ModelImportError, match="junk.onnx"):
        read_model_preprocess(tmp_path / "junk.onnx")
