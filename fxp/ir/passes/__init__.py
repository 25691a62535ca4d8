"""Graph passes: each module exposes ``apply(graph) -> (graph, changed)``.

See :mod:`fxp.ir.passes.base` for the contract.  :func:`canonicalize` runs
the standard clean-up to a fixpoint: drop Dropout/Identity, fold BatchNorm
into the preceding layer, fuse ReLU/Clip into the preceding layer.
"""

from __future__ import annotations

from fxp.ir.graph import Graph
from fxp.ir.passes import drop_identity, fold_batchnorm, fuse_activation
from fxp.ir.passes.base import Pass, run_to_fixpoint

__all__ = ["CANONICAL_PASSES", "Pass", "canonicalize", "run_to_fixpoint"]

CANONICAL_PASSES: tuple[Pass, ...] = (drop_identity.apply, fold_batchnorm.apply,
                                      fuse_activation.apply)
"""The passes :func:`canonicalize` runs, in order (BN folds before activations fuse)."""


def canonicalize(graph: Graph) -> Graph:
    """Run :data:`CANONICAL_PASSES` to a fixpoint and return the new graph."""
    return run_to_fixpoint(graph, CANONICAL_PASSES)
