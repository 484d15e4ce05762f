"""Heartbeat's time and boolean syntaxes (cl_get_msec, cl_str_to_boolean)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nonstop.config.units import format_msec, parse_bool, parse_msec


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2", 2000),
        ("1.7", 1700),
        (".5", 500),
        ("0", 0),
        ("120", 120000),
        ("1500ms", 1500),
        ("200MS", 200),
        ("200Ms", 200),
        ("250msec", 250),
        ("499us", 0),
        ("500us", 1),
        ("1500usec", 2),
        ("2500US", 3),
        ("0.0005", 1),
        ("0.0004", 0),
        ("1.2345ms", 1),
    ],
)
def test_times(text: str, ms: int) -> None:
    assert parse_msec(text) == ms


@pytest.mark.parametrize(
    "text", ["2s", "500 ms", "", "-1", "1.", "1.2.3", "abc", "ms", "2 ", "1e3", "2min", "0x10"]
)
def test_bad_times(text: str) -> None:
    with pytest.raises(ValueError):
        parse_msec(text)


def test_bad_unit_message_shows_the_fix() -> None:
    with pytest.raises(ValueError, match=r"unknown time unit 's'.*\(write '10'\)"):
        parse_msec("10s")
    with pytest.raises(ValueError, match=r"unknown time unit 'min'.*\(e.g. '2' or '2000ms'\)"):
        parse_msec("2min")


@given(st.integers(min_value=0, max_value=10**7))
def test_units_agree(n: int) -> None:
    assert parse_msec(f"{n}ms") == n
    assert parse_msec(str(n)) == n * 1000
    assert parse_msec(f"{n}us") == (n + 500) // 1000


@given(st.from_regex(r"[0-9]{1,9}|[0-9]{0,9}\.[0-9]{1,9}", fullmatch=True),
       st.sampled_from(["", "ms", "msec", "us", "usec"]))
def test_rounding_as_decimal_does(num: str, unit: str) -> None:
    """The integer arithmetic rounds as the exact decimal value would, halves up."""
    from decimal import ROUND_HALF_UP, Decimal

    divisor = {"": Decimal("0.001"), "ms": Decimal(1), "msec": Decimal(1),
               "us": Decimal(1000), "usec": Decimal(1000)}[unit]
    exact = (Decimal(num) / divisor).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert parse_msec(num + unit) == int(exact)


@pytest.mark.parametrize("word", ["true", "on", "yes", "y", "1", "TRUE", "On", "Yes", "Y"])
def test_true_words(word: str) -> None:
    assert parse_bool(word) is True


@pytest.mark.parametrize("word", ["false", "off", "no", "n", "0", "FALSE", "Off", "NO", "N"])
def test_false_words(word: str) -> None:
    assert parse_bool(word) is False


@pytest.mark.parametrize("word", ["", "maybe", "2", "enabled", "nope"])
def test_not_booleans(word: str) -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool(word)


def test_format() -> None:
    assert format_msec(15000) == "15000ms"
