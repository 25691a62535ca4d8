"""TFLM's greedy arena planner in Python (fxp.report.arena): TFLM's own test tables and
properties on random lifetimes.

The differential test against TFLite Micro itself (random graphs and the
committed models, head size equal to the interpreter's) is in ``test_mcu.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxp.report.arena import (
    ALIGNMENT,
    Buffer,
    align_up,
    greedy_offsets,
    max_live_bytes,
    plan_arena,
)

# ----------------------------------------------------------------- TFLM's own test vectors
# tensorflow/lite/micro/memory_planner/greedy_memory_planner_test.cc: (size, first, last)
# per AddBuffer call, the offsets TFLM expects (None: not stated) and GetMaximumMemorySize.
TFLM_CASES = {
    "TestGreedyBasics": ([(10, 0, 1), (20, 2, 3)], [0, 0], 20),
    "TestGreedyMedium": ([(10, 0, 1), (20, 1, 2), (30, 2, 3), (40, 3, 4), (50, 0, 1)],
                         [50, 70, 40, 0, 0], 90),
    "TestOverlapCase": ([(100, 0, 1), (50, 2, 3), (20, 1, 2)], None, 120),
}


@pytest.mark.parametrize("case", sorted(TFLM_CASES))
def test_tflm_planner_test_vectors(case):
    """Offsets and head size equal those TFLM's own planner tests expect."""
    reqs, want_offsets, want_head = TFLM_CASES[case]
    plan = plan_arena([Buffer(f"b{i}", *r) for i, r in enumerate(reqs)])
    if want_offsets is not None:
        assert list(plan.offsets) == want_offsets
    assert plan.head_bytes == want_head


def test_person_detection_lifetimes():
    """TFLM's TestPersonDetectionModel: no overlap and a head below the 241,027-byte sum."""
    reqs = [(9216, 0, 29), (3, 28, 29), (256, 27, 28), (2304, 26, 27), (2304, 25, 26),
            (2304, 24, 25), (1152, 23, 24)] + [(4608, t, t + 1) for t in range(22, 11, -1)] \
        + [(2304, 11, 12), (9216, 10, 11), (9216, 9, 10), (9216, 8, 9), (4608, 7, 8),
           (18432, 6, 7), (18432, 5, 6), (18432, 4, 5), (9216, 3, 4), (36864, 2, 3),
           (18432, 1, 2), (18432, 0, 1)]
    bufs = [Buffer(f"b{i}", *r) for i, r in enumerate(reqs)]
    assert sum(b.size for b in bufs) == 241027
    plan = plan_arena(bufs)
    _assert_no_overlap(bufs, plan.offsets)
    assert max_live_bytes(bufs) <= plan.head_bytes < 241027


def test_equal_sizes_are_placed_highest_index_first():
    """Ties go in decreasing AddBuffer order (TFLM fills its sort array from the end, then
    sorts stably): of two equal, simultaneously live buffers the later one gets offset 0."""
    assert greedy_offsets([16, 16], [0, 0], [1, 1]) == [16, 0]
    assert greedy_offsets([32, 16, 16], [0, 0, 0], [0, 0, 0]) == [0, 48, 32]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one entry per buffer, got 2, 1, 2"):
        greedy_offsets([16, 16], [0], [1, 1])


def test_empty_plan():
    assert plan_arena([]).head_bytes == 0
    assert max_live_bytes([]) == 0


@pytest.mark.parametrize(("n", "want"), [(0, 0), (1, 16), (16, 16), (17, 32), (784, 784),
                                         (21632, 21632), (1026, 1040)])
def test_align_up(n, want):
    assert align_up(n) == want


# ----------------------------------------------------------------- properties
@st.composite
def lifetimes(draw, aligned: bool = True):
    """Buffers with random sizes (multiples of 16 bytes when ``aligned``) and lifetimes."""
    n = draw(st.integers(1, 24))
    out = []
    for i in range(n):
        first = draw(st.integers(0, 12))
        last = draw(st.integers(first, first + draw(st.integers(0, 6))))
        size = draw(st.integers(1, 40)) * ALIGNMENT if aligned else draw(st.integers(1, 700))
        out.append(Buffer(f"b{i}", size, first, last))
    return out


def _assert_no_overlap(bufs, offsets):
    for i, a in enumerate(bufs):
        for j in range(i + 1, len(bufs)):
            b = bufs[j]
            if a.first > b.last or b.first > a.last:
                continue
            assert offsets[i] + a.size <= offsets[j] or offsets[j] + b.size <= offsets[i], \
                (a, offsets[i], b, offsets[j])


def _live_at(bufs, t):
    return sum(b.size for b in bufs if b.first <= t <= b.last)


@settings(max_examples=400)
@given(lifetimes(aligned=False))
def test_no_two_live_buffers_overlap(bufs):
    """Buffers alive in a common scope occupy disjoint byte ranges; offsets are >= 0 and the
    head is the end of the highest buffer."""
    plan = plan_arena(bufs)
    _assert_no_overlap(bufs, plan.offsets)
    assert min(plan.offsets) >= 0
    assert plan.head_bytes == max(o + b.size for o, b in zip(plan.offsets, bufs))


@settings(max_examples=400)
@given(lifetimes(aligned=True))
def test_offsets_aligned_and_head_bounded(bufs):
    """With sizes rounded to 16 bytes (as TFLM adds them), every offset is 16-byte aligned;
    the head is at least the largest total of simultaneously live bytes (computed here
    scope by scope) and at most the sum of all sizes."""
    plan = plan_arena(bufs)
    assert all(o % ALIGNMENT == 0 for o in plan.offsets)
    live = max(_live_at(bufs, t) for t in range(20))
    assert max_live_bytes(bufs) == live
    assert live <= plan.head_bytes <= sum(b.size for b in bufs)


@given(lifetimes(aligned=True))
def test_disjoint_lifetimes_share_offset_zero(bufs):
    """Buffers that live in pairwise disjoint scopes all go at offset 0 (head = largest)."""
    chain = [Buffer(b.name, b.size, 2 * i, 2 * i) for i, b in enumerate(bufs)]
    plan = plan_arena(chain)
    assert set(plan.offsets) == {0}
    assert plan.head_bytes == max(b.size for b in chain)
