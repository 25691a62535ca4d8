"""Build the three reference ``.tflite`` models (int8 and int16x8) of ``models/tflite/``.

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
how when it is missing).  The other two nets are trained briefly (fixed
seeds) on the 5,000 ``mnist5k`` digits.

Every model takes the preprocessed NHWC image ``(raw / 255 - 0.1307) / 0.3081``
of shape ``[N, 28, 28, 1]``.  Each is converted twice with a representative
data set of 300 digits: full-integer int8 (int8 input/output) and int16x8
(16-bit activations, 8-bit weights, int16 input/output).
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


def convert(tf, model, rep: np.ndarray, int16: bool) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for i in range(rep.shape[0]):
            yield [rep[i:i + 1]]

    conv.representative_dataset = representative
    if int16:
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int16
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="npz with x (N,1,28,28 raw 0..255) and y")
    ap.add_argument("--onnx-weights", required=True)
    ap.add_argument("--out", default="models/tflite")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    with np.load(args.data) as d:
        x, y = preprocess(d["x"]), d["y"].astype(np.int64)
    with np.load(args.onnx_weights) as w:
        weights = {k: w[k] for k in w.files}
    rep = x[:300]
    builders = {"mnist_cnn": lambda: mnist_cnn(tf, weights), "dw_avgpool": lambda: dw_avgpool(tf),
                "residual_mean": lambda: residual_mean(tf)}
    for name, build in builders.items():
        model = build()
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
        for suffix, int16 in (("int8", False), ("int16x8", True)):
            data = convert(tf, model, rep, int16)
            path = os.path.join(args.out, f"{name}_{suffix}.tflite")
            with open(path, "wb") as f:
                f.write(data)
            print(f"wrote {path} ({len(data)} bytes)")
    print(f"TensorFlow {tf.__version__}, Keras {tf.keras.__version__}")


if __name__ == "__main__":
    main()
