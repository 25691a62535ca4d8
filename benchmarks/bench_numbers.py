"""Throughput of quantize / cast on 10**7 values, next to plain numpy in the same process.

Run: ``python benchmarks/bench_numbers.py [n]``.  Prints values/s and the ratio
fxp / numpy (> 1 means fxp is faster).  The numpy baseline is ``rint`` + ``clip``
(round-half-even, saturate), i.e. the cheapest float emulation, which is not
exact for every input (it rounds the scaled float); fxp's kernel is exact.
"""

from __future__ import annotations

import sys

import numpy as np

from fxp.core.format import QFormat
from fxp.bench import best_of
from fxp.ops import fixed


def main(n: int = 10_000_000) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n) * 2.0
    fmt = QFormat(8, 3)
    scale = 2.0**fmt.frac_bits

    def numpy_quantize():
        return np.clip(np.rint(x * scale), fmt.min_code, fmt.max_code).astype(np.int64)

    def fxp_quantize():
        return fixed.quantize(x, fmt, "half_even", "saturate")

    codes = numpy_quantize()
    assert np.array_equal(fxp_quantize()[0], codes)  # same answer on this data
    src, dst = QFormat(16, 8), QFormat(8, 3)
    wide = rng.integers(-(2**15), 2**15, n)

    def numpy_cast():
        return np.clip(np.rint(wide / 2.0 ** (src.frac_bits - dst.frac_bits)), dst.min_code, dst.max_code).astype(np.int64)

    def fxp_cast():
        return fixed.cast(wide, src, dst, "half_even", "saturate")

    assert np.array_equal(fxp_cast()[0], numpy_cast())
    print(f"{'operation':<34}{'values/s':>14}{'vs numpy':>10}")
    for name, fast, base in [("quantize float->fixed<8,3>", fxp_quantize, numpy_quantize),
                             ("cast fixed<16,8>->fixed<8,3>", fxp_cast, numpy_cast)]:
        t_base = best_of(base)
        t_fast = best_of(fast)
        print(f"{'numpy rint+clip: ' + name:<34}{n / t_base:>14.3e}{1.0:>10.2f}")
        print(f"{'fxp: ' + name:<34}{n / t_fast:>14.3e}{t_base / t_fast:>10.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)
