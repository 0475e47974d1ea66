"""The integer and regex shortcuts for endpoint addresses agree with ipaddress."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.k8s.fields import normalize_ip, special_ip_problem
from tests.k8s.ip_reference import reference_normalize_ipv4, reference_special_ip_problem

_EDGES = ["0.0.0.0", "0.0.0.1", "126.255.255.255", "127.0.0.0", "127.255.255.255", "128.0.0.0",
          "169.253.255.255", "169.254.0.0", "169.254.255.255", "169.255.0.0", "223.255.255.255",
          "224.0.0.0", "239.255.255.255", "240.0.0.0", "255.255.255.255", "::", "::1", "::2",
          "1.0.0.0", "168.255.255.255", "170.0.0.0", "fe80::", "febf:ffff::", "fec0::", "ff00::",
          "feff::1", "::ffff:127.0.0.1"]  # fmt: skip


@pytest.mark.parametrize("ip", _EDGES)
def test_special_ranges_at_their_edges(ip: str) -> None:
    assert special_ip_problem(ip) == reference_special_ip_problem(ip)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_special_ip_problem_is_ipaddress_membership(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert special_ip_problem(str(addr)) == reference_special_ip_problem(str(addr))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), min_size=3, max_size=5))
def test_normalize_ipv4_shortcut_reads_as_the_octets(octets: list[str]) -> None:
    text = ".".join(octets)
    try:
        expected: str | None = reference_normalize_ipv4(text)
    except ValueError:
        expected = None
    try:
        got: str | None = normalize_ip(text)
    except ValueError:
        got = None
    assert got == expected
