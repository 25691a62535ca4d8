"""Write the mixed int8 / int16x8 ``.tflite`` that an fxp int16x8 plan describes.

``fxp plan m_int8.tflite --target-sqnr T --data D --out p.json`` picks which
layers of an int8 model run int16x8 (:mod:`fxp.opt.tflite_int16`).  This
script writes that model as TFLite Micro runs it, so the plan's integers can
be checked against TFLM (``tests/frontends/test_tflite_int16_mix.py``):

* every activation tensor the plan codes in 16 bits becomes ``INT16`` with the
  plan's scale and zero point 0;
* each int16x8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED gets an ``INT64``
  bias holding the codes fxp's engine adds (``compile_plan``);
* where such a layer reads an int8 tensor, a ``QUANTIZE`` (int8 -> int16,
  scale ``s / 128``, zero point 0) is inserted before it and its bias codes
  are multiplied by 128 (:mod:`fxp.plan.tflite_int16` shows why this is the
  same integers as fxp's direct int8-input layer).

It needs TensorFlow's generated schema with the flatbuffers object API
(``tensorflow/lite/python/schema_py_generated.py``; the ``tflite`` package has
no writer) and the ``flatbuffers`` package; run it with fxp's environment::

    .venv/bin/python models/tflite/make_mixed.py models/tflite/residual_mean_int8.tflite \\
        --layers op4_conv_2d,op6_fully_connected \\
        --schema /tmp/tfenv/lib/python3.11/site-packages/tensorflow/lite/python/schema_py_generated.py \\
        --out models/tflite/residual_mean_mixed.tflite
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
QUANTIZE = 114


def _schema(path: str):
    spec = importlib.util.spec_from_file_location("tflite_schema_objects", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _buffer(S, model, array: np.ndarray) -> int:
    buf = S.BufferT()
    buf.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
    model.buffers.append(buf)
    return len(model.buffers) - 1


def _quant(S, scales, zero_points, dim: int = 0):
    q = S.QuantizationParametersT()
    q.scale = [float(s) for s in scales]
    q.zeroPoint = [int(z) for z in zero_points]
    q.quantizedDimension = dim
    return q


def _opcode(S, model, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = S.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def make_mixed(src: Path, layers: list[str], schema: str) -> bytes:
    """The mixed ``.tflite`` bytes for the int8 model ``src`` with ``layers`` int16x8."""
    import flatbuffers

    from fxp.frontends.tflite import OPS_KEY, TENSORS_KEY, load_tflite
    from fxp.plan.tflite_int16 import widen_plan
    from fxp.sim.compile import compile_plan

    S = _schema(schema)
    graph, plan = load_tflite(src)
    wide_plan = widen_plan(graph, plan, layers)
    compiled = compile_plan(graph, wide_plan)
    spec_of = {graph.inputs[0]: wide_plan.input}
    spec_of.update({s.node.output: s.out_spec for s in compiled.steps})
    b_codes = {s.node.name: s.b_codes for s in compiled.steps if getattr(s, "b_codes", None)
               is not None}
    tmap = {int(k): v[0] for k, v in json.loads(graph.metadata[TENSORS_KEY]).items()}
    records = json.loads(graph.metadata[OPS_KEY])

    model = S.ModelT.InitFromPackedBuf(bytearray(src.read_bytes()), 0)
    sg = model.subgraphs[0]
    for t, ir in tmap.items():  # retype the 16-bit activations
        spec = spec_of.get(ir)
        if spec is not None and spec.fmt.bits == 16:
            sg.tensors[t].type = S.TensorType.INT16
            sg.tensors[t].quantization = _quant(S, spec.scales, [0])
    ops = []
    for op, (index, name, nodes, ins, out) in zip(sg.operators, records, strict=True):
        if name in WEIGHTED and sg.tensors[out].type == S.TensorType.INT16:
            x = op.inputs[0]
            codes = np.asarray(b_codes[nodes[0]], np.int64)
            s_in = float(sg.tensors[x].quantization.scale[0])
            if sg.tensors[x].type == S.TensorType.INT8:  # switch point: QUANTIZE before it
                q = S.TensorT()
                q.shape = list(sg.tensors[x].shape)
                q.type, q.buffer = S.TensorType.INT16, _buffer(S, model, np.zeros(0, np.uint8))
                q.name = (sg.tensors[x].name or b"x") + b"_int16"
                s_in = float(np.float32(s_in / 128.0))
                q.quantization = _quant(S, [s_in], [0])
                sg.tensors.append(q)
                quant = S.OperatorT()
                quant.opcodeIndex = _opcode(S, model, QUANTIZE)
                quant.inputs, quant.outputs = [x], [len(sg.tensors) - 1]
                ops.append(quant)
                op.inputs[0] = len(sg.tensors) - 1
                codes = codes * 128
            w_scales = np.asarray(sg.tensors[op.inputs[1]].quantization.scale, np.float64)
            bias = sg.tensors[op.inputs[2]]
            bias.type, bias.buffer = S.TensorType.INT64, _buffer(S, model, codes.astype("<i8"))
            bias.quantization = _quant(S, s_in * w_scales, np.zeros(len(w_scales)))
        ops.append(op)
    sg.operators = ops
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path, help="the int8 .tflite")
    ap.add_argument("--layers", required=True, help="comma-separated int16x8 layers")
    ap.add_argument("--schema", required=True, help="TensorFlow's schema_py_generated.py")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    layers = [n.strip() for n in args.layers.split(",") if n.strip()]
    args.out.write_bytes(make_mixed(args.model, layers, args.schema))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
