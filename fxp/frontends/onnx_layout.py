"""ONNX layout handlers: Concat, Flatten, Reshape, Transpose (registered in :data:`HANDLERS`).

One normalized IR form.  Reshapes and transposes are per-sample relabellings
of row-major memory, so each becomes exactly one of

* :class:`~fxp.ir.nodes.Identity` when the per-sample shape does not change
  (``Reshape`` to ``[-1, C, H, W]`` / ``[0, C, H, W]`` / ``[N, C, H, W]``, a
  ``Transpose`` whose ``perm`` is the identity or only swaps size-1 dims);
* :class:`~fxp.ir.nodes.Flatten` when the per-sample target has one dim;
* :class:`~fxp.ir.nodes.Reshape` whose ``shape`` is the per-sample target
  (batch excluded, never empty, never equal to the input's).

Anything that would move data between samples or reorder elements is
refused.  Sizes are computed with Python integers (no int64 wrap-around).
"""

from __future__ import annotations

import math
from typing import Any

from fxp.errors import ModelImportError
from fxp.frontends.onnx_attrs import bool_attr, int_attr, ints_attr
from fxp.frontends.onnx_context import ImportContext
from fxp.frontends.onnx_ops import _io, handles
from fxp.ir import nodes as ir

__all__ = ["emit_reshape"]


def emit_reshape(ctx: ImportContext, node: Any, x: str, per_sample: tuple[int, ...]) -> None:
    """Emit the normalized node taking ``x`` to per-sample shape ``per_sample``."""
    if tuple(per_sample) == tuple(ctx.shapes[x][1:]):
        ctx.emit(ir.Identity(**_io(ctx, node, x)))
    elif len(per_sample) == 1:
        ctx.emit(ir.Flatten(**_io(ctx, node, x)))
    else:
        ctx.emit(ir.Reshape(**_io(ctx, node, x), shape=tuple(per_sample)))


@handles("Concat")
def _concat(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, axis=int_attr())
    if not node.input:
        raise ctx.fail(node, "has no inputs", ModelImportError)
    xs = [ctx.activation(node, i) for i in range(len(node.input))]
    rank = len(ctx.shapes[xs[0]])
    if a["axis"] is None:
        raise ctx.fail(node, "attribute axis is required", ModelImportError)
    axis = a["axis"] + rank if a["axis"] < 0 else a["axis"]
    if not 1 <= axis < rank:
        raise ctx.fail(node, f"axis={a['axis']} is not a non-batch axis for rank {rank}")
    ctx.emit(ir.Concat(**_io(ctx, node, *xs), axis=axis))


@handles("Flatten")
def _flatten(ctx: ImportContext, node: Any) -> None:
    a = ctx.attrs(node, axis=int_attr(1))
    x = ctx.activation(node, 0)
    rank = len(ctx.shapes[x])
    axis = a["axis"] + rank if a["axis"] < 0 else a["axis"]
    if axis != 1:
        raise ctx.fail(node, f"axis={a['axis']} is not supported; only 1 (keep the batch)")
    ctx.emit(ir.Flatten(**_io(ctx, node, x)))


def _target(ctx: ImportContext, node: Any) -> list[int]:
    """The constant target shape (input 1; the opset < 5 ``shape`` attribute is refused)."""
    arr = ctx.const(node, 1, "shape")
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise ctx.fail(node, f"shape {node.input[1]!r} must be a 1-D int64 tensor, got "
                             f"dtype {arr.dtype} and shape {arr.shape}", ModelImportError)
    return [int(v) for v in arr]


@handles("Reshape")
def _reshape(ctx: ImportContext, node: Any) -> None:
    """Batch-preserving reshapes: target ``[-1 | 0 | 1 | declared batch, ...]``."""
    a = ctx.attrs(node, allowzero=bool_attr(0))
    x = ctx.activation(node, 0)
    target = _target(ctx, node)
    src = ctx.shapes[x]
    size = math.prod(src[1:])
    bad = ctx.fail(node, f"target shape {target[:8]}{'...' if len(target) > 8 else ''} for "
                         f"input shape {src} does not keep the batch dimension first; only "
                         f"per-sample reshapes are supported")
    if not target or (a["allowzero"] and 0 in target):
        raise bad
    rest = [src[i + 1] if (d == 0 and i + 1 < len(src)) else d
            for i, d in enumerate(target[1:])]
    if target[0] == -1:
        if -1 in rest or math.prod(rest) != size:
            raise bad
    elif target[0] == 0 or target[0] == ctx.batch or (target[0] == 1 and ctx.batch is None):
        if rest.count(-1) > 1:
            raise bad
        if -1 in rest:
            known = math.prod(d for d in rest if d != -1)
            if known <= 0 or size % known:
                raise bad
            rest[rest.index(-1)] = size // known
    else:
        raise bad
    if not rest or any(d < 1 for d in rest) or math.prod(rest) != size:
        raise bad
    emit_reshape(ctx, node, x, tuple(rest))


@handles("Transpose")
def _transpose(ctx: ImportContext, node: Any) -> None:
    """Layout-preserving transposes only: ``perm`` keeps axis 0 and moves only size-1 dims."""
    a = ctx.attrs(node, perm=ints_attr())
    x = ctx.activation(node, 0)
    src = ctx.shapes[x]
    perm = list(a["perm"]) if a["perm"] is not None else list(range(len(src)))[::-1]
    if sorted(perm) != list(range(len(src))):
        raise ctx.fail(node, f"perm={perm[:8]} is not a permutation of {len(src)} axes",
                       ModelImportError)
    moved = [p for p in perm if p == 0 or src[p] != 1]
    if perm[0] != 0 or moved != sorted(moved):
        raise ctx.fail(node, f"perm={perm} on shape {src} moves data; only layout-preserving "
                             f"transposes (moving size-1 dims) are supported")
    emit_reshape(ctx, node, x, tuple(src[p] for p in perm[1:]))
