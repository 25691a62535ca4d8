"""TFLite Micro as an oracle: every tensor of every operator of a ``.tflite`` model.

The ``tflite-micro`` Python package (test extra ``tflite``) wraps TFLM's C++
``MicroInterpreter`` with its reference kernels (gemmlowp double rounding).
Its interpreter built with ``InterpreterConfig.kPreserveAllTensors`` gives
each tensor its own arena slot, so after ``invoke()`` every intermediate is
still valid and ``GetTensor(tensor_index, subgraph_index)`` returns it (a dict
with ``tensor_data``, ``shape`` and ``dtype``).  The default configuration
(``kAllocationRecording``) reuses arena memory and records allocations
instead.

:func:`run_tflm` runs a batch one sample at a time (TFLM models have a fixed
batch of 1) and stacks each tensor over the batch, in TFLite's layout (NHWC
for images).  :func:`run_litert` does the same with LiteRT
(``ai-edge-litert``, ``experimental_preserve_all_tensors=True``) for the
runtime profiles of later work.  Never imported by ``fxp``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["litert_version", "run_litert", "run_tflm", "tflm_version"]


def tflm_version() -> str:
    """The installed ``tflite-micro`` version (a dated nightly plus the git hash)."""
    from tflite_micro.python.tflite_micro import _version

    return _version.__version__


def litert_version() -> str:
    """The installed ``ai-edge-litert`` version."""
    from importlib.metadata import version

    return version("ai-edge-litert")


def _check_batch(x: np.ndarray, shape: tuple, dtype: np.dtype) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != dtype or tuple(x.shape[1:]) != tuple(shape[1:]):
        raise ValueError(f"inputs must be {dtype} of per-sample shape {tuple(shape[1:])}, got "
                         f"{x.dtype} {x.shape}")
    return x


def run_tflm(model: bytes, x: np.ndarray, tensors: list[int] | None = None
             ) -> dict[int, np.ndarray]:
    """Run ``x`` (``[N, ...]`` integer codes, the model's input layout) through TFLM.

    Parameters
    ----------
    model : bytes
        The ``.tflite`` flatbuffer (one input, batch 1).
    x : ndarray
        Input codes of the model's input dtype; sample ``i`` is ``x[i:i+1]``.
    tensors : list of int, optional
        Tensor indices of subgraph 0 to return (default: all of them).

    Returns
    -------
    dict
        Tensor index -> array ``[N, *shape[1:]]`` for activations (batch-1
        tensors), or the constant tensor itself (weights, biases, shapes).
    """
    from tflite_micro.python.tflite_micro import runtime

    ip = runtime.Interpreter.from_bytes(
        bytes(model), intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    det = ip.get_input_details(0)
    x = _check_batch(x, tuple(det["shape"]), np.dtype(det["dtype"]))
    consts = _constants(model)
    if tensors is None:
        import tflite

        sg = tflite.Model.GetRootAsModel(bytes(model), 0).Subgraphs(0)
        tensors = list(range(sg.TensorsLength()))
    out: dict[int, list[np.ndarray]] = {t: [] for t in tensors}
    for i in range(x.shape[0]):
        ip.set_input(x[i:i + 1], 0)
        ip.invoke()
        for t in tensors:
            out[t].append(np.array(ip.GetTensor(t, 0)["tensor_data"], copy=True))
    return {t: _stack(t, v, consts) for t, v in out.items()}


def _constants(model: bytes) -> set[int]:
    """Indices of the tensors of subgraph 0 whose buffer holds data (weights, biases, shapes)."""
    import tflite

    m = tflite.Model.GetRootAsModel(bytes(model), 0)
    sg = m.Subgraphs(0)
    return {t for t in range(sg.TensorsLength())
            if m.Buffers(sg.Tensors(t).Buffer()).DataLength() > 0}


def _stack(t: int, samples: list[np.ndarray], consts: set[int]) -> np.ndarray:
    """A constant once; an activation (batch 1 per sample) stacked over the samples."""
    return samples[0] if t in consts else np.concatenate(samples, axis=0)


def run_litert(model: bytes, x: np.ndarray, *, resolver: str = "builtin_ref"
               ) -> dict[int, np.ndarray]:
    """Run ``x`` through LiteRT with every tensor preserved (``resolver``: ``"builtin_ref"``
    = reference kernels, ``"builtin"`` = optimized kernels with XNNPACK, ``"builtin_no_xnnpack"``).
    Returns tensor index -> ``[N, ...]`` for every tensor with data.
    """
    from ai_edge_litert import interpreter as lite

    op = {"builtin_ref": lite.OpResolverType.BUILTIN_REF, "builtin": lite.OpResolverType.BUILTIN,
          "builtin_no_xnnpack": lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[resolver]
    ip = lite.Interpreter(model_content=bytes(model), experimental_op_resolver_type=op,
                          experimental_preserve_all_tensors=True)
    ip.allocate_tensors()
    det = ip.get_input_details()[0]
    x = _check_batch(x, tuple(det["shape"]), np.dtype(det["dtype"]))
    out: dict[int, list[np.ndarray]] = {}
    for i in range(x.shape[0]):
        ip.set_tensor(det["index"], x[i:i + 1])
        ip.invoke()
        for d in ip.get_tensor_details():
            try:
                out.setdefault(d["index"], []).append(np.array(ip.get_tensor(d["index"])))
            except ValueError:  # tensors without data (e.g. freed scratch)
                continue
    consts = _constants(model)
    return {t: _stack(t, v, consts) for t, v in out.items()}
