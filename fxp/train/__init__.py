"""Retraining with fxp's own quantizers (the ``train`` extra; needs PyTorch).

Nothing outside this package imports torch, and importing :mod:`fxp.train`
itself does not either: the submodules do, through :func:`require_torch`,
which turns a missing torch into one clear
:class:`~fxp.errors.MissingDependencyError`.

* :mod:`fxp.train.fake_quant` -- :class:`~fxp.train.fake_quant.FxpNet`, a torch
  module built from an fxp :class:`~fxp.ir.graph.Graph` and a power-of-two
  :class:`~fxp.plan.plan.Plan` whose fake-quantized forward pass is bit-exact
  with fxp's integer engine (straight-through estimators for the backward pass);
* :mod:`fxp.train.qat` -- quantization-aware training (int8 from scratch,
  fine-tuning, whole / conv-only / dense-only, seed 000);
* :mod:`fxp.train.inq` -- Incremental Network Quantization (seed 002);
* :mod:`fxp.train.ternary` -- TWN, Hwang & Sung and BinaryConnect training (seed 003);
* :mod:`fxp.train.cluster` -- clustered fine-tuning with shared centroids (seed 004);
* :mod:`fxp.train.project` -- the weight projections these two train through;
* :mod:`fxp.train.export` -- ONNX + Plan JSON export and its verification
  against ``fxp.workflow.run_simulation``;
* :mod:`fxp.train.loop` -- the seeded, resumable training loop (checkpoint per epoch).

Entry point for the CLI: :func:`fxp.workflow.train_model` (``fxp train``).
"""

from __future__ import annotations

from fxp.errors import MissingDependencyError

__all__ = ["TORCH_HINT", "require_torch"]

TORCH_HINT = "pip install torch==2.13.0 before the train extra (pip install -e '.[train]')"


def require_torch():
    """Import and return ``torch``, or raise :class:`MissingDependencyError` with the fix."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(f"fxp train needs PyTorch, which is not installed: "
                                     f"{TORCH_HINT}") from None
    return torch
