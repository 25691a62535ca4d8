"""TFLite Micro's arena memory planner, in plain Python: buffer lifetimes in, offsets out.

TFLM places every non-persistent buffer (activation tensors and kernels'
scratch buffers) in the *head* of its tensor arena with
``GreedyMemoryPlanner`` (``tensorflow/lite/micro/memory_planner/
greedy_memory_planner.cc``); ``MicroAllocator::CommitStaticMemoryPlan``
(``micro_allocator.cc``) then reserves exactly the planner's
``GetMaximumMemorySize()`` bytes for the head.  This module reproduces both
steps byte for byte:

1. **Buffers** (``micro_allocation_info.cc``, ``CreatePlan``).  A tensor
   needs a buffer when it has no constant data, is not a variable and has a
   nonzero size: ``element count x bytes per element`` (int8 1, int16 2,
   int32/float32 4, int64 8), rounded up to ``MicroArenaBufferAlignment() =
   16`` bytes.  Buffers are added in tensor-index order, then one per scratch
   buffer request in the order the kernels' ``Prepare`` made them.
2. **Lifetimes** (``AllocationInfoBuilder::MarkAllocationLifetimes``), in
   allocation scopes: the subgraph inputs are created and last used at scope
   0; operator ``i`` runs in scope ``i + 1``, where its outputs are created and
   its inputs and outputs are used; a scratch buffer of operator ``i`` lives
   in scope ``i + 1`` only; the subgraph outputs stay live until the last
   scope (the number of operators).  ``first`` and ``last`` are inclusive.
3. **Greedy placement** (``CalculateOffsetsIfNeeded``).  Buffers are taken
   largest first; equal sizes in *decreasing* order of their index (TFLM
   fills its sort array from the end, then runs a stable bubble sort).  Each
   buffer goes at the lowest offset, scanning the already placed buffers
   that overlap it in time in increasing order of offset, whose gap before
   the next such buffer holds it (else after the last one).  The head size
   is ``max(offset + size)``.

Offline-planned offsets (``OfflineMemoryAllocation`` metadata) are not
modelled; the model readers say so when a file has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ALIGNMENT", "ArenaPlan", "Buffer", "align_up", "greedy_offsets", "max_live_bytes",
           "plan_arena"]

ALIGNMENT = 16
"""``MicroArenaBufferAlignment()`` of TFLM (``micro_arena_constants.h``), in bytes."""


def align_up(nbytes: int, alignment: int = ALIGNMENT) -> int:
    """``nbytes`` rounded up to a multiple of ``alignment`` (TFLM ``AlignSizeUp``), in bytes."""
    return -(-int(nbytes) // alignment) * alignment


@dataclass(frozen=True)
class Buffer:
    """One non-persistent buffer of the arena head.

    Attributes
    ----------
    name : str
        Tensor name, or ``"scratch <op> #k"`` for a kernel's scratch buffer.
    size : int
        Bytes reserved (already rounded up to :data:`ALIGNMENT`).
    first, last : int
        Allocation scopes of creation and last use, inclusive (see the module
        docstring).
    """

    name: str
    size: int
    first: int
    last: int


@dataclass(frozen=True)
class ArenaPlan:
    """The planner's result.

    Attributes
    ----------
    buffers : tuple of Buffer
        In TFLM's ``AddBuffer`` order.
    offsets : tuple of int
        Byte offset of each buffer from the start of the arena head.
    head_bytes : int
        ``max(offset + size)``: the head TFLM reserves (``GetMaximumMemorySize``), bytes.
    """

    buffers: tuple[Buffer, ...]
    offsets: tuple[int, ...]
    head_bytes: int


def greedy_offsets(sizes: Sequence[int], first: Sequence[int], last: Sequence[int]
                   ) -> list[int]:
    """Offsets (bytes) TFLM's ``GreedyMemoryPlanner`` gives buffers ``i`` (all planned online).

    Parameters
    ----------
    sizes : sequence of int
        Buffer sizes in bytes, in ``AddBuffer`` order (TFLM aligns them
        before adding; the planner itself does not).
    first, last : sequence of int
        Inclusive lifetime of each buffer; buffers ``a`` and ``b`` overlap in
        time unless ``first[a] > last[b]`` or ``first[b] > last[a]``.

    Returns
    -------
    list of int
        One offset per buffer.

    Examples
    --------
    TFLM's ``TestGreedyMedium`` (``greedy_memory_planner_test.cc``):

    >>> greedy_offsets([10, 20, 30, 40, 50], [0, 1, 2, 3, 0], [1, 2, 3, 4, 1])
    [50, 70, 40, 0, 0]
    """
    n = len(sizes)
    if not len(first) == len(last) == n:
        raise ValueError(f"sizes, first and last must have one entry per buffer, got "
                         f"{n}, {len(first)}, {len(last)}")
    order = sorted(range(n), key=lambda i: (-sizes[i], -i))
    offsets = [0] * n
    placed: list[int] = []  # buffer ids in increasing offset (ties: placement order)
    for i in order:
        candidate = 0
        for j in placed:  # NextSimultaneouslyActiveBuffer, in offset order
            if first[j] > last[i] or first[i] > last[j]:
                continue
            if offsets[j] - candidate >= sizes[i]:
                break  # the gap before buffer j holds buffer i
            candidate = max(candidate, offsets[j] + sizes[j])
        offsets[i] = candidate
        k = 0
        while k < len(placed) and offsets[placed[k]] <= candidate:
            k += 1
        placed.insert(k, i)
    return offsets


def plan_arena(buffers: Sequence[Buffer]) -> ArenaPlan:
    """Place ``buffers`` (in ``AddBuffer`` order) with :func:`greedy_offsets`."""
    buffers = tuple(buffers)
    offsets = greedy_offsets([b.size for b in buffers], [b.first for b in buffers],
                             [b.last for b in buffers])
    head = max((o + b.size for o, b in zip(offsets, buffers)), default=0)
    return ArenaPlan(buffers, tuple(offsets), head)


def max_live_bytes(buffers: Sequence[Buffer]) -> int:
    """Largest total size of the buffers live in one scope (bytes): a lower bound of any
    placement's head, independent of the planner."""
    scopes = {s for b in buffers for s in (b.first, b.last)}
    return max((sum(b.size for b in buffers if b.first <= s <= b.last) for s in scopes),
               default=0)
