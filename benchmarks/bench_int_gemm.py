"""Integer GEMMs against the float32 BLAS GEMM of the proven path, at mnist_cnn's conv2 shape
(issue 17): why a plain numba loop is not enough and what the VNNI microkernel gives.

Run: ``python benchmarks/bench_int_gemm.py [--images 128] [--rounds 5]``.

``C[m, n] = sum_k A[m, k] * B[k, n]`` with ``A`` uint8 activation codes (im2col rows of
``images`` 13x13x32 inputs: M = images*121, K = 288) and ``B`` int8 weights (N = 64):

* ``sgemm``: float32 ``numpy.matmul`` on one BLAS thread (exact: every partial sum < 2**24);
* ``dot u8/s8``: a numba loop over ``k`` per output in int32, which LLVM vectorizes with
  ``vpdpwssd`` where the CPU has AVX-512 VNNI (the script counts it in the assembly);
* ``dot int16``: the same on int16 copies of the codes;
* ``vnni``: :func:`fxp.kernels.vnni.gemm_u8s8` (serial build), the engine's register-blocked
  ``vpdpbusd`` microkernel, on CPUs with AVX-512 VNNI (the row is left out elsewhere).

Every result is checked equal to the others; the medians of ``rounds`` timings are printed
with the ratio to ``sgemm`` (same process, interleaved).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np


@numba.njit(cache=False)
def dot_gemm(a, bt, c):
    """``c[i, j] = sum_k int32(a[i, k]) * int32(bt[j, k])``."""
    m, k_all = a.shape
    for i in range(m):
        ai = a[i]
        for j in range(bt.shape[0]):
            bj = bt[j]
            s = np.int32(0)
            for k in range(k_all):
                s += np.int32(ai[k]) * np.int32(bj[k])
            c[i, j] = s


def main(argv=None) -> None:
    from threadpoolctl import threadpool_limits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    m, k, n = args.images * 121, 288, 64
    a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    b = rng.integers(-127, 128, (k, n)).astype(np.int8)
    af, bf = a.astype(np.float32), b.astype(np.float32)
    bt, a16, bt16 = np.ascontiguousarray(b.T), a.astype(np.int16), np.ascontiguousarray(b.T, np.int16)
    outs = {"sgemm": np.empty((m, n), np.float32), "dot u8/s8": np.empty((m, n), np.int32),
            "dot int16": np.empty((m, n), np.int32)}
    fns = {"sgemm": lambda: np.matmul(af, bf, out=outs["sgemm"]),
           "dot u8/s8": lambda: dot_gemm(a, bt, outs["dot u8/s8"]),
           "dot int16": lambda: dot_gemm(a16, bt16, outs["dot int16"])}
    from fxp.kernels import vnni

    if vnni.available():
        bp = vnni.pack_weights(b, vnni.panel_width(n))
        ap = np.zeros((-(-m // vnni.MR) * vnni.MR, 4 * bp.shape[1]), np.uint8)
        ap[:m, :k] = a
        cv = np.empty((ap.shape[0], bp.shape[0] * bp.shape[2]), np.int32)
        outs["vnni"] = cv[:m, :n]
        fns["vnni"] = lambda: vnni.gemm_u8s8(0, ap, bp, cv)
    times = {name: [] for name in fns}
    with threadpool_limits(1, "blas"):
        for fn in fns.values():
            fn()
        for _ in range(args.rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    ref = outs["sgemm"].astype(np.int64)
    assert all(np.array_equal(o.astype(np.int64), ref) for o in outs.values())
    asm = "".join(dot_gemm.inspect_asm(sig) for sig in dot_gemm.signatures)
    print(f"M={m} K={k} N={n}; vpdpwssd in the loop's assembly: {asm.count('vpdpwssd')}, "
          f"vpdpbusd: {asm.count('vpdpbusd')}")
    base = statistics.median(times["sgemm"])
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:<10} {med * 1e3:8.2f} ms  {m * k * n / med / 1e9:6.1f} GMAC/s  "
              f"{med / base:5.2f}x the sgemm time")


if __name__ == "__main__":
    main()
