"""QFormat: bounds, parsing and printing, validation."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxp.core.format import QFormat
from fxp.errors import FormatError
from tests.strategies import formats


@pytest.mark.parametrize(
    ("text", "bits", "int_bits", "signed"),
    [
        ("ap_fixed<8,3>", 8, 3, True),
        ("ap_ufixed<6,2>", 6, 2, False),
        ("fixed<16,1>", 16, 1, True),
        ("ufixed<4,-2>", 4, -2, False),
        ("ap_fixed<4,10>", 4, 10, True),
        ("Q0.7", 8, 1, True),
        ("Q15", 16, 1, True),
        ("Q3.12", 16, 4, True),
        ("UQ8.0", 8, 8, False),
        ("UQ0.8", 8, 0, False),
        ("int8", 8, 8, True),
        ("uint16", 16, 16, False),
        (" AP_FIXED< 10 , 4 > ", 10, 4, True),
    ],
)
def test_parse_known_spellings(text, bits, int_bits, signed):
    assert QFormat.parse(text) == QFormat(bits, int_bits, signed)


@given(formats())
def test_print_parse_round_trip(fmt):
    """str() and to_ap_fixed() parse back to the same format; Qm.n too where it exists."""
    assert QFormat.parse(str(fmt)) == fmt
    assert QFormat.parse(fmt.to_ap_fixed()) == fmt
    if fmt.int_bits >= (1 if fmt.signed else 0) and fmt.frac_bits >= 0:
        assert QFormat.parse(fmt.to_qmn()) == fmt
    else:
        with pytest.raises(FormatError, match="no Qm.n spelling"):
            fmt.to_qmn()


@given(formats())
def test_bounds_from_first_principles(fmt):
    """Code range is two's complement / unsigned; values are code * 2**-F exactly."""
    n = fmt.bits
    if fmt.signed:
        assert (fmt.min_code, fmt.max_code) == (-(2 ** (n - 1)), 2 ** (n - 1) - 1)
    else:
        assert (fmt.min_code, fmt.max_code) == (0, 2**n - 1)
    assert fmt.lsb * Fraction(2) ** fmt.frac_bits == 1
    assert fmt.max_value == fmt.max_code * fmt.lsb
    assert fmt.min_value == fmt.min_code * fmt.lsb
    assert fmt.frac_bits + fmt.int_bits == fmt.bits


def test_qmn_m_excludes_sign_bit():
    """Q2.5 has 1 sign + 2 integer + 5 fractional bits = fixed<8,3>, range [-4, 4)."""
    f = QFormat.parse("Q2.5")
    assert f == QFormat(8, 3)
    assert f.min_value == -4 and f.max_value == 4 - Fraction(1, 32)


def test_widths_at_the_limits():
    assert QFormat(64, 1).min_code == -(2**63)
    assert QFormat(63, 0, signed=False).max_code == 2**63 - 1
    assert QFormat(1, 0).min_code == -1 and QFormat(1, 0).max_code == 0  # {-2**-1, 0}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 0), "bits=0 is outside 1..64"),
        ((65, 1), "bits=65 is outside 1..64"),
        ((64, 1, False), r"bits=64 is outside 1..63 for a unsigned format .*int64"),
        ((8.0, 3), "bits must be an integer, got 8.0"),
        ((True, 1), "bits must be an integer, got True"),
        ((8, "3"), "int_bits must be an integer"),
        ((8, 5000), "int_bits=5000 is outside"),
        ((8, 3, 1), "signed must be a bool"),
    ],
)
def test_bad_formats_raise_naming_the_value(args, match):
    with pytest.raises(FormatError, match=match):
        QFormat(*args)


@pytest.mark.parametrize("text", ["fixed<8>", "ap_fixed<8,3", "Q", "Q1.2.3", "float32", "", "int"])
def test_unparseable_formats(text):
    with pytest.raises(FormatError, match="cannot parse format"):
        QFormat.parse(text)


def test_parse_rejects_non_strings():
    with pytest.raises(FormatError, match="must be a string"):
        QFormat.parse(8)


def test_format_errors_are_value_errors():
    with pytest.raises(ValueError):
        QFormat(0, 0)


def test_value_of_checks_range():
    f = QFormat(4, 2)
    assert f.value_of(-8) == -2
    with pytest.raises(FormatError, match="code 8 is outside fixed<4,2>"):
        f.value_of(8)


@given(st.integers(1, 64), st.integers(-20, 20))
def test_integer_and_from_frac(bits, frac):
    assert QFormat.integer(bits).frac_bits == 0
    assert QFormat.from_frac(bits, frac).frac_bits == frac
