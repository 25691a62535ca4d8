"""The MCU resources of a ``.tflite`` flatbuffer as TFLite Micro runs it (:mod:`fxp.report.mcu`).

Read with the ``tflite`` package (the flatbuffer schema), from TFLM's source
(``tensorflow/tflite-micro``):

* tensor bytes: ``element count x TfLiteTypeSizeOf(type)`` (``memory_helpers.cc``;
  int4 activations take 1 byte each, int4 constants are stored packed);
* buffer lifetimes and placement: :mod:`fxp.report.arena`;
* scratch buffers (``RequestScratchBufferInArena`` in the reference kernels'
  ``Prepare``, in request order, living in their operator's scope): MEAN and
  SUM ``4 x`` output elements (int8/int16 only: the int32 accumulator), then
  ``4 x`` input rank and ``4 x`` axis count (``reduce_common.cc``);
  REDUCE_MAX/MIN the last two; CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED
  with int4 weights the unpacked filter (1 byte per weight).  ADD_N,
  MIRROR_PAD, SVDF, TRANSPOSE_CONV, REDUCE_ALL and custom operators request
  scratch buffers this module does not model: a note says so;
* persistent data from the model (``AllocatePersistentBuffer`` in
  ``Prepare``): CONV_2D (filter dim 0) and DEPTHWISE_CONV_2D (filter dim 3)
  an int32 multiplier and an int32 shift per channel (``conv_common.cc``,
  ``depthwise_conv_common.cc``); FULLY_CONNECTED the same when its int8/int16
  weights have more than one scale (``fully_connected_common.cc``); SOFTMAX
  on int16 two 513-entry int16 tables (``softmax_common.cc``); variable
  tensors their bytes.  Counted unaligned (TFLM rounds each allocation's
  position down to 16 bytes, so the true tail is at least this).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from fxp.errors import FxpError, MissingDependencyError, ModelImportError
from fxp.frontends.tflite import MAX_TFLITE_BYTES
from fxp.report.arena import Buffer, align_up, plan_arena
from fxp.report.mcu import LayerResources, McuResources, _live

__all__ = ["read_tflite_resources"]

# TensorType code -> bytes per element (TfLiteTypeSizeOf, micro memory_helpers.cc)
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8,
               13: 4, 15: 4, 16: 2, 17: 1, 18: 2}
_INT4, _INT8, _INT16 = 17, 9, 7
_WEIGHTED = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2),
             "TRANSPOSE_CONV": (1, 3)}
"""Operators with weights -> input positions of (weights, bias)."""
_CHANNEL_DIM = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3}
"""Filter dimension TFLM sizes its per-channel multiplier and shift arrays by."""
_SCRATCH_UNMODELLED = {"ADD_N", "MIRROR_PAD", "SVDF", "TRANSPOSE_CONV", "REDUCE_ALL", "CUSTOM"}
_SOFTMAX_LUT_BYTES = 2 * 2 * 513  # exp and 1/(1+x) tables, int16, LUTSize<int16_t>() = 513


def _read_model(source: str | os.PathLike | bytes) -> tuple[Any, Any, bytes, str]:
    try:
        import tflite
    except ImportError:
        raise MissingDependencyError("reading .tflite files needs the 'tflite' package: "
                                     "pip install 'fxp[tflite]'") from None
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), "<bytes>"
    else:
        label = repr(os.fspath(source))[:200]
        try:
            if os.path.getsize(source) > MAX_TFLITE_BYTES:
                raise ModelImportError(f"{label}: file is {os.path.getsize(source)} bytes, "
                                       f"above the limit {MAX_TFLITE_BYTES}")
            data = Path(source).read_bytes()
        except OSError as e:
            raise ModelImportError(f"{label}: cannot read model file: {e}") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelImportError(f"{label}: not a TFLite flatbuffer (file identifier "
                               f"{data[4:8]!r}, expected b'TFL3')")
    return tflite, tflite.Model.GetRootAsModel(data, 0), data, label


def read_tflite_resources(source: str | os.PathLike | bytes, graph=None) -> McuResources:
    """:func:`fxp.report.mcu.tflite_resources` (see there)."""
    tflite, model, data, label = _read_model(source)
    try:
        return _tflite_resources(tflite, model, data, _ir_names(graph))
    except FxpError as e:
        raise type(e)(f"{label}: {e}") from None
    except (IndexError, TypeError, ValueError, AttributeError, struct.error) as e:  # offsets
        raise ModelImportError(f"{label}: malformed TFLite flatbuffer: {type(e).__name__}: "
                               f"{str(e)[:200]!r}") from None


def _ir_names(graph) -> dict[int, str]:
    raw = None if graph is None else graph.metadata.get("fxp.tflite.ops")
    return {} if raw is None else {int(e[0]): str(e[2][0]) for e in json.loads(raw) if e[2]}


def _tflite_resources(tflite: Any, model: Any, data: bytes, ir: dict[int, str]) -> McuResources:
    if model.SubgraphsLength() != 1:
        raise ModelImportError(f"{model.SubgraphsLength()} subgraphs; one is supported")
    sg = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    def shape(t: int) -> list[int]:
        s = sg.Tensors(t).ShapeAsNumpy()
        return [int(d) for d in s] if isinstance(s, np.ndarray) else []

    def count(t: int) -> int:
        return int(np.prod(shape(t), dtype=np.int64))

    def elem(t: int) -> int:
        code = sg.Tensors(t).Type()
        if code not in _TYPE_BYTES:
            raise ModelImportError(f"tensor {t} ({_tname(sg, t)!r}) has type code {code}, "
                                   f"which has no byte size")
        return _TYPE_BYTES[code]

    def is_const(t: int) -> bool:
        buf = model.Buffers(sg.Tensors(t).Buffer())
        return buf.DataLength() > 0 or buf.Offset() > 1

    n_ops, n_t = sg.OperatorsLength(), sg.TensorsLength()
    first, last = [-1] * n_t, [-1] * n_t
    for t in sg.InputsAsNumpy():
        first[t] = last[t] = 0
    ops, scratch, notes = [], [], []
    for i in range(n_ops):
        op = sg.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
        ins = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []
        ops.append((name, ins, outs))
        for t in outs:
            first[t] = i + 1 if first[t] == -1 else first[t]
        for t in ins + outs:
            if t >= 0:
                last[t] = i + 1
        for k, nbytes in enumerate(_scratch_requests(name, ins, outs, sg, count, shape)):
            scratch.append(Buffer(f"scratch op{i} {name} #{k}", align_up(nbytes), i + 1, i + 1))
        if name in _SCRATCH_UNMODELLED:
            notes.append(f"op{i} {name}: kernel scratch buffers not modelled (head may be larger)")
    for t in sg.OutputsAsNumpy():
        last[t] = n_ops
    buffers, persistent = [], 0
    for t in range(n_t):
        if is_const(t):
            continue
        nbytes = count(t) * elem(t)
        if sg.Tensors(t).IsVariable():
            persistent += nbytes
        elif nbytes:
            buffers.append(Buffer(_tname(sg, t), align_up(nbytes), first[t], last[t]))
    buffers = tuple(buffers + scratch)
    if any(model.Metadata(k).Name() == b"OfflineMemoryAllocation"
           for k in range(model.MetadataLength())):
        notes.append("the file has an offline memory plan (OfflineMemoryAllocation), which "
                     "TFLM follows and this planner does not")
    seen: set[int] = set()
    rows = []
    for i, (name, ins, outs) in enumerate(ops):
        flash = {"weight_bytes": 0, "bias_bytes": 0, "other_bytes": 0, "quant_bytes": 0}
        for pos, t in enumerate(ins):
            if t < 0 or t in seen or not is_const(t):
                continue
            seen.add(t)
            nbytes = -(-count(t) // 2) if sg.Tensors(t).Type() == _INT4 else count(t) * elem(t)
            w_pos, b_pos = _WEIGHTED.get(name, (None, None))
            key = "weight_bytes" if pos == w_pos else "bias_bytes" if pos == b_pos else \
                "other_bytes"
            flash[key] += nbytes
            q = sg.Tensors(t).Quantization()
            if q is not None:
                flash["quant_bytes"] += 4 * q.ScaleLength() + 8 * q.ZeroPointLength()
        arena_param = _arena_params(name, ins, sg, shape)
        persistent += arena_param
        rows.append(LayerResources(ir.get(i, f"op{i}"), name, **flash,
                                   arena_param_bytes=arena_param,
                                   live_bytes=_live(buffers, i + 1)))
    return McuResources("tflite", tuple(rows), plan_arena(buffers), persistent, len(data),
                        tuple(notes))


def _tname(sg: Any, t: int) -> str:
    return (sg.Tensors(t).Name() or b"").decode("utf-8", "replace")[:120] or f"tensor{t}"


def _scratch_requests(name: str, ins: list[int], outs: list[int], sg: Any, count, shape
                      ) -> list[int]:
    """Bytes of each ``RequestScratchBufferInArena`` the reference kernel makes, in order."""
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(ins) > 1 \
            and sg.Tensors(ins[1]).Type() == _INT4:
        return [count(ins[1])]  # the unpacked int4 filter
    if name in ("MEAN", "SUM"):
        acc = [4 * count(outs[0])] if sg.Tensors(ins[0]).Type() in (_INT8, _INT16) else []
        return acc + [4 * len(shape(ins[0])), 4 * count(ins[1])]
    if name in ("REDUCE_MAX", "REDUCE_MIN"):
        return [4 * len(shape(ins[0])), 4 * count(ins[1])]
    return []


def _arena_params(name: str, ins: list[int], sg: Any, shape) -> int:
    """Bytes the kernel's ``Prepare`` allocates in the persistent tail from the model's data
    (unaligned: TFLM rounds each allocation's position down to 16 bytes)."""
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return 2 * 4 * shape(ins[1])[_CHANNEL_DIM[name]]  # int32 multiplier + int32 shift
    if name == "FULLY_CONNECTED":
        q = sg.Tensors(ins[1]).Quantization()
        n = 0 if q is None or sg.Tensors(ins[0]).Type() not in (_INT8, _INT16) \
            else q.ScaleLength()
        return 2 * 4 * n if n > 1 else 0
    if name == "SOFTMAX" and sg.Tensors(ins[0]).Type() == _INT16:
        return _SOFTMAX_LUT_BYTES
    return 0
