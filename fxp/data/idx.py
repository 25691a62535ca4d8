"""Reader and writer for the IDX file format (MNIST, Fashion-MNIST).

An IDX file is a 4-byte magic number followed by big-endian ``int32`` sizes,
one per dimension, and the data, big-endian, in C order::

    byte 0-1  0x00 0x00
    byte 2    data type code (0x08 uint8, 0x09 int8, 0x0B int16,
              0x0C int32, 0x0D float32, 0x0E float64)
    byte 3    number of dimensions
    4*ndim    sizes, big-endian uint32
    ...       data

Files may be gzip-compressed (detected by the gzip magic, not the file name).
:func:`read_idx` streams the file: it reads the header, checks the declared
size (against the file size for raw files; against the bytes actually there
for gzip streams, which are never inflated past what is needed), refuses more
than :data:`fxp.data.npz.MAX_ARRAY_BYTES` (elements x 8 bytes), and with
``limit`` decompresses only the first ``limit`` entries along axis 0.

>>> import numpy as np
>>> blob = encode_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))
>>> blob[:4].hex()
'00000802'
>>> decode_idx(blob).tolist()
[[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from fxp.errors import DataError
from fxp.fileio import write_bytes

__all__ = ["IDX_DTYPES", "decode_idx", "encode_idx", "read_idx", "read_idx_rows", "write_idx"]

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
#: Refuse headers claiming absurd sizes before allocating anything.
_MAX_DIMS = 16


def _parse_header(head: bytes, where: str) -> tuple[np.dtype, int]:
    """Type code and rank from the 4-byte magic; DataError on anything else."""
    if len(head) < 4:
        raise DataError(
            f"{where}: not an IDX file: {len(head)} bytes, need at least a 4-byte header"
        )
    if head[0] != 0 or head[1] != 0:
        raise DataError(
            f"{where}: bad IDX magic number 0x{head[:4].hex()}: the first two bytes must be zero"
        )
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{where}: unknown IDX data type code 0x{code:02X} (known: {known})")
    if ndim == 0 or ndim > _MAX_DIMS:
        raise DataError(f"{where}: IDX header claims {ndim} dimensions (expected 1..{_MAX_DIMS})")
    return IDX_DTYPES[code], ndim


def decode_idx(blob: bytes, *, where: str = "<bytes>") -> np.ndarray:
    """Decode an uncompressed IDX byte string into a native-endian array.

    Parameters
    ----------
    blob : bytes
        The whole (decompressed) file content.
    where : str
        Name used in error messages (usually the file path).

    Returns
    -------
    numpy.ndarray
        Array with the file's shape and a native-endian dtype.

    Raises
    ------
    DataError
        Bad magic number, unknown type code, truncated or oversized data.
    """
    dtype, ndim = _parse_header(blob[:4], where)
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(
            f"{where}: truncated IDX header: {len(blob)} bytes, need {header} for {ndim} dims"
        )
    dims = struct.unpack(f">{ndim}I", blob[4:header])
    count = math.prod(dims)
    need = header + count * dtype.itemsize
    if len(blob) < need:
        raise DataError(
            f"{where}: truncated IDX data: shape {tuple(dims)} of {dtype.name} needs "
            f"{need} bytes, file has {len(blob)}"
        )
    if len(blob) > need:
        raise DataError(
            f"{where}: {len(blob) - need} unexpected trailing bytes after IDX data "
            f"of shape {tuple(dims)}"
        )
    data = np.frombuffer(blob, dtype=dtype, count=count, offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str], *, limit: int | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw.

    Parameters
    ----------
    path : path-like
        File to read.  Compression is detected from the content.
    limit : int, optional
        Read only the first ``limit`` entries along axis 0 (the rest is never
        decompressed).

    Returns
    -------
    numpy.ndarray
        The decoded array (native byte order).

    Raises
    ------
    DataError
        The file is missing, unreadable, a broken gzip stream, malformed IDX,
        or larger than :data:`fxp.data.npz.MAX_ARRAY_BYTES` to decompress.
    """
    return read_idx_rows(path, limit)[0]


def read_idx_rows(path: str | os.PathLike[str], limit: int | None
                  ) -> tuple[np.ndarray, int]:
    """:func:`read_idx`, also returning the declared length of axis 0 (before ``limit``)."""
    from fxp.data.npz import MAX_ARRAY_BYTES, human_bytes

    p = Path(path)
    where = str(p) if len(str(p)) <= 200 else str(p)[:200] + "..."
    try:
        with p.open("rb") as raw:
            gz = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            size = os.fstat(raw.fileno()).st_size
            f = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            dtype, ndim = _parse_header(f.read(4), where)
            head = f.read(4 * ndim)
            if len(head) < 4 * ndim:
                raise DataError(f"{where}: truncated IDX header: {4 + len(head)} bytes, need "
                                f"{4 + 4 * ndim} for {ndim} dims")
            dims = struct.unpack(f">{ndim}I", head)
            need = math.prod(dims) * dtype.itemsize
            if not gz and size != 4 + 4 * ndim + need:
                have = size - 4 - 4 * ndim
                what = "truncated IDX data" if have < need else \
                    f"{have - need} unexpected trailing bytes after IDX data"
                raise DataError(f"{where}: {what}: shape {tuple(dims)} of {dtype.name} needs "
                                f"{4 + 4 * ndim + need} bytes, file has {size}")
            take = dims if limit is None or limit >= dims[0] else (limit, *dims[1:])
            nbytes = math.prod(take) * dtype.itemsize
            if math.prod(take) * 8 > MAX_ARRAY_BYTES:
                raise DataError(f"{where}: {math.prod(take):,} elements (shape {tuple(take)}) "
                                f"take {human_bytes(math.prod(take) * 8)} as float64, more "
                                f"than the {human_bytes(MAX_ARRAY_BYTES)} cap; pass a smaller "
                                "limit")
            blob = f.read(nbytes)
            if len(blob) < nbytes:
                raise DataError(f"{where}: truncated IDX data: shape {tuple(dims)} of "
                                f"{dtype.name} needs {4 + 4 * ndim + need} bytes, the stream "
                                f"ends after {4 + 4 * ndim + len(blob)}")
            if take == dims and f.read(1):
                raise DataError(f"{where}: unexpected trailing bytes after IDX data of shape "
                                f"{tuple(dims)}")
    except FileNotFoundError:
        raise DataError(f"{where}: IDX file not found") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{where}: corrupt or truncated gzip stream: {exc}") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read IDX file: "
                        f"{exc.strerror or str(exc)[:120] or type(exc).__name__}") from None
    data = np.frombuffer(blob, dtype=dtype, count=math.prod(take)).reshape(take)
    return data.astype(dtype.newbyteorder("=")), int(dims[0])


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (uncompressed).

    Parameters
    ----------
    array : numpy.ndarray
        At least 1-D, with a dtype listed in :data:`IDX_DTYPES` (any byte order).

    Returns
    -------
    bytes
    """
    a = np.asarray(array)
    if a.ndim == 0 or a.ndim > _MAX_DIMS:
        raise DataError(f"cannot encode a {a.ndim}-D array as IDX (need 1..{_MAX_DIMS} dims)")
    for code, dt in IDX_DTYPES.items():
        if a.dtype.kind == dt.kind and a.dtype.itemsize == dt.itemsize:
            header = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
            return header + np.ascontiguousarray(a, dtype=dt).tobytes()
    raise DataError(f"dtype {a.dtype} has no IDX type code")


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None
) -> Path:
    """Write an array to an IDX file.

    Parameters
    ----------
    path : path-like
        Destination.
    array : numpy.ndarray
        Data to write (see :func:`encode_idx`).
    compress : bool, optional
        Gzip the file.  Default: when the name ends with ``.gz``.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    p = Path(path)
    blob = encode_idx(array)
    if compress is None:
        compress = p.suffix == ".gz"
    if compress:
        blob = gzip.compress(blob, mtime=0)
    return write_bytes(p, blob)
