"""Images/s of the ordered integer loop: scalar kernels vs the vectorized ones, in one process.

Run: ``python benchmarks/bench_loop.py [--batch N] [--rounds R] [model ...]`` (zoo names;
default mnist_cnn vgg7, batch 64, 3 rounds).

For each model and two power-of-two plans built as in ``bench_engine.py`` --
``w8a8 acc32 wrap`` (``ptq_pow2(graph, x, weight_bits=8, act_bits=8, acc_bits=32)``)
and ``w5a7 acc20 saturate`` (5-bit weights, 7-bit activations, 20-bit saturating
accumulators) -- it runs ``run_integer(model, x, method="loop")`` (the forced ordered
loop: every Conv2D/Dense accumulates in the documented order with the overflow mode after
each addition) with

* ``old``: the scalar kernels (:func:`fxp.kernels.conv2d.conv2d_acc`,
  :func:`fxp.kernels.dense.dense_acc`; ``fxp.ops.layers.LOOP_VECTORIZED = False``),
* ``new``: the kernels vectorized across outputs (:mod:`fxp.kernels.conv2d_rows`),

and prints images/s of the whole engine and of its Conv2D/Dense calls alone, with the
new/old ratio.  Rounds alternate old and new (other processes share the cores) and the
medians are printed.  Before timing it checks that both give the same output codes and
overflow/peak statistics.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import numpy as np

from fxp.ops import layers


@contextmanager
def _vectorized(on: bool):
    saved = layers.LOOP_VECTORIZED
    layers.LOOP_VECTORIZED = on
    try:
        yield
    finally:
        layers.LOOP_VECTORIZED = saved


@contextmanager
def _layer_timer(seconds: list[float]):
    """Adds the wall time of every conv2d_int / dense_int call to ``seconds[0]``."""
    saved = layers.conv2d_int, layers.dense_int

    def timed(fn):
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[0] += time.perf_counter() - t0
        return call

    layers.conv2d_int, layers.dense_int = timed(saved[0]), timed(saved[1])
    try:
        yield
    finally:
        layers.conv2d_int, layers.dense_int = saved


def _run(model, x, on: bool):
    """((outputs, per-layer counters), engine seconds, Conv2D/Dense seconds) of one run."""
    from fxp.sim.integer import run_integer

    acc_time, counters = [0.0], {}
    with _vectorized(on), _layer_timer(acc_time):
        t0 = time.perf_counter()
        result = run_integer(model, x, counters, method="loop")
        return (result.output, counters), time.perf_counter() - t0, acc_time[0]


def _same(a, b) -> bool:
    """Equal outputs and per-layer counters (overflow events per channel, peak |acc|)."""
    (out_a, ca), (out_b, cb) = a, b
    if not np.array_equal(out_a, out_b) or ca.keys() != cb.keys():
        return False
    return all(ca[k].acc_overflows == cb[k].acc_overflows
               and ca[k].max_abs_acc == cb[k].max_abs_acc
               and np.array_equal(ca[k].acc_overflow_per_channel, cb[k].acc_overflow_per_channel)
               for k in ca)


def main(models: list[str], batch: int, rounds: int) -> None:
    from fxp import workflow as fw
    from fxp.plan.ptq import ptq_pow2
    from fxp.sim.compile import compile_plan

    print(f"{'model':<10}{'plan':<20}{'part':<12}{'old img/s':>11}{'new img/s':>11}{'new/old':>9}")
    for name in models:
        graph = fw.load_model(name)
        data = fw.load_data("mnist5k", graph, limit=max(256, batch))
        plans = {
            "w8a8 acc32 wrap": ptq_pow2(graph, data.x[:256], weight_bits=8, act_bits=8,
                                        acc_bits=32),
            "w5a7 acc20 sat": ptq_pow2(graph, data.x[:256], weight_bits=5, act_bits=7,
                                       acc_bits=20, acc_overflow="saturate"),
        }
        x = data.x[:batch]
        for label, plan in plans.items():
            model = compile_plan(graph, plan)
            ref, _, _ = _run(model, x[:8], False)  # compile / load both kernels
            new, _, _ = _run(model, x[:8], True)
            if not _same(ref, new):
                raise SystemExit(f"{name} {label}: the vectorized loop differs from the scalar one")
            times, results = {False: [], True: []}, {}
            for _ in range(rounds):
                for on in (False, True):
                    results[on], total, acc = _run(model, x, on)
                    times[on].append((total, acc))
            if not _same(results[False], results[True]):
                raise SystemExit(f"{name} {label}: the vectorized loop differs from the scalar one")
            for part, k in (("engine", 0), ("conv+dense", 1)):
                old = batch / statistics.median(t[k] for t in times[False])
                new = batch / statistics.median(t[k] for t in times[True])
                print(f"{name:<10}{label:<20}{part:<12}{old:>11.1f}{new:>11.1f}{new / old:>8.1f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["mnist_cnn", "vgg7"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    main(args.models, args.batch, args.rounds)
