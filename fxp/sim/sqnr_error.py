"""The sampling error of a measured SQNR.

A measured output SQNR is a ratio of two sample means::

    sqnr_db = 10 log10( sum_i s_i / sum_i n_i ),  s_i = |f_i|^2,  n_i = |q_i - f_i|^2

over the ``N`` samples ``i`` (``f_i`` the float logits of sample ``i``, ``q_i`` the
fixed-point ones).  Measured on another ``N`` samples of the same data it comes out
different.  Its standard error, by the delta method for the log of a ratio of means::

    se_dB = (10 / ln 10) * std_i( s_i / mean(s) - n_i / mean(n) ) / sqrt(N)

(``std`` with ``N - 1`` degrees of freedom).  It assumes the samples are independent
draws; samples stored in an order (by class or writer) and cut into contiguous ranges
are not, and the ranges differ by more (:mod:`fxp.opt.splits`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["sample_powers", "sqnr_standard_error_db"]

_DB = 10.0 / math.log(10.0)


def sample_powers(reference: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(s, n)`` float64 ``[N]``: per sample (first axis) the signal power
    ``sum(reference**2)`` and the noise power ``sum((fixed - reference)**2)``."""
    f = np.asarray(reference, np.float64).reshape(len(reference), -1)
    q = np.asarray(fixed, np.float64).reshape(len(fixed), -1)
    return (f * f).sum(axis=1), ((q - f) ** 2).sum(axis=1)


def sqnr_standard_error_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """Standard error (dB) of ``10 log10(sum(signal) / sum(noise))`` over independent
    samples (module docstring); ``nan`` with fewer than two samples or a zero sum."""
    s = np.asarray(signal, np.float64)
    n = np.asarray(noise, np.float64)
    if s.shape != n.shape or s.ndim != 1:
        raise ValueError(f"signal and noise must be 1-D of one length, got {s.shape} and "
                         f"{n.shape}")
    if len(s) < 2:
        return math.nan
    ms, mn = s.mean(), n.mean()
    if not (ms > 0 and mn > 0):
        return math.nan
    z = s / ms - n / mn
    return _DB * float(np.std(z, ddof=1)) / math.sqrt(len(s))
