"""The package surface: light import, curated lazy API, no torch outside fxp.train."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fxp


def test_import_is_light():
    code = ("import sys, fxp; heavy = [m for m in ('numba', 'onnx', 'cvxpy', 'torch', 'scipy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves():
    for name in fxp.__all__:
        assert getattr(fxp, name) is not None


def test_torch_is_imported_only_by_the_train_package():
    root = Path(fxp.__file__).parent
    for path in root.rglob("*.py"):
        if "train" in path.relative_to(root).parts:
            continue
        text = path.read_text()
        assert "import torch" not in text, path
