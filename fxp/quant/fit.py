"""Fit a weight histogram to standard distributions by SSE and KL (``shared/seeds/001``, Tables 2-3).

Tonin & de Queiroz (section 2, eq. 1-2) compare each model's weight histogram
with Alpha, Cauchy, Exponential, Logistic, Gamma, Laplace, Gaussian and Uniform
densities by the sum of squared errors and the Kullback-Leibler divergence::

    SSE = sum_i (P(i) - Q(i))**2          KLD(P || Q) = sum_i P(i) log(P(i) / Q(i))

Here ``P(i)`` is the fraction of weights in bin ``i`` of ``bins`` equal bins over
``[min w, max w]`` and ``Q(i)`` the fitted distribution's probability of that bin
(CDF differences, renormalised to the data range so both sum to 1); ``Q`` is
floored at ``1e-12`` inside the log (natural log, nats).  Fits are scipy's
maximum likelihood (``scipy.stats.<dist>.fit``) except:

* ``gamma`` and ``expon`` have support ``x >= 0``: fitted to ``|w|`` with
  ``loc = 0`` and compared as the symmetric (folded) density ``f(|x|)/2`` --
  the folded exponential is a zero-mean Laplace (and gamma with shape 1 too),
  so on Laplacian weights these three rank together;
* ``alpha`` is ``scipy.stats.alpha`` (Salvia's alpha distribution, the paper's
  ref. [21]), fitted to ``w`` with free ``loc``;
* ``levy_stable`` (the alpha-*stable* family, often what "alpha" means for
  heavy-tailed weights) uses McCulloch's quantile estimator
  (``levy_stable._fitstart``) on a ``subsample`` of at most 5000 weights (seeded):
  scipy's maximum likelihood for it takes minutes.

A failed fit is reported with ``nan`` scores and ranked last.

>>> rows = fit_distributions(np.random.default_rng(0).laplace(size=4000), dists=("laplace", "norm"))
>>> [r.name for r in rows]
['laplace', 'norm']
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from fxp.errors import FormatError
from fxp.quant.base import as_weights

__all__ = ["DISTRIBUTIONS", "FitRow", "fit_distributions"]

DISTRIBUTIONS = ("laplace", "norm", "logistic", "cauchy", "gamma", "expon", "alpha",
                 "levy_stable", "uniform")
_FOLDED = ("gamma", "expon")


@dataclass(frozen=True)
class FitRow:
    """One distribution's fit: scipy parameters, SSE, KL (nats) and both ranks (1 = best)."""

    name: str
    params: tuple
    sse: float
    kl: float
    rank_sse: int
    rank_kl: int

    def to_dict(self) -> dict:
        return {"name": self.name, "params": [float(v) for v in self.params], "sse": self.sse,
                "kl": self.kl, "rank_sse": self.rank_sse, "rank_kl": self.rank_kl}


def _cdf(name: str, a: np.ndarray, subsample: int, seed: int):
    from scipy import stats

    dist = getattr(stats, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in _FOLDED:
            params = dist.fit(np.abs(a), floc=0)
            return params, lambda x: 0.5 + np.sign(x) * dist.cdf(np.abs(x), *params) / 2
        if name == "levy_stable":
            rng = np.random.default_rng(seed)
            sub = a if a.size <= subsample else rng.choice(a, subsample, replace=False)
            params = tuple(float(v) for v in dist._fitstart(sub))
        else:
            params = dist.fit(a)
    return params, lambda x: dist.cdf(x, *params)


def fit_distributions(w, *, bins: int = 100, dists=DISTRIBUTIONS, by: str = "sse",
                      subsample: int = 5000, seed: int = 0) -> list[FitRow]:
    """Fit ``w``'s histogram to each of ``dists``; rows sorted by ``by`` ("sse" or "kl")."""
    a = as_weights(w).ravel()
    if by not in ("sse", "kl"):
        raise FormatError(f"by must be 'sse' or 'kl', got {by!r}")
    bad = [d for d in dists if d not in DISTRIBUTIONS]
    if bad:
        raise FormatError(f"unknown distributions {bad}; valid: {', '.join(DISTRIBUTIONS)}")
    if a.size < 2 or a.min() == a.max():
        raise FormatError("fitting needs at least two distinct weights")
    edges = np.linspace(a.min(), a.max(), int(bins) + 1)
    p = np.histogram(a, edges)[0] / a.size
    raw = []
    for name in dists:
        try:
            params, cdf = _cdf(name, a, subsample, seed)
            q = np.diff(cdf(edges))
            q = np.clip(q, 0, None) / max(float(np.sum(q)), 1e-300)
            if not np.all(np.isfinite(q)):
                raise ValueError("non-finite bin probabilities")
            nz = p > 0
            sse = float(np.sum((p - q) ** 2))
            kl = float(np.sum(p[nz] * np.log(p[nz] / np.maximum(q[nz], 1e-12))))
        except Exception:  # noqa: BLE001 - any scipy failure is reported as nan, ranked last
            params, sse, kl = (), float("nan"), float("nan")
        raw.append((name, tuple(float(v) for v in params), sse, kl))

    def ranks(i: int) -> dict[str, int]:
        order = sorted(raw, key=lambda r: (np.isnan(r[i]), r[i]))
        return {r[0]: k + 1 for k, r in enumerate(order)}

    rs, rk = ranks(2), ranks(3)
    rows = [FitRow(n, pr, s, k, rs[n], rk[n]) for n, pr, s, k in raw]
    return sorted(rows, key=lambda r: r.rank_sse if by == "sse" else r.rank_kl)
