"""Address matches from text and back: the fast IPv4 path gives exactly what ipaddress gives."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.netfilter.addresses import cidr_text, network_of


def _same_as_ipaddress(text: str) -> None:
    """``network_of(text)`` is ``ip_network(text, strict=False)``, or both refuse it."""
    try:
        want = ipaddress.ip_network(text, strict=False)
    except ValueError:
        with pytest.raises(ValueError):
            network_of(text)
        return
    got = network_of(text)
    assert type(got) is type(want)
    assert {k: v for k, v in vars(got).items() if k != "hosts"} == {
        k: v for k, v in vars(want).items() if k != "hosts"
    }
    assert ("hosts" in vars(got)) == ("hosts" in vars(want))
    assert got == want and hash(got) == hash(want)
    assert (got.network_address, got.prefixlen, got.netmask) == (
        want.network_address,
        want.prefixlen,
        want.netmask,
    )
    assert str(got) == str(want)
    assert list(itertools.islice(got.hosts(), 3)) == list(itertools.islice(want.hosts(), 3))
    assert cidr_text(got) == f"{want.network_address}/{want.prefixlen}"


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "10.0.0.0/8",
        "10.1.2.3/8",  # host bits cleared, as iptables does
        "127.0.0.0/8",
        "0.0.0.0/0",
        "10.0.0.1/32",
        "10.0.0.2/31",
        # Not the canonical dotted quad of their bytes: ipaddress decides (and refuses).
        "010.0.0.1",
        "10.1",
        "0x0a.0.0.1",
        "1.2.3.4 ",
        " 1.2.3.4",
        "1.2.3.4\x00",
        "256.0.0.1",
        "10.0.0.1/33",
        "10.0.0.1/08",
        "10.0.0.1/",
        "10.0.0.1/-1",
        "",
        "host",
        # IPv6 goes to ipaddress.
        "::1",
        "fe80::/10",
        "2001:db8::1/64",
    ],
)
def test_network_of_is_what_ipaddress_reads(text: str) -> None:
    _same_as_ipaddress(text)


@given(address=st.integers(0, 2**32 - 1), prefix=st.none() | st.integers(0, 32))
def test_network_of_every_ipv4_text(address: int, prefix: int | None) -> None:
    text = str(ipaddress.IPv4Address(address))
    _same_as_ipaddress(text if prefix is None else f"{text}/{prefix}")
