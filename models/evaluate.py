"""Measure a model's float accuracy with onnxruntime.

Usage::

    python models/evaluate.py mnist_cnn                  # zoo name, its own eval set
    python models/evaluate.py models/vgg7/vgg7.onnx --data mnist5k --limit 1000

The preprocessing comes from the model's ``fxp.preprocess.*`` metadata and the
default data set from its ``fxp.eval.data`` metadata.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's fxp

from fxp.data import load_dataset, read_model_preprocess
from fxp.zoo import resolve_model


def evaluate(model: str, data: str | None = None, *, limit: int | None = None,
             batch: int = 500) -> tuple[float, int, str]:
    """Return ``(accuracy, samples, data spec)`` of ``model`` on ``data``."""
    import onnx
    import onnxruntime as ort

    path = resolve_model(model)
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    spec = data or props.get("fxp.eval.data")
    if not spec:
        raise SystemExit(f"{path}: no fxp.eval.data metadata; pass --data")
    ds = load_dataset(spec, limit=limit)
    pre = read_model_preprocess(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    want = tuple(sess.get_inputs()[0].shape[1:])
    if any(isinstance(w, int) and w != g for w, g in zip(want, ds.image_shape)):
        raise SystemExit(f"{path} expects images {want}, {spec} has {ds.image_shape}")
    correct = 0
    for x, y in ds.batches(batch, preprocess=pre):
        correct += int((sess.run(None, {name: x})[0].argmax(1) == y).sum())
    return correct / len(ds), len(ds), spec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="onnxruntime accuracy of a model")
    ap.add_argument("model", help="zoo name or path to an .onnx file")
    ap.add_argument("--data", default=None, help="data set spec (default: the model's eval set)")
    ap.add_argument("--limit", type=int, default=None, help="first N samples only")
    args = ap.parse_args(argv)
    acc, n, spec = evaluate(args.model, args.data, limit=args.limit)
    print(f"{args.model}: accuracy {acc:.4f} ({round(acc * n)}/{n}) on {spec}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
