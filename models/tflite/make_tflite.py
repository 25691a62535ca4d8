"""Build the reference ``.tflite`` models (int8 and int16x8) of ``models/tflite/``.

Run ONCE in a separate TensorFlow virtualenv (TensorFlow is not a dependency
of fxp or of its tests); see ``models/tflite/README.md``::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0
    .venv/bin/python -c "import numpy as np; from fxp.data import load_dataset; \
        ds = load_dataset('mnist5k'); np.savez_compressed('/tmp/mnist5k.npz', x=ds.x, y=ds.y)"
    /tmp/tfenv/bin/python models/tflite/make_tflite.py --data /tmp/mnist5k.npz \
        --onnx-weights /tmp/mnist_cnn_weights.npz --out models/tflite

``--onnx-weights`` is an npz of ``models/mnist_cnn/mnist_cnn.onnx``'s float
weights (``conv1.w``, ``conv1.b``, ``conv2.w``, ``conv2.b``, ``fc1.w``,
``fc1.b`` in ONNX layout), written with fxp's importer (the script prints
how when it is missing).  The other nets are trained briefly (fixed
seeds) on the 5,000 ``mnist5k`` digits.  ``--models activations,activations16``
builds only the ``activations_*`` files (each of those nets seeds itself, so a
partial run gives the same nets as a full one); ``--onnx-weights`` is then not
needed.

Every model takes the preprocessed NHWC image ``(raw / 255 - 0.1307) / 0.3081``
of shape ``[N, 28, 28, 1]``.  Each is converted twice with a representative
data set of 300 digits: full-integer int8 (int8 input/output) and int16x8
(16-bit activations, 8-bit weights, int16 input/output).  The ``activations``
nets are also converted with float32 input and output (``*_floatio_*``: a
``QUANTIZE`` of the float input and a ``DEQUANTIZE`` of the output).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

MEAN, STD = 0.1307, 0.3081


def preprocess(raw: np.ndarray) -> np.ndarray:
    """NCHW raw pixels 0..255 -> NHWC float32 ``(raw/255 - mean)/std``."""
    x = (raw.astype(np.float32) / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)
    return np.transpose(x, (0, 2, 3, 1)).astype(np.float32)


def mnist_cnn(tf, weights: dict | None):
    """conv 3x3 (32) relu, maxpool 2, conv 3x3 (64) relu, maxpool 2, dense 10 (logits)."""
    L = tf.keras.layers
    inp = L.Input((28, 28, 1), batch_size=1, name="image")
    c1 = L.Conv2D(32, 3, activation="relu", name="conv1")
    c2 = L.Conv2D(64, 3, activation="relu", name="conv2")
    fc = L.Dense(10, name="fc1")
    y = L.MaxPooling2D(2, name="pool1")(c1(inp))
    y = L.MaxPooling2D(2, name="pool2")(c2(y))
    out = fc(L.Flatten(name="flatten")(y))
    model = tf.keras.Model(inp, out, name="mnist_cnn")
    if weights is not None:
        c1.set_weights([np.transpose(weights["conv1.w"], (2, 3, 1, 0)), weights["conv1.b"]])
        c2.set_weights([np.transpose(weights["conv2.w"], (2, 3, 1, 0)), weights["conv2.b"]])
        w = weights["fc1.w"].reshape(10, 64, 5, 5)           # ONNX flattens NCHW (c, h, w)
        w = np.transpose(w, (2, 3, 1, 0)).reshape(5 * 5 * 64, 10)  # Keras flattens NHWC
        fc.set_weights([w, weights["fc1.b"]])
    return model


def dw_avgpool(tf):
    """Depthwise conv and average pools, SAME padding included."""
    L = tf.keras.layers
    inp = L.Input((28, 28, 1), batch_size=1, name="image")
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    y = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6", name="dw1")(y)
    y = L.AveragePooling2D(3, strides=1, padding="same", name="avg_same")(y)
    y = L.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", activation="relu",
                          name="dw2")(y)
    y = L.Conv2D(16, 1, activation="relu", name="pw")(y)
    y = L.AveragePooling2D(2, strides=2, padding="valid", name="avg_valid")(y)
    out = L.Dense(10, name="fc")(L.Flatten(name="flatten")(y))
    return tf.keras.Model(inp, out, name="dw_avgpool")


def residual_mean(tf):
    """Residual ADD (fused relu), MEAN over H and W (global average), SOFTMAX."""
    L = tf.keras.layers
    inp = L.Input((28, 28, 1), batch_size=1, name="image")
    a = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv1")(inp)
    b = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(a)
    b = L.Conv2D(16, 3, padding="same", name="conv3")(b)
    y = L.ReLU(name="relu")(L.Add(name="add")([a, b]))
    y = L.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="conv4")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    out = L.Softmax(name="softmax")(L.Dense(10, name="fc")(y))
    return tf.keras.Model(inp, out, name="residual_mean")


def activations(tf, int16: bool):
    """PAD, HARD_SWISH (int8) or SiLU (int16x8: TFLite has no int16 HARD_SWISH), a
    squeeze-excite LOGISTIC gate (broadcast MUL), TANH, and a CONCATENATION whose input
    scales differ (the converter inserts an int8 -> int8 / int16 -> int16 QUANTIZE)."""
    L = tf.keras.layers
    inp = L.Input((28, 28, 1), batch_size=1, name="image")
    y = L.Conv2D(8, 3, strides=2, name="conv1")(inp)
    y = L.ZeroPadding2D(1, name="pad")(y)  # before the activation: not folded into conv2
    y = L.Activation("silu" if int16 else "hard_swish", name="act")(y)
    y = L.Conv2D(16, 3, strides=2, name="conv2")(y)
    g = L.GlobalAveragePooling2D(keepdims=True, name="se_mean")(y)
    g = L.Conv2D(16, 1, activation="sigmoid", name="se_gate")(g)
    m = L.Multiply(name="se_mul")([y, g])
    t = L.Activation("tanh", name="tanh")(m)
    y = L.Concatenate(name="concat")([t, m])
    out = L.Dense(10, name="fc")(L.Flatten(name="flatten")(y))
    return tf.keras.Model(inp, out, name="activations16" if int16 else "activations")


# model -> [(file stem, int16x8, float32 input and output)]
JOBS = {
    "mnist_cnn": [("mnist_cnn_int8", False, False), ("mnist_cnn_int16x8", True, False)],
    "dw_avgpool": [("dw_avgpool_int8", False, False), ("dw_avgpool_int16x8", True, False)],
    "residual_mean": [("residual_mean_int8", False, False),
                      ("residual_mean_int16x8", True, False)],
    "activations": [("activations_int8", False, False), ("activations_floatio_int8", False, True)],
    "activations16": [("activations_int16x8", True, False),
                      ("activations_floatio_int16x8", True, True)],
}
SELF_SEEDED = {"activations": 1, "activations16": 2}
"""Nets that call ``set_random_seed`` themselves (added after the first three)."""


def convert(tf, model, rep: np.ndarray, int16: bool, float_io: bool = False) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for i in range(rep.shape[0]):
            yield [rep[i:i + 1]]

    conv.representative_dataset = representative
    if int16:
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = conv.inference_output_type = tf.int16 if int16 else tf.int8
    return conv.convert()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="npz with x (N,1,28,28 raw 0..255) and y")
    ap.add_argument("--onnx-weights", help="needed for mnist_cnn")
    ap.add_argument("--out", default="models/tflite")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--models", default=",".join(JOBS),
                    help=f"comma-separated subset of {', '.join(JOBS)}")
    args = ap.parse_args()
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(JOBS))
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {list(JOBS)}")
    if "mnist_cnn" in wanted and not args.onnx_weights:
        ap.error("mnist_cnn needs --onnx-weights")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    with np.load(args.data) as d:
        x, y = preprocess(d["x"]), d["y"].astype(np.int64)
    rep = x[:300]
    builders = {"mnist_cnn": lambda: mnist_cnn(tf, _weights(args.onnx_weights)),
                "dw_avgpool": lambda: dw_avgpool(tf), "residual_mean": lambda: residual_mean(tf),
                "activations": lambda: activations(tf, False),
                "activations16": lambda: activations(tf, True)}
    for name in (n for n in JOBS if n in wanted):
        if name in SELF_SEEDED:
            tf.keras.utils.set_random_seed(SELF_SEEDED[name])
        model = builders[name]()
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=name != "residual_mean")
        if name != "mnist_cnn":
            # batch_size=1 inputs convert to static shapes; train on a batch-free twin
            train = tf.keras.models.clone_model(model, input_tensors=tf.keras.Input((28, 28, 1)))
            train.compile("adam", loss=loss, metrics=["accuracy"])
            train.fit(x, y, epochs=args.epochs, batch_size=64, verbose=2)
            model.set_weights(train.get_weights())
        model.compile(loss=loss, metrics=["accuracy"])
        acc = model.evaluate(x[:1000], y[:1000], batch_size=1, verbose=0)[1]
        print(f"{name}: float accuracy on the first 1,000 digits {acc:.4f}")
        for stem, int16, float_io in JOBS[name]:
            data = convert(tf, model, rep, int16, float_io)
            path = os.path.join(args.out, f"{stem}.tflite")
            with open(path, "wb") as f:
                f.write(data)
            print(f"wrote {path} ({len(data)} bytes)")
    print(f"TensorFlow {tf.__version__}, Keras {tf.keras.__version__}")


def _weights(path: str) -> dict:
    with np.load(path) as w:
        return {k: w[k] for k in w.files}


if __name__ == "__main__":
    main()
