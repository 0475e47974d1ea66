"""``[namespace/]service[:port]`` as the CLI's ``--service`` options read it."""

from __future__ import annotations

import pytest

from svcsim.scenario.refs import matching_service_ports

KNOWN = ["default/web:http", "default/web:metrics", "default/api:http", "prod/web:http"]


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("web", ["default/web:http", "default/web:metrics"]),
        ("default/web", ["default/web:http", "default/web:metrics"]),
        ("web:metrics", ["default/web:metrics"]),
        ("prod/web", ["prod/web:http"]),
        ("prod/web:http", ["prod/web:http"]),
        ("web:grpc", []),
        ("we", []),  # a prefix of a name is another name
        ("other/web", []),
    ],
)
def test_spellings_match_ports_in_order(spelling: str, expected: list[str]) -> None:
    assert matching_service_ports(spelling, KNOWN) == expected


@pytest.mark.parametrize("spelling", ["Web", "a/b/c", "web:", "web:http:x", ""])
def test_bad_spellings_are_errors(spelling: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        matching_service_ports(spelling, KNOWN)
