"""Binary 3x3 conv (XNOR-popcount) vs fxp's int8 conv on the same shapes, in one process.

Run: ``python benchmarks/bench_binary.py [batch]`` (default 16).

Layer: 64 input channels, 64 output channels, 3x3, stride 1, pad 1, 28x28
maps (so K = 576 bits per output, 9 words of 64 bits).  Compared paths:

* ``int8 loop``  -- :func:`fxp.ops.layers.conv2d_int` ``method="loop"`` (the exact
  ordered accumulation with overflow checks, fxp's reference int8 kernel);
* ``int8 auto``  -- the same call with ``method="auto"`` (here the proven-exact
  float64 im2col/BLAS path);
* ``binary``     -- :func:`fxp.ops.binary.binary_conv2d_int` on pre-packed input
  (a binary network keeps activations packed between layers), then also
  including the packing of a +-1 tensor, and with the BN+sign threshold.

Also printed: the measured binary MAC rate (one XNOR + count per bit) next to
the machine's popcount peak, measured here by a tight ``popcount(a ^ b)``
loop over L1/L2-resident words, and the speed-up formula of XNOR-Net as quoted
in ``../shared/seeds/003_*``: ``S = 64 c N_W / (c N_W + 64)`` (c = 64 channels,
N_W = 9 weights per channel), which assumes one 64-bit binary op per cycle
against one MAC per cycle.
"""

from __future__ import annotations

import os
import sys

import numba
import numpy as np

from fxp.kernels import binary as kb
from fxp.kernels._jit import kernel, prange
from fxp.bench import best_of
from fxp.ops import binary as ob
from fxp.ops import layers


@kernel
def _xor_popcount_sum(a, b, rounds):
    """sum over rounds and words of popcount(a ^ b ^ r): the popcount peak loop.

    XOR with the round number keeps LLVM from hoisting the loop-invariant sum.
    """
    total = np.int64(0)
    n = a.size
    for r in prange(rounds):
        key = np.uint64(r)
        s = np.int64(0)
        for i in range(n):
            s += kb.popcount(a[i] ^ b[i] ^ key)
        total += s
    return total


def popcount_peak(words: int = 4096, rounds: int = 4096) -> tuple[float, float]:
    """(serial, parallel) bit-ops/s of the tight XOR+popcount loop."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**63, words, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, words, dtype=np.uint64)
    out = []
    for impl in (_xor_popcount_sum.serial, _xor_popcount_sum.parallel):
        impl(a, b, 2)
        t = best_of(lambda impl=impl: impl(a, b, rounds), 3)
        out.append(words * rounds * 64 / t)
    return out[0], out[1]


def measure(batch: int = 16, c: int = 64, co: int = 64, hw: int = 28, k: int = 3,
            quick: bool = False) -> dict:
    """Time the int8 and binary paths of one ``k x k`` pad-1 conv layer (seconds per call).

    Also checks, on the very data timed, that the popcount result equals the
    int8 engine on the same +-1 codes (``same``).
    """
    rng = np.random.default_rng(0)
    x_pm1 = np.where(rng.random((batch, c, hw, hw)) < 0.5, -1, 1).astype(np.int64)
    w_pm1 = np.where(rng.random((co, c, k, k)) < 0.5, -1, 1).astype(np.int64)
    x8 = rng.integers(-128, 128, (batch, c, hw, hw))
    w8 = rng.integers(-128, 128, (co, c, k, k))
    pads = (1, 1, 1, 1)
    xp, wp = ob.pack_conv_input(x_pm1), ob.pack_conv_weights(w_pm1)
    thr, dirs = np.zeros(co, np.int64), np.ones(co, np.int64)

    # correctness on this very data: popcount == the int8 engine on +-1 codes (zero padding)
    dot, kmap = ob.binary_conv2d_int(xp, wp, pad_value=0, pads=pads)
    ref, _ = layers.conv2d_int(x_pm1, w_pm1, pads=pads, method="loop")
    same = bool(np.array_equal(dot, ref))

    runs = {
        LOOP: lambda: layers.conv2d_int(x8, w8, pads=pads, method="loop"),
        AUTO: lambda: layers.conv2d_int(x8, w8, pads=pads, method="auto"),
        BINARY: lambda: ob.binary_conv2d_int(xp, wp, pad_value=0, pads=pads),
        "binary, packed input, pad_value=+1":
            lambda: ob.binary_conv2d_int(xp, wp, pad_value=1, pads=pads),
        "binary, pack +-1 input + conv, pad 0":
            lambda: ob.binary_conv2d_int(x_pm1, wp, pad_value=0, pads=pads),
        "binary, packed + BN/sign threshold":
            lambda: ob.binary_threshold(ob.binary_conv2d_int(xp, wp, pad_value=0,
                                                             pads=pads)[0], thr, dirs),
    }
    for fn in runs.values():
        fn()  # compile / warm up
    times = {}
    for _ in range(1 if quick else 3):  # interleaved rounds: drift hits every path alike
        for name, fn in runs.items():
            reps = 1 if quick or "loop" in name else 5 if "auto" in name else 20
            times[name] = min(times.get(name, float("inf")), best_of(fn, reps))
    cnw = c * k * k
    return {"batch": batch, "c": c, "co": co, "hw": hw, "k": k, "same": same,
            "method_auto": layers.conv2d_int(x8, w8, pads=pads, method="auto")[1].method,
            "macs": batch * co * hw * hw * k * k * c, "times": times,
            "formula": 64 * cnw / (cnw + 64), "threads": numba.get_num_threads()}


LOOP = "int8 loop (conv2d_int method='loop')"
AUTO = "int8 auto (conv2d_int method='auto')"
BINARY = "binary, packed input, pad_value=0"


def main(batch: int = 16) -> None:
    m = measure(batch)
    c, k, hw, co = m["c"], m["k"], m["hw"], m["co"]
    times, macs = m["times"], m["macs"]
    t_loop, t_auto, t_bin = times[LOOP], times[AUTO], times[BINARY]
    peak_s, peak_p = popcount_peak()
    print(f"binary conv bench: N={batch}, C={c}, Co={co}, {hw}x{hw}, {k}x{k}, pad 1; "
          f"{macs:.3e} MACs per call; numba threads={numba.get_num_threads()}, "
          f"cpus={os.cpu_count()}, layer={numba.config.THREADING_LAYER}")
    print(f"popcount result == int8 engine on the same +-1 data: {m['same']}; "
          f"method='auto' ran: {m['method_auto']}")
    print(f"{'path':<40}{'ms':>10}{'MAC/s':>12}{'vs loop':>10}{'vs auto':>10}")
    for name, t in times.items():
        print(f"{name:<40}{t * 1e3:>10.2f}{macs / t:>12.3e}{t_loop / t:>10.1f}{t_auto / t:>10.2f}")
    peak = max(peak_s, peak_p)
    print(f"binary MAC rate (1 bit-op = 1 XNOR+count): {macs / t_bin:.3e} bit-ops/s = "
          f"{macs / t_bin / peak:.1%} of the measured popcount peak")
    print(f"popcount peak (tight popcount(a^b) loop): serial {peak_s:.3e} bit-ops/s, "
          f"parallel {peak_p:.3e} bit-ops/s")
    print(f"seed formula S = 64cN_W/(cN_W+64) = {m['formula']:.1f} (c={c}, N_W={k * k}); "
          f"measured: {t_loop / t_bin:.1f}x vs int8 loop, {t_auto / t_bin:.1f}x vs int8 auto")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 16)
