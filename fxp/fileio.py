"""Writing output files: every writer goes through here, so a bad ``--out`` is one error.

Files are written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written plan, header
or report behind.  Any :class:`OSError` (unwritable folder, missing drive, a
name too long, a path that is a folder) becomes an :class:`~fxp.errors.OutputError`
naming the path.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_text(d / "sub" / "a.txt", "hi\\n").read_text()
'hi\\n'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from fxp.errors import OutputError

__all__ = ["ensure_dir", "write_bytes", "write_text", "write_with"]


def _describe(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def ensure_dir(path: str | Path) -> Path:
    """Create folder ``path`` (and parents); :class:`OutputError` if it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {str(path)[:300]!r}: "
                          f"{_describe(exc)}") from None
    if not path.is_dir():
        raise OutputError(f"output folder {str(path)[:300]!r} is not a folder")
    return path


def write_with(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Write ``path`` atomically: ``writer(tmp)`` fills a temporary file, then it is renamed.

    Parameters
    ----------
    path : str or Path
        Destination file; its parent folders are created.
    writer : callable
        Called with the temporary file's path; it must write the whole file there.
    """
    path = Path(path)
    ensure_dir(path.parent)
    tmp = None
    try:
        if path.is_dir():
            raise OutputError(f"output file {str(path)[:300]!r} is a folder")
        fd, name = tempfile.mkstemp(prefix=".fxp-", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        writer(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)[:300]!r}: {_describe(exc)}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    return write_with(path, lambda tmp: tmp.write_bytes(data))
