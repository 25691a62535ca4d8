"""Registry (every name), entropy and compressed size, distribution fits."""

from __future__ import annotations

import numpy as np
import pytest

from fxp.errors import FormatError
from fxp.quant import QuantizedTensor, get, names
from fxp.quant.entropy import compressed_size, entropy_bits
from fxp.quant.fit import fit_distributions

SPECS = ["midtread", "midtread:pow2", "midrise", "deadzone", "deadzone:0.7:pow2", "mulaw",
         "mulaw:2^16", "minifloat", "minifloat:half", "minifloat:e4m3", "minifloat:e5m2",
         "minifloat:e3m4", "pow2", "pow2:floor", "inq", "twn", "ternary", "hwang", "binary",
         "kmeans", "hc:ward", "hc:complete", "hc:average", "hc:single", "hcfast:ward"]
W = np.random.default_rng(7).laplace(scale=0.05, size=(6, 3, 3, 3)).astype(np.float32)


def test_every_registered_name_is_covered() -> None:
    assert {s.split(":")[0] for s in SPECS} == set(names())


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("axis", [None, 0])
def test_registry_contract(spec, axis) -> None:
    """Every quantizer: int64 codes and float64 values of the input's shape, frozen arrays,
    its registry name, side bits, and idempotence through apply()."""
    q = get(spec)
    bits = None if q.fixed_bits else 4
    qt = q(W, bits, axis=axis)
    assert isinstance(qt, QuantizedTensor) and qt.name == q.name
    assert qt.codes.shape == W.shape and qt.codes.dtype == np.int64
    assert qt.values.dtype == np.float64 and np.all(np.isfinite(qt.values))
    assert not qt.codes.flags.writeable and qt.params["side_bits"] >= 0
    again = q.apply(qt.values, qt)
    np.testing.assert_array_equal(again.codes, qt.codes)
    np.testing.assert_array_equal(again.values, qt.values)
    if qt.codebook is not None:
        book = qt.codebook if axis is None else qt.codebook.reshape(W.shape[0], -1)
        vals = qt.values.reshape(1, -1) if axis is None else qt.values.reshape(W.shape[0], -1)
        for row, v in zip(np.atleast_2d(book), vals, strict=True):
            assert np.all(np.isin(v, row))


def test_get_errors_list_valid_names() -> None:
    with pytest.raises(FormatError, match=r"unknown quantizer 'nope'; valid names: .*deadzone"):
        get("nope")
    with pytest.raises(FormatError, match="non-empty string"):
        get("")
    with pytest.raises(FormatError, match="bad arguments"):
        get("binary:1:2")
    with pytest.raises(FormatError, match="axis must be"):
        get("midtread")(W, 4, axis=5)
    with pytest.raises(FormatError, match="empty"):
        get("midtread")([], 4)


def test_entropy_and_size_golden() -> None:
    assert entropy_bits([3, 3, 3]) == 0.0
    assert entropy_bits([0, 1, 2, 3]) == 2.0
    qt = get("midtread")(np.array([0.0, 0.0, 1.0, -1.0]), 2)
    s = compressed_size([qt, qt])
    assert s.n == 8 and s.entropy == 1.5 and s.payload_bits == 12.0
    assert s.side_bits == 64 and s.float32_bits == 256 and s.ratio == pytest.approx(256 / 76)
    with pytest.raises(FormatError, match="at least one"):
        compressed_size([])


def test_fit_ranks_the_generating_distribution_first() -> None:
    rng = np.random.default_rng(3)
    lap = fit_distributions(rng.laplace(scale=0.1, size=20000))
    # the folded exponential (and gamma, shape ~1) *is* a zero-mean Laplace: the three tie
    assert {r.name for r in lap[:3]} == {"laplace", "expon", "gamma"}
    assert {r.name for r in lap if r.rank_kl <= 3} == {"laplace", "expon", "gamma"}
    gau = fit_distributions(rng.normal(size=20000), by="kl",
                            dists=("laplace", "norm", "cauchy", "uniform"))
    assert gau[0].name == "norm"
    assert sorted(r.rank_sse for r in lap) == list(range(1, len(lap) + 1))
    assert {r.name for r in lap} >= {"levy_stable", "alpha", "gamma"}
    with pytest.raises(FormatError, match="unknown distributions"):
        fit_distributions([1.0, 2.0], dists=("weibull",))
    with pytest.raises(FormatError, match="two distinct"):
        fit_distributions([1.0, 1.0])
