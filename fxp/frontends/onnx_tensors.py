"""ONNX TensorProto -> numpy, with our own checks before any native decoding.

Checks, each raising :class:`~fxp.errors.ModelImportError` naming the tensor:

* element type is one of float32, float16, float64, int32, int64, bool;
* rank is at most 16, dims are non-negative and the element count is below
  :data:`MAX_ELEMENTS`;
* stored byte / element count equals ``prod(dims)``;
* external data stays inside the model folder (no absolute paths, no ``..``,
  no symlink escaping it) and ``offset + length`` lies within the file;
* float values are finite, and float64 values fit float32 (every float
  tensor becomes float32 weights); the message gives the first bad index.

onnx is never imported here; tensors are read through their protobuf fields.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from fxp.errors import ModelImportError

__all__ = ["MAX_ELEMENTS", "check_dims", "check_finite", "tensor_to_array"]

MAX_ELEMENTS = 1 << 28
"""Largest element count accepted for one tensor (1 GiB of float32)."""

# TensorProto.DataType -> (numpy dtype, name, repeated field holding typed data)
_DTYPES: dict[int, tuple[np.dtype, str, str]] = {
    1: (np.dtype("<f4"), "float32", "float_data"),
    10: (np.dtype("<f2"), "float16", "int32_data"),
    11: (np.dtype("<f8"), "float64", "double_data"),
    6: (np.dtype("<i4"), "int32", "int32_data"),
    7: (np.dtype("<i8"), "int64", "int64_data"),
    9: (np.dtype("?"), "bool", "int32_data"),
}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


_F32_MAX = float(np.finfo(np.float32).max)


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise :class:`ModelImportError` if a float ``array`` holds NaN or Inf.

    float64 values beyond the float32 range count as non-finite (they become
    infinities as float32 weights).
    """
    if array.dtype.kind != "f":
        return
    if not np.all(np.isfinite(array)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ModelImportError(f"tensor {name!r} has non-finite value {array[bad].item()} "
                               f"at index {bad}")
    if array.dtype.itemsize > 4 and array.size and float(np.abs(array).max()) > _F32_MAX:
        bad = tuple(int(i) for i in np.argwhere(np.abs(array) > _F32_MAX)[0])
        raise ModelImportError(f"tensor {name!r} has {array.dtype} value "
                               f"{array[bad].item()!r} at index {bad}, beyond the float32 "
                               f"range (overflows to inf)")


def check_dims(name: str, dims: tuple[int, ...]) -> int:
    """Element count of a tensor with ``dims``; negative, huge or rank above 16 refused."""
    if len(dims) > 16:
        raise ModelImportError(f"tensor {name!r} has rank {len(dims)}, above 16")
    if any(d < 0 for d in dims):
        raise ModelImportError(f"tensor {name!r} has negative dims {dims[:8]}")
    count = math.prod(dims)
    if count > MAX_ELEMENTS or any(d > MAX_ELEMENTS for d in dims):
        raise ModelImportError(f"tensor {name!r} has {count} elements (dims {dims[:8]}), above "
                               f"the limit {MAX_ELEMENTS}")
    return count


def tensor_to_array(t: Any, base_dir: str | None) -> np.ndarray:
    """Decode TensorProto ``t`` into a new numpy array (checked; see module docstring).

    Parameters
    ----------
    t : onnx.TensorProto
    base_dir : str or None
        Folder of the model file, for external data; ``None`` refuses external data.
    """
    name = t.name[:200] or "<unnamed>"
    if t.data_type not in _DTYPES:
        raise ModelImportError(f"tensor {name!r} has unsupported element type "
                               f"{t.data_type}; supported: "
                               f"{sorted(v[1] for v in _DTYPES.values())}")
    dtype, _, field = _DTYPES[t.data_type]
    dims = tuple(int(d) for d in t.dims)
    count = check_dims(name, dims)
    nbytes = count * dtype.itemsize
    if t.data_location == _EXTERNAL:
        raw = _read_external(t, name, base_dir, nbytes)
        if len(raw) != nbytes:  # the file changed under us
            raise ModelImportError(f"tensor {name!r}: external data gave {len(raw)} bytes, "
                                   f"expected {nbytes}")
        array = np.frombuffer(raw, dtype=dtype).reshape(dims)
    elif t.raw_data:
        if len(t.raw_data) != nbytes:
            raise ModelImportError(f"tensor {name!r}: raw_data has {len(t.raw_data)} bytes, "
                                   f"dims {dims} x {dtype.itemsize} bytes need {nbytes}")
        array = np.frombuffer(t.raw_data, dtype=dtype).reshape(dims)
    else:
        values = getattr(t, field)
        if len(values) != count:
            raise ModelImportError(f"tensor {name!r}: {field} holds {len(values)} values, "
                                   f"dims {dims} need {count} (missing or truncated data)")
        if t.data_type == 10:  # float16 bit patterns stored in int32_data
            if count and not 0 <= min(values) <= max(values) <= 0xFFFF:
                raise ModelImportError(f"tensor {name!r}: float16 int32_data holds values "
                                       f"outside 0..65535")
            array = np.asarray(values, dtype=np.uint16).view(np.float16).reshape(dims)
        else:
            array = np.asarray(values, dtype=dtype).reshape(dims)
    array = np.array(array, dtype=dtype.newbyteorder("="))
    check_finite(name, array)
    return array


def _read_external(t: Any, name: str, base_dir: str | None, nbytes: int) -> bytes:
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if not location:
        raise ModelImportError(f"tensor {name!r}: external data without a 'location'")
    if base_dir is None:
        raise ModelImportError(f"tensor {name!r}: external data {location!r} needs the model's "
                               f"folder; load from a path or pass base_dir")
    if "\0" in location:
        raise ModelImportError(f"tensor {name!r}: external data location {location[:200]!r} "
                               f"holds a NUL character")
    parts = location.replace("\\", "/").split("/")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ".." in parts \
            or os.path.splitdrive(location)[0]:
        raise ModelImportError(f"tensor {name!r}: external data location {location!r} leaves "
                               f"the model folder {base_dir!r}; refused")
    root = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, path]) != root:
        raise ModelImportError(f"tensor {name!r}: external data location {location!r} resolves "
                               f"to {path!r}, outside the model folder {root!r}; refused")
    if not os.path.isfile(path):
        raise ModelImportError(f"tensor {name!r}: external data file {location!r} not found "
                               f"in {root!r}")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info.get("length", str(nbytes)))
    except ValueError:
        raise ModelImportError(f"tensor {name!r}: external data offset/length must be "
                               f"integers, got {str(info)[:200]}") from None
    try:
        size = os.path.getsize(path)
        if offset < 0 or length != nbytes or offset + length > size:
            raise ModelImportError(f"tensor {name!r}: external data offset {offset} + length "
                                   f"{length} must be within {location!r} ({size} bytes) and "
                                   f"length must equal {nbytes}")
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    except OSError as e:
        raise ModelImportError(f"tensor {name!r}: cannot read external data {location!r}: "
                               f"{e.strerror or e}") from None
