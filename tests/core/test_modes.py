"""Rounding/overflow mode names: canonical names, the alias table, ambiguity."""

from __future__ import annotations

import pytest

from fxp.core.modes import OVERFLOW_ALIASES, ROUNDING_ALIASES, OverflowMode, RoundingMode
from fxp.errors import FormatError

R = RoundingMode

# Spec table: foreign spelling -> expected meaning, from each tool's documentation
# (UG1399 quantization modes; MATLAB fi RoundingMethod; QONNX Quant rounding_mode
# (Java RoundingMode names); IEEE 754 rounding-direction attributes).
FOREIGN = [
    ("AP_TRN", R.FLOOR), ("AP_TRN_ZERO", R.TO_ZERO), ("AP_RND", R.HALF_UP),
    ("AP_RND_ZERO", R.HALF_TO_ZERO), ("AP_RND_MIN_INF", R.HALF_DOWN),
    ("AP_RND_INF", R.HALF_AWAY), ("AP_RND_CONV", R.HALF_EVEN),
    ("matlab:Floor", R.FLOOR), ("matlab:Zero", R.TO_ZERO), ("matlab:Nearest", R.HALF_UP),
    ("matlab:Round", R.HALF_AWAY), ("matlab:Convergent", R.HALF_EVEN), ("matlab:Ceiling", R.CEIL),
    ("qonnx:ROUND", R.HALF_EVEN), ("qonnx:CEIL", R.CEIL), ("qonnx:FLOOR", R.FLOOR),
    ("qonnx:UP", R.AWAY), ("qonnx:DOWN", R.TO_ZERO), ("qonnx:HALF_UP", R.HALF_AWAY),
    ("qonnx:HALF_DOWN", R.HALF_TO_ZERO),
    ("roundTiesToEven", R.HALF_EVEN), ("roundTiesToAway", R.HALF_AWAY),
    ("roundTowardPositive", R.CEIL), ("roundTowardNegative", R.FLOOR),
    ("roundTowardZero", R.TO_ZERO),
    ("Convergent", R.HALF_EVEN), ("Nearest", R.HALF_UP), ("Ceiling", R.CEIL),
]


@pytest.mark.parametrize(("name", "mode"), FOREIGN)
def test_foreign_spellings(name, mode):
    assert RoundingMode.from_string(name) is mode


@pytest.mark.parametrize("mode", list(RoundingMode))
def test_canonical_names_round_trip(mode):
    assert RoundingMode.from_string(mode.value) is mode
    assert RoundingMode.from_string(mode) is mode
    assert RoundingMode.from_string(mode.value.replace("_", "-")) is mode


@pytest.mark.parametrize("name", ["HALF_UP", "Half_Down", "ROUND", "round"])
def test_ambiguous_names_are_refused_with_both_readings(name):
    with pytest.raises(FormatError, match="ambiguous") as info:
        RoundingMode.from_string(name)
    assert "qonnx:" in str(info.value)


def test_unknown_names_list_canonical_names():
    with pytest.raises(FormatError, match="canonical names are: .*half_even"):
        RoundingMode.from_string("banker")
    with pytest.raises(FormatError, match="convention 'qonnx' has no mode 'SIDEWAYS'"):
        RoundingMode.from_string("qonnx:SIDEWAYS")
    with pytest.raises(FormatError, match="must be given as a string"):
        RoundingMode.from_string(3)


def test_every_alias_is_reachable_with_its_prefix():
    for (conv, name), mode in ROUNDING_ALIASES.items():
        assert RoundingMode.from_string(f"{conv}:{name}") is mode
    for (conv, name), mode in OVERFLOW_ALIASES.items():
        assert OverflowMode.from_string(f"{conv}:{name}") is mode


@pytest.mark.parametrize(("name", "mode"), [
    ("AP_WRAP", OverflowMode.WRAP), ("AP_SAT", OverflowMode.SATURATE),
    ("AP_SAT_SYM", OverflowMode.SATURATE_SYMMETRIC), ("AP_SAT_ZERO", OverflowMode.SATURATE_ZERO),
    ("wrap", OverflowMode.WRAP), ("saturate-symmetric", OverflowMode.SATURATE_SYMMETRIC),
])
def test_overflow_names(name, mode):
    assert OverflowMode.from_string(name) is mode


def test_every_mode_has_a_one_line_docstring():
    import inspect

    src = inspect.getsource(RoundingMode) + inspect.getsource(OverflowMode)
    for m in [*RoundingMode, *OverflowMode]:
        assert f'{m.name} = "{m.value}"\n    """' in src, m


def test_kernel_codes_are_stable():
    """The Numba kernels hard-code these numbers (fxp/kernels/scalar.py)."""
    from fxp.kernels import scalar

    assert [m.code for m in RoundingMode] == [
        scalar.FLOOR, scalar.CEIL, scalar.TO_ZERO, scalar.AWAY, scalar.HALF_UP, scalar.HALF_DOWN,
        scalar.HALF_TO_ZERO, scalar.HALF_AWAY, scalar.HALF_EVEN, scalar.STOCHASTIC]
    assert [m.code for m in OverflowMode] == [
        scalar.WRAP, scalar.SATURATE, scalar.SATURATE_SYMMETRIC, scalar.SATURATE_ZERO]
