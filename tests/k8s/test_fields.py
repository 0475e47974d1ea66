import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.k8s import normalize_cidr, normalize_ip


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # pkg/proxy/iptables/proxier_test.go TestBadIPs: leading zeros are decimal.
        ("172.30.0.041", "172.30.0.41"),
        ("1.2.3.004", "1.2.3.4"),
        ("192.168.099.022", "192.168.99.22"),
        ("10.180.00.001", "10.180.0.1"),
        ("010.000.000.001", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("2001:DB8::0001", "2001:db8::1"),
        ("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
    ],
)
def test_normalize_ip(given: str, expected: str) -> None:
    assert normalize_ip(given) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "10.0.0",
        "10.0.0.256",
        "10.0.0.1.2",
        "10.0.0.-1",
        "a.b.c.d",
        "fe80::1%eth0",
        "::g",
        "1.2.3.٤",
    ],
)
def test_normalize_ip_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid IP address"):
        normalize_ip(bad)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("203.0.113.000/025", "203.0.113.0/25"),  # TestBadIPs
        ("10.0.0.5/24", "10.0.0.0/24"),  # Go's IPNet.String() prints the network
        ("172.200.0.0/16", "172.200.0.0/16"),
        ("2001:DB8::/32", "2001:db8::/32"),
    ],
)
def test_normalize_cidr(given: str, expected: str) -> None:
    assert normalize_cidr(given) == expected


@pytest.mark.parametrize(
    "bad", ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/x", "10.0.0.0/", "/24", "::/129"]
)
def test_normalize_cidr_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid CIDR"):
        normalize_cidr(bad)


@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2), min_size=4, max_size=4))
def test_zero_padding_reads_as_decimal(value: int, pads: list[int]) -> None:
    canonical = str(ipaddress.IPv4Address(value))
    padded = ".".join(
        "0" * pad + octet for pad, octet in zip(pads, canonical.split("."), strict=True)
    )
    assert normalize_ip(padded) == canonical
    assert normalize_ip(canonical) == canonical


@given(st.integers(0, 2**128 - 1))
def test_ipv6_normalisation_is_idempotent(value: int) -> None:
    once = normalize_ip(str(ipaddress.IPv6Address(value)).upper())
    assert normalize_ip(once) == once
    assert ipaddress.ip_address(once) in (
        ipaddress.IPv6Address(value),
        ipaddress.IPv6Address(value).ipv4_mapped,
    )
