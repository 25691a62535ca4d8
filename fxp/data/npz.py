"""Reading ``.npz`` archives without trusting them.

:func:`read_npz_arrays` reads only the members it is asked for, member by
member, straight from the zip stream:

1. the ``.npy`` header of each member is parsed first (``np.lib.format``, no
   pickle: object arrays are refused), and its dtype kind and rank are checked
   against what the caller accepts before any data is read;
2. the declared size (``shape x itemsize`` plus the header) must equal the
   member's uncompressed size recorded in the zip directory, so a header
   cannot claim less (or more) than the member holds;
3. with ``rows`` only the first ``rows`` entries along axis 0 are decompressed
   (the leading bytes of a C-order array), so ``--limit 10`` on a member that
   inflates to gigabytes reads a few kilobytes;
4. what is read must fit :data:`MAX_ARRAY_BYTES` once widened to 8-byte numbers
   (the images become float32, then float64 while preprocessed), else a
   :class:`~fxp.errors.DataError` says to pass a smaller limit.

Other members of the archive are never read.

>>> import io, numpy as np, tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "d.npz"
>>> np.savez(p, x=np.arange(12).reshape(6, 2), y=np.arange(6))
>>> a = read_npz_arrays(p, {"x": ArraySpec("iu", (2,))}, rows=2)
>>> a["x"].tolist(), a.lengths["x"]
([[0, 1], [2, 3]], 6)
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fxp.errors import DataError

__all__ = ["MAX_ARRAY_BYTES", "ArraySpec", "NpzArrays", "human_bytes", "read_npz_arrays"]

MAX_ARRAY_BYTES = 2 << 30
"""Cap on one npz member or IDX file: its elements x 8 bytes (2 GiB, i.e. 268 million
elements, whatever the stored dtype); pass a limit to read a prefix of a larger file."""

def human_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``: a byte count for messages."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


_KIND_NAMES = {"b": "bool", "i": "signed integer", "u": "unsigned integer", "f": "float"}


@dataclass(frozen=True)
class ArraySpec:
    """What a member may be: dtype kinds (``"biuf"`` letters) and allowed ranks."""

    kinds: str
    ndims: tuple[int, ...]
    shapes: str = ""
    """What the ranks mean, for messages (e.g. ``"labels must be [N] or [N, 1]"``)."""


class NpzArrays(dict):
    """The arrays read (name -> array), with ``lengths``: each member's declared axis-0 size."""

    lengths: dict[str, int]


def _shown_path(path: Path) -> str:
    text = str(path)
    text = text if len(text) <= 200 else text[:200] + "..."
    return text if text.isprintable() else repr(text)


def read_npz_arrays(path: str | os.PathLike[str], wanted: dict[str, ArraySpec], *,
                    optional: tuple[str, ...] = (), rows: int | None = None) -> NpzArrays:
    """Read the members ``wanted`` of npz ``path`` (see the module docstring).

    Parameters
    ----------
    path : path-like
        The archive.
    wanted : dict name -> ArraySpec
        Members to read (``"x"`` reads ``x.npy``) and what each may hold.
    optional : tuple of str
        Names in ``wanted`` that may be absent.
    rows : int, optional
        Read only the first ``rows`` entries along axis 0 of members of rank >= 1.

    Raises
    ------
    DataError
        Naming the file and the member: unreadable archive, missing member,
        object/string/complex dtype, wrong rank, a header that disagrees with
        the member's size, truncated data, or more than :data:`MAX_ARRAY_BYTES`.
    """
    p = Path(path)
    where = _shown_path(p)
    out = NpzArrays()
    out.lengths = {}
    try:
        with zipfile.ZipFile(p) as zf:
            members = {info.filename.removesuffix(".npy"): info for info in zf.infolist()}
            missing = [k for k in wanted if k not in members and k not in optional]
            if missing:
                raise DataError(f"{where}: npz lacks array(s) {missing} (has "
                                f"{sorted(members)[:20]}); need 'x' and 'y'")
            for name, spec in wanted.items():
                if name in members:
                    arr, n = _read_member(zf, members[name], spec, rows, f"{where}: array "
                                          f"{name!r}")
                    out[name], out.lengths[name] = arr, n
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
            NotImplementedError) as exc:
        raise DataError(f"{where}: cannot read npz archive: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
                        ) from None
    return out


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, spec: ArraySpec,
                 rows: int | None, where: str) -> tuple[np.ndarray, int]:
    fmt = np.lib.format
    with zf.open(info) as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as exc:
            raise DataError(f"{where}: not a valid .npy member ({str(exc)[:160]})") from None
        header = f.tell()
        if dtype.hasobject or dtype.kind not in spec.kinds or dtype.fields is not None:
            want = " or ".join(_KIND_NAMES[k] for k in spec.kinds)
            raise DataError(f"{where}: dtype {dtype.str!r} is not allowed; expected {want} "
                            "numbers")
        if len(shape) not in spec.ndims:
            want = spec.shapes or "expected " + " or ".join(f"{d}-D" for d in spec.ndims)
            raise DataError(f"{where}: has shape {tuple(shape)} ({len(shape)}-D); {want}")
        declared = math.prod(shape) * dtype.itemsize
        if header + declared != info.file_size:
            raise DataError(f"{where}: header declares shape {tuple(shape)} of {dtype.str} "
                            f"({declared:,} bytes) but the member holds "
                            f"{info.file_size - header:,} bytes")
        n = int(shape[0]) if shape else 1
        take = shape
        if rows is not None and shape and rows < shape[0]:
            if fortran and len(shape) > 1:
                raise DataError(f"{where}: stored in Fortran order; a limit reads leading "
                                "samples only from C-order arrays (save with np.ascontiguousarray)")
            take = (rows, *shape[1:])
        nbytes = math.prod(take) * dtype.itemsize
        if math.prod(take) * 8 > MAX_ARRAY_BYTES:
            raise DataError(f"{where}: {math.prod(take):,} elements (shape {tuple(take)}) take "
                            f"{human_bytes(math.prod(take) * 8)} as float64, more than the "
                            f"{human_bytes(MAX_ARRAY_BYTES)} cap; pass a smaller limit")
        buf = f.read(nbytes)
    if len(buf) != nbytes:
        raise DataError(f"{where}: truncated: {len(buf):,} of {nbytes:,} bytes")
    arr = np.frombuffer(buf, dtype=dtype, count=math.prod(take))
    arr = arr.reshape(take, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), copy=False), n
