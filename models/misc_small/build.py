"""Build ``models/misc_small/misc_small.onnx`` (random weights; op coverage for issue 14).

    python models/misc_small/build.py

The net (:data:`archs.MISC_SMALL`, :func:`archs.build_misc_small`, seed 0) holds
Concat of two branches with different scales, an SE gate
(GlobalAveragePool -> Conv -> Sigmoid -> Mul), LeakyRelu and Mul; it is
exported like ``resnet_small`` (:func:`archs.export_net`, opset 17, input
``input`` ``[N, 1, 28, 28]``, output ``logits``) with the MNIST preprocessing
metadata of the zoo, so ``fxp.data.read_model_preprocess`` applies.  Accuracy
is not a goal (random weights); the file is checked against torch here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent))

from archs import MISC_SMALL, build_misc_small, export_net

META = {"fxp.preprocess.scale": "0.00392156862745098", "fxp.preprocess.mean": "0.1307",
        "fxp.preprocess.std": "0.3081", "fxp.preprocess.layout": "NCHW",
        "fxp.model": "misc_small", "fxp.train.data": "none (random weights, seed 0)",
        "fxp.train.command": "python models/misc_small/build.py"}


def main() -> int:
    import onnxruntime as ort
    import torch

    from fxp.fileio import write_bytes

    model = build_misc_small(seed=0).eval()
    m = export_net(model, MISC_SMALL, META, fold_bn=True)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    diff = float(np.max(np.abs(got - want)))
    if diff > 1e-4:
        raise SystemExit(f"misc_small: onnxruntime and torch differ by {diff}")
    dest = HERE / "misc_small.onnx"
    write_bytes(dest, m.SerializeToString())
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"wrote {dest} ({dest.stat().st_size} bytes), ops {ops}, torch vs onnxruntime {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
