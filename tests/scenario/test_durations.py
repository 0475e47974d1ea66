"""Durations: Go's time.ParseDuration syntax, numbers as seconds, exact round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from svcsim.scenario.durations import (
    Duration,
    PositiveDuration,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("10us", 1e-5),
        ("10µs", 1e-5),  # U+00B5 MICRO SIGN
        ("10μs", 1e-5),  # U+03BC GREEK SMALL LETTER MU
        ("100ns", 1e-7),
        ("0", 0.0),
        ("0s", 0.0),
        ("+5s", 5.0),
        ("-1.5h", -5400.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("1h0m0.5s", 3600.5),
        ("2h45m30s", 9930.0),
        ("0.2ms", 0.0002),
        ("1m1m", 120.0),  # Go sums repeated units
        (" 30s ", 30.0),
        (30, 30.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_valid(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "5 minutes",
        "30",
        "",
        "s",
        ".s",
        "1h 30m",
        "1S",
        "1e3s",
        "1d",
        "ms",
        "--1s",
        "1.2.3s",
        "١s",
        True,
        None,
        [1],
    ],
)
def test_parse_invalid(value: object) -> None:
    with pytest.raises(ValueError, match=r"^invalid duration .*: use e\.g\. 250ms, 30s, 2m$"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (float("nan"), "nan"),
        (10**400, "an integer of 401 digits"),  # float() of it overflows
        (-(10**400), "an integer of 401 digits"),
        ("1" + "0" * 400 + "h", '"1' + "0" * 56 + '\u2026"'),  # the exact sum overflows
    ],
)
def test_parse_not_finite(value: object, got: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(value)
    assert str(err.value) == f"must be a finite number of seconds, got {got}"


def test_invalid_duration_quotes_an_excerpt() -> None:
    with pytest.raises(ValueError) as err:
        parse_duration("x" * 1000)
    assert len(str(err.value)) < 120


def test_error_text_names_the_value() -> None:
    with pytest.raises(ValueError) as err:
        parse_duration("5 minutes")
    assert str(err.value) == "invalid duration '5 minutes': use e.g. 250ms, 30s, 2m"


def test_exact_arithmetic_gives_one_float_per_duration() -> None:
    # 0.2ms, 200us and 200000ns are the same duration, hence the same float.
    assert parse_duration("0.2ms") == parse_duration("200us") == parse_duration("200000ns")
    assert parse_duration("0.1s") + 0 == 0.1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
        (120.0, "2m"),
        (90.0, "1m30s"),
        (5400.0, "1h30m"),
        (3600.5, "1h0.5s"),
        (86400.0, "24h"),
        (0.0002, "200us"),
        (1e-7, "100ns"),
        (0.0015, "1.5ms"),
        (-2.0, "-2s"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=1e18, allow_nan=False, allow_infinity=False))
def test_format_parses_back_to_the_same_float(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["ns", "us", "ms", "s", "m", "h"])),
        min_size=1,
        max_size=4,
    )
)
def test_go_text_survives_a_format_round_trip(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_refuses_non_finite() -> None:
    with pytest.raises(ValueError):
        format_duration(math.inf)


class _Model(BaseModel):
    d: Duration = 0.0
    p: PositiveDuration = 1.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"d": "-1s"}, "must be >= 0, got -1s"),
        ({"d": -3}, "must be >= 0, got -3"),
        ({"p": "0s"}, "must be > 0, got 0s"),
        ({"d": "soon"}, "invalid duration 'soon': use e.g. 250ms, 30s, 2m"),
    ],
)
def test_field_types_refuse(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        _Model.model_validate(data)
    assert err.value.errors()[0]["msg"] == message


def test_field_type_dumps_go_text_in_json_mode_and_floats_otherwise() -> None:
    m = _Model.model_validate({"d": "1m30s", "p": 0.25})
    assert (m.d, m.p) == (90.0, 0.25)
    assert m.model_dump(mode="json") == {"d": "1m30s", "p": "250ms"}
    assert m.model_dump() == {"d": 90.0, "p": 0.25}
