"""Shift-add layers (power-of-two weights) vs fxp's multiply kernels on one layer, in one process.

Run: ``python benchmarks/bench_shift.py [batch]`` (default 16).

Layers (weights: the ``pow2`` quantizer at 4 bits of Gaussian weights, stored in
a 16-bit format; ``|x|`` < 2**7 activations):

* ``conv 32->64 3x3 on 13x13`` (mnist_cnn's conv2 shape),
* ``conv 64->64 3x3 pad 1 on 28x28``,
* ``dense 1600->128``.

For each layer and two accumulators -- 48-bit wrap (wide: every channel is
proven not to overflow, so the shift-add kernel runs its unchecked loop) and
20-bit saturate (narrow: the checked loop, overflow applied after every
addition) -- it prints images/s of

* ``multiply loop``: :func:`fxp.ops.layers.conv2d_int` / ``dense_int`` with
  ``method="loop"`` (fxp's ordered integer multiply-accumulate kernel),
* ``multiply auto``: the same with ``method="auto"`` (the proven-exact float
  im2col/BLAS path where the bound allows, else the loop),
* ``shift-add``: :func:`fxp.ops.shift.conv2d_shift_int` / ``dense_shift_int``,

and the shift-add rate as a ratio to each multiply rate (> 1: shift-add is faster).
All three give the same integers (checked here before timing).
"""

from __future__ import annotations

import sys

import numpy as np

from fxp.bench import rate
from fxp.core.format import QFormat
from fxp.ops import layers
from fxp.ops.fixed import quantize
from fxp.ops.shift import conv2d_shift_int, dense_shift_int, encode_shift
from fxp.quant.pow2 import pow2


def _pow2_codes(shape, rng) -> np.ndarray:
    w = rng.normal(0, 0.1, shape)
    q = pow2(w, 4)
    m = float(np.abs(q.values).max())
    fmt = QFormat(16, int(np.floor(np.log2(m))) + 2)
    codes, _ = quantize(q.values, fmt, "half_even", "saturate")
    return codes


def main(batch: int = 16) -> None:
    rng = np.random.default_rng(0)
    cases = [
        ("conv 32->64 3x3 13x13", (batch, 32, 13, 13), (64, 32, 3, 3), (0, 0, 0, 0)),
        ("conv 64->64 3x3 p1 28x28", (batch, 64, 28, 28), (64, 64, 3, 3), (1, 1, 1, 1)),
        ("dense 1600->128", (batch, 1600), (128, 1600), None),
    ]
    print(f"batch {batch}")
    print(f"{'layer':<26}{'accumulator':<16}{'path':<16}{'images/s':>10}{'zeros':>7}"
          f"{'shift vs loop':>15}{'shift vs auto':>15}")
    for label, xshape, wshape, pads in cases:
        x = rng.integers(-127, 128, xshape)
        w = _pow2_codes(wshape, rng)
        sign, k = encode_shift(w)
        bias = rng.integers(-1000, 1000, wshape[0])
        zeros = float(np.mean(sign == 0))
        for acc_bits, mode in ((48, "wrap"), (20, "saturate")):
            acc = dict(acc_bits=acc_bits, acc_overflow=mode, x_range=QFormat.integer(8))
            if pads is None:
                def mult(method, acc=acc):
                    return layers.dense_int(x, w, bias, method=method, **acc)

                def shift(acc=acc):
                    return dense_shift_int(x, sign, k, bias, **acc)
            else:
                def mult(method, acc=acc, pads=pads):
                    return layers.conv2d_int(x, w, bias, pads=pads, method=method, **acc)

                def shift(acc=acc, pads=pads):
                    return conv2d_shift_int(x, sign, k, bias, pads=pads, **acc)
            ref, ref_stats = mult("loop")
            got, got_stats = shift()
            assert np.array_equal(ref, got) and ref_stats.n_overflow == got_stats.n_overflow
            auto, auto_stats = mult("auto")
            assert np.array_equal(ref, auto)
            r_loop = rate(lambda: mult("loop"), batch)
            r_auto = rate(lambda: mult("auto"), batch)
            r_shift = rate(shift, batch)
            name = f"{acc_bits}-bit {mode}"
            print(f"{label:<26}{name:<16}{'multiply loop':<16}{r_loop:>10.1f}")
            print(f"{label:<26}{name:<16}{'multiply ' + auto_stats.method:<16}{r_auto:>10.1f}")
            print(f"{label:<26}{name:<16}{'shift-add':<16}{r_shift:>10.1f}{zeros:>7.1%}"
                  f"{r_shift / r_loop:>15.2f}{r_shift / r_auto:>15.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 16)
