"""Golden vectors: every layer's integer input and output codes, for RTL and C testbenches.

For N inputs, :func:`export_golden` writes into a folder:

* ``golden.npz`` -- one int64 array per tensor (key = the tensor's file stem,
  see below), shape ``[N, ...]`` in NCHW / C order;
* ``<stem>.hex`` -- one code per line, C order over ``[N, ...]``, as the
  two's-complement bit pattern of the tensor's word length in lower-case hex,
  zero-padded to ``ceil(bits / 4)`` digits (int8 -3 -> ``fd``);
* ``manifest.json`` -- per tensor: file names, shape, format (``fixed<W,I>``),
  scale(s) and zero point, which layer produces and consumes it, plus the plan.

Codes travel as integers, never as decimal reals (correctness-anchors P13),
and :func:`read_hex` reads a ``.hex`` file back bit for bit.

Tensor names come from the model file, so file names and npz keys are safe
stems from :func:`fxp.export.names.file_stems` (``[A-Za-z0-9_.-]``, no leading
dot, no separator, at most 80 characters, unique without regard to case); a
plain name such as ``conv1_out`` is its own stem.  The manifest maps every
tensor name to its ``hex`` file and ``npz`` key.  Files are written atomically
through :mod:`fxp.fileio` (:class:`~fxp.errors.OutputError` if they cannot be).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from fxp.errors import DataError
from fxp.export.names import file_stems
from fxp.fileio import ensure_dir, write_text, write_with
from fxp.ir.graph import Graph
from fxp.plan.io import plan_to_dict
from fxp.plan.plan import Plan
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from fxp.sim.values import IntValue

__all__ = ["export_golden", "export_hls4ml_tb", "read_hex", "to_hex_lines"]


def to_hex_lines(codes: np.ndarray, bits: int) -> list[str]:
    """Two's-complement hex of each code at ``bits`` bits (C order)."""
    mask = (1 << bits) - 1
    width = (bits + 3) // 4
    return [format(int(c) & mask, f"0{width}x") for c in np.asarray(codes).ravel()]


def read_hex(path: str | Path, bits: int, signed: bool, shape=None) -> np.ndarray:
    """Read a ``.hex`` file written by :func:`export_golden` back into int64 codes."""
    vals = []
    for i, line in enumerate(Path(path).read_text().split(), start=1):
        v = int(line, 16)
        if v >> bits:
            raise DataError(f"{path}:{i}: {line!r} does not fit {bits} bits")
        if signed and v >> (bits - 1):
            v -= 1 << bits
        vals.append(v)
    out = np.array(vals, np.int64)
    return out.reshape(shape) if shape is not None else out


def export_golden(graph: Graph, plan: Plan, x: np.ndarray, out_dir: str | Path) -> Path:
    """Run ``x`` through the integer engine and write every integer tensor (see module doc)."""
    out = ensure_dir(out_dir)
    model = compile_plan(graph, plan)
    run = run_integer(model, np.asarray(x, np.float32), keep=True)
    g = model.graph
    ints = {name: v for name, v in run.values.items() if isinstance(v, IntValue)}
    stems = file_stems(ints)
    arrays, tensors = {}, []
    for name, value in ints.items():
        spec = value.spec
        fname = stems[name]
        arrays[fname] = value.codes
        write_text(out / f"{fname}.hex",
                   "\n".join(to_hex_lines(value.codes, spec.fmt.bits)) + "\n")
        prod = g.producer(name)
        tensors.append({
            "tensor": name, "hex": f"{fname}.hex", "npz": fname, "shape": list(value.codes.shape),
            "format": str(spec.fmt), "bits": spec.fmt.bits, "signed": spec.fmt.signed,
            "frac_bits": spec.fmt.frac_bits,
            "scales": list(spec.scales) if spec.scales is not None else None,
            "zero_point": spec.zero_point,
            "producer": prod.name if prod is not None else "(input)",
            "consumers": [n.name for n in g.consumers(name)],
        })
    write_with(out / "golden.npz", lambda tmp: _savez(tmp, arrays))
    manifest = {"model": g.name, "n": int(np.asarray(x).shape[0]), "layout": "NCHW, C order",
                "hex": "two's complement at the tensor's bit width, one code per line",
                "tensors": tensors, "plan": plan_to_dict(plan)}
    write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return out


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` by hand: keys such as ``file`` or ``allow_pickle`` cannot clash with
    its keyword arguments, and the temporary name gets no ``.npz`` appended."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def _dat_lines(values: np.ndarray) -> str:
    """One sample per line, its values in C order, space separated, shortest exact repr."""
    flat = np.asarray(values).reshape(len(values), -1)
    return "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in flat)


def export_hls4ml_tb(graph: Graph, plan: Plan, x: np.ndarray, out_dir: str | Path, *,
                     logits: bool = False) -> Path:
    """hls4ml testbench files for ``x``: ``tb_input_features.dat`` and
    ``tb_output_predictions.dat`` in ``out_dir`` (hls4ml's ``tb_data`` format).

    Inputs are written as given (float32 values, one sample per line, NCHW C
    order: hls4ml's PyTorch frontend with ``ChannelsLastConversion: full``
    transposes them itself); predictions are fxp's integer engine outputs as
    exact decimal reals of their codes.  ``logits=True`` writes the input of a
    final Softmax instead of its (float) output, to compare with a traced or
    softmax-free hls4ml model.

    Raises
    ------
    DataError
        ``x`` is empty; :class:`~fxp.errors.OutputError` if a file cannot be written.
    """
    from fxp.sim.integer import logits_tensor
    from fxp.sim.values import to_float

    x = np.asarray(x, np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"hls4ml testbench needs a non-empty batch [N, ...], got shape {x.shape}")
    model = compile_plan(graph, plan)
    run = run_integer(model, x, keep=True)
    name = logits_tensor(model) if logits else model.graph.outputs[0]
    out = ensure_dir(Path(out_dir))
    write_text(out / "tb_input_features.dat", _dat_lines(x))
    write_text(out / "tb_output_predictions.dat",
               _dat_lines(to_float(run.values[name], name).astype(np.float64)))
    return out
