"""Durations as Kubernetes and kube-proxy spell them: ``250ms``, ``30s``, ``2m``, ``1h30m``.

The text syntax is Go's ``time.ParseDuration`` (the one ``metav1.Duration`` fields such as
kube-proxy's ``minSyncPeriod`` use): an optional sign, then one or more decimal numbers each
followed by a unit (``ns``, ``us``/``µs``, ``ms``, ``s``, ``m``, ``h``); a bare ``0`` is
allowed. YAML numbers (int or float) are taken as seconds.

Values are float seconds. Parsing is exact (rational arithmetic, one rounding at the end),
so ``0.2ms`` and ``200us`` give the same float, and :func:`format_duration` picks a spelling
that parses back to the very same float; the run manifest relies on that round trip.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from svcsim.k8s.errors import MAX_EXCERPT_CHARS, printable, shorten
from svcsim.k8s.fields import describe

__all__ = [
    "DURATION_PATTERN",
    "Duration",
    "PositiveDuration",
    "format_duration",
    "parse_duration",
]

_UNIT_SECONDS: Final[dict[str, Fraction]] = {
    "ns": Fraction(1, 1_000_000_000),
    "us": Fraction(1, 1_000_000),
    "\u00b5s": Fraction(1, 1_000_000),  # µ MICRO SIGN, as Go accepts it
    "\u03bcs": Fraction(1, 1_000_000),  # μ GREEK SMALL LETTER MU, as Go accepts it
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}

_NUMBER = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
_UNIT = r"(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
DURATION_PATTERN: Final = rf"^[-+]?(?:0|(?:{_NUMBER}{_UNIT})+)$"
"""Regular expression of the accepted text (also written into the JSON Schema)."""

_FULL = re.compile(DURATION_PATTERN)
_PART = re.compile(rf"({_NUMBER})({_UNIT})")

_HINT: Final = "use e.g. 250ms, 30s, 2m"


def _invalid(value: object) -> ValueError:
    return ValueError(f"invalid duration {shorten(repr(value), MAX_EXCERPT_CHARS)}: {_HINT}")


def _not_finite(value: object) -> ValueError:
    return ValueError(f"must be a finite number of seconds, got {describe(value)}")


def parse_duration(value: object) -> float:
    """Seconds in ``value``: Go duration text (``"1h30m"``, ``"1.5s"``) or a number of seconds.

    Negative values are returned as such (Go accepts a sign); the :data:`Duration` field
    type is the one that refuses them. Raises ValueError naming the value otherwise,
    e.g. ``invalid duration '5 minutes': use e.g. 250ms, 30s, 2m``.
    """
    if isinstance(value, bool):  # bool is an int subclass; `true` is not a duration
        raise _invalid(value)
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # beyond 1.8e308 seconds
            raise _not_finite(value) from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _not_finite(value)
        return value
    if not isinstance(value, str):
        raise _invalid(value)
    text = value.strip()
    if not _FULL.fullmatch(text):
        raise _invalid(value)
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    total = Fraction(0)
    for number, unit in _PART.findall(body):
        total += Fraction(Decimal(number)) * _UNIT_SECONDS[unit]
    # One rounding, from the exact rational: equal durations give equal floats.
    try:
        return sign * float(total)
    except OverflowError:
        raise _not_finite(value) from None


def format_duration(seconds: float) -> str:
    """Go-style text for ``seconds`` that :func:`parse_duration` turns back into ``seconds``.

    Compact spellings: ``0s``, ``250ms``, ``1.5s``, ``2m``, ``1h30m``, ``1m0.5s``,
    ``200us`` (ASCII ``us`` rather than Go's ``µs``, so files and JSON stay ASCII).
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds):
        raise ValueError(f"cannot format duration {seconds!r}")
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    # repr() is the shortest decimal that round-trips; Decimal arithmetic below is exact.
    exact = Decimal(repr(abs(float(seconds))))
    if exact < 1:
        for unit, scale in (("ms", 1000), ("us", 1_000_000), ("ns", 1_000_000_000)):
            scaled = exact * scale
            if scaled >= 1 or unit == "ns":
                return f"{sign}{_plain(scaled)}{unit}"
    if exact >= Decimal(10) ** 15:  # beyond any simulated span; keep it simple and exact
        return f"{sign}{_plain(exact)}s"
    hours, rest = divmod(exact, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{_plain(hours)}h")
    if minutes:
        parts.append(f"{_plain(minutes)}m")
    if secs:
        parts.append(f"{_plain(secs)}s")
    return sign + "".join(parts)


def _plain(value: Decimal) -> str:
    """``value`` in positional notation without trailing zeros (``1.50`` -> ``1.5``)."""
    return format(value.normalize(), "f")


def _duration_validator(*, positive: bool) -> BeforeValidator:
    def validate(value: Any) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None
        if seconds < 0 or (positive and seconds == 0):
            bound = "> 0" if positive else ">= 0"
            raise PydanticCustomError(
                "duration_range", "must be {bound}, got {got}", {"bound": bound, "got": _got(value)}
            )
        return seconds

    return BeforeValidator(validate)


def _got(value: Any) -> str:
    """``value`` as the user wrote it (``-5s``, ``-5``), cut to an excerpt."""
    return shorten(printable(str(value)), MAX_EXCERPT_CHARS)


def _json_schema(*, positive: bool) -> WithJsonSchema:
    number: dict[str, Any] = {"type": "number"}
    number["exclusiveMinimum" if positive else "minimum"] = 0
    return WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, number],
            "description": "Duration: Go syntax (250ms, 30s, 2m, 1h30m) or a number of seconds.",
        }
    )


_SERIALIZER: Final = PlainSerializer(format_duration, return_type=str, when_used="json")

Duration = Annotated[
    float, _duration_validator(positive=False), _SERIALIZER, _json_schema(positive=False)
]
"""A pydantic field type: non-negative float seconds, read from Go text or a number,
written as Go text in JSON mode (``model_dump(mode="json")``)."""

PositiveDuration = Annotated[
    float, _duration_validator(positive=True), _SERIALIZER, _json_schema(positive=True)
]
"""Like :data:`Duration`, but zero is refused too (``syncPeriod``, ``duration``)."""
