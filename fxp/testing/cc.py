"""Build a C source into a shared library at test time and load it with ``ctypes``.

>>> find_c_compiler() is None or isinstance(find_c_compiler(), str)
True
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fxp.errors import MissingDependencyError

__all__ = ["compile_shared", "find_c_compiler"]

DEFAULT_FLAGS = ("-O2", "-std=c99", "-Wall", "-Werror=implicit-function-declaration")


def find_c_compiler() -> str | None:
    """The C compiler to use: ``$CC`` if set and found, else ``cc``, ``gcc``, ``clang``; or None."""
    if sys.platform.startswith("win"):
        return None  # ctypes + MSVC needs a different driver; not supported here
    candidates = [os.environ["CC"]] if os.environ.get("CC") else []
    candidates += ["cc", "gcc", "clang"]
    for name in candidates:
        path = shutil.which(name.split()[0])
        if path:
            return path
    return None


def compile_shared(source: str | Path, out_dir: str | Path, *, name: str = "kernel",
                   flags=DEFAULT_FLAGS, compiler: str | None = None) -> ctypes.CDLL:
    """Compile C ``source`` (text or a ``.c`` path) into ``out_dir`` and load it.

    The library file name carries a hash of the source and flags, so distinct
    variants never collide.  Raises :class:`MissingDependencyError` when no
    compiler is found and ``RuntimeError`` (with the compiler's message) when
    compilation fails.
    """
    cc = compiler or find_c_compiler()
    if cc is None:
        raise MissingDependencyError("no C compiler found: install gcc or clang, or set $CC")
    text = Path(source).read_text() if isinstance(source, Path) else str(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1((text + "\0" + " ".join(flags)).encode()).hexdigest()[:12]
    src = out / f"{name}_{digest}.c"
    lib = out / f"lib{name}_{digest}.so"
    if not lib.exists():
        src.write_text(text)
        cmd = [cc, *flags, "-shared", "-fPIC", "-o", str(lib), str(src)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"C compilation failed ({' '.join(cmd)}):\n{res.stderr}")
    return ctypes.CDLL(str(lib))
