"""Write fxp's input preprocessing into the ``.tflite`` files' metadata (run with TensorFlow).

A ``.tflite`` flatbuffer carries no input normalisation; fxp reads
``fxp.preprocess.*`` entries of its ``metadata`` table (each a UTF-8 buffer),
as it reads an ONNX model's ``metadata_props``.  This script adds
``scale = 1/255``, ``mean = 0.1307``, ``std = 0.3081`` and ``layout = NCHW``
(the graph input fxp builds is NCHW) to every ``*.tflite`` beside it, replacing
earlier ``fxp.preprocess.*`` entries, with TensorFlow's own flatbuffer object
API (or only to the files named on the command line).  TensorFlow is not an
fxp dependency: run it in the venv that ran ``make_tflite.py``::

    /tmp/tfenv/bin/python models/tflite/add_metadata.py [FILE.tflite ...]
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
from tensorflow.lite.python import schema_py_generated as schema

PREPROCESS = {"fxp.preprocess.scale": repr(1 / 255), "fxp.preprocess.mean": "0.1307",
              "fxp.preprocess.std": "0.3081", "fxp.preprocess.layout": "NCHW"}


def add_metadata(path: Path) -> None:
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(path.read_bytes(), 0))
    model.metadata = [m for m in (model.metadata or [])
                      if not m.name.decode().startswith("fxp.preprocess.")]
    for key, value in PREPROCESS.items():
        buf = schema.BufferT()
        buf.data = list(value.encode())
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name = key.encode()
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


if __name__ == "__main__":
    import sys

    paths = [Path(a) for a in sys.argv[1:]] or sorted(Path(__file__).parent.glob("*.tflite"))
    for p in paths:
        add_metadata(p)
        print(f"wrote preprocessing metadata into {p.name}")
