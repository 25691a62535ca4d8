"""Hypothesis strategies for the benchmarks' helpers."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def grids(draw):
    """A weight-memory cost grid: dims tensors of random sizes, widths 2..2+n-1."""
    dims = draw(st.integers(1, 3))
    n = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, 50), min_size=dims, max_size=dims))
    widths = np.arange(2, 2 + n, dtype=float)
    cost = np.zeros((n,) * dims)
    for a, size in enumerate(sizes):
        shape = [1] * dims
        shape[a] = n
        cost = cost + (size * widths).reshape(shape)
    below = draw(st.floats(float(cost.min()) - 5, float(cost.max()) + 5))
    return cost, below
