"""Float reference MaxPool: one elementwise maximum per kernel offset against the numpy
reduction over the strided window view it replaced, same process, best of 5.

Run: ``python benchmarks/bench_float_ref.py``.  Also checks the two bitwise equal.
"""

from __future__ import annotations

import numpy as np

from fxp.bench import best_of
from fxp.ir.nodes import MaxPool2D
from fxp.sim.float_ref import _maxpool, _windows


def main() -> None:
    x = np.random.default_rng(0).standard_normal((500, 32, 26, 26)).astype(np.float32)
    node = MaxPool2D(name="p", inputs=("x",), outputs=("y",), kernel=(2, 2), strides=(2, 2))
    old = _windows(x, (2, 2), (2, 2), (1, 1)).max(axis=(4, 5))
    assert np.array_equal(_maxpool(node, x).view(np.uint32), old.view(np.uint32))
    t_old = best_of(lambda: _windows(x, (2, 2), (2, 2), (1, 1)).max(axis=(4, 5)))
    t_new = best_of(lambda: _maxpool(node, x))
    print(f"MaxPool 2x2 on 500x32x26x26: window max {t_old * 1e3:.1f} ms, per-offset maximum "
          f"{t_new * 1e3:.1f} ms, ratio {t_old / t_new:.1f}x")


if __name__ == "__main__":
    main()
