"""The reference model zoo: ONNX files under the repository's ``models/``.

``models/<name>/<name>.onnx`` for each zoo name (``mnist_cnn``, ``lenet5``,
``vgg7``, ``fashion_cnn``); ``$FXP_MODELS_DIR`` overrides the folder.

>>> "mnist_cnn" in ZOO_NAMES
True
"""

from __future__ import annotations

import os
from pathlib import Path

from fxp.errors import ModelImportError

__all__ = ["ZOO_NAMES", "available_models", "models_dir", "resolve_model"]

#: Models the repository ships (see ``models/README.md``).
ZOO_NAMES: tuple[str, ...] = ("mnist_cnn", "lenet5", "vgg7", "fashion_cnn", "resnet_small",
                              "mobilenet_small")


def models_dir() -> Path:
    """``$FXP_MODELS_DIR`` when set, else ``<repo>/models``."""
    env = os.environ.get("FXP_MODELS_DIR")
    if env:
        return Path(env)
    import fxp

    return Path(fxp.__file__).resolve().parents[1] / "models"


def available_models() -> list[str]:
    """Names ``n`` with a file ``models/n/n.onnx``, sorted."""
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / f"{d.name}.onnx").is_file())


def resolve_model(spec: str | os.PathLike[str]) -> Path:
    """Turn a model path or zoo name into the path of an existing ONNX file.

    Parameters
    ----------
    spec : str or path-like
        An existing file path, or a zoo name such as ``"mnist_cnn"``.

    Returns
    -------
    pathlib.Path
        Absolute path of the file.

    Raises
    ------
    ModelImportError
        Neither an existing file nor a zoo name with its file present; the
        message lists the zoo names.
    """
    s = os.fspath(spec)
    p = Path(s).expanduser()
    if p.is_file():
        return p.resolve()
    if p.is_dir() and (p / f"{p.name}.onnx").is_file():
        return (p / f"{p.name}.onnx").resolve()
    names = sorted(set(ZOO_NAMES) | set(available_models()))
    candidate = models_dir() / s / f"{s}.onnx"
    if s in names and candidate.is_file():
        return candidate.resolve()
    if s in names:
        raise ModelImportError(
            f"zoo model {s!r} is known but {candidate} is missing; train it with "
            f"'python models/train.py {s}' or set FXP_MODELS_DIR"
        )
    looks_like_path = os.sep in s or "/" in s or s.endswith(".onnx")
    what = "model file not found" if looks_like_path else "unknown model"
    raise ModelImportError(
        f"{what}: {s!r}; give a path to an .onnx file or a zoo name: {', '.join(names)}"
    )
