"""IPv4 address matches from and to text, fast: what ``-s/-d ADDR[/PREFIX]`` stores and prints.

A 10,000-Service node holds ~110,000 rules with an address match (each endpoint's hairpin
``-s IP`` and each cluster IP's ``-d IP``); :func:`ipaddress.ip_network` spends ~5 us parsing one
(regular expressions, per-octet checks), as much as building the rest of the rule. A text
that is the canonical dotted quad of its own four bytes (``socket.inet_aton`` then
``socket.inet_ntoa`` gives it back) is exactly what ``ip_network`` accepts as that address, so
it is built from the integer (public ``IPv4Network((int, prefix))``); anything else (IPv6,
leading zeros, short forms, bad text) goes to ``ip_network`` itself, which decides as before.
Printing (:func:`cidr_text`) uses ``inet_ntoa`` for IPv4 the same way.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_PREFIXES = frozenset(str(p) for p in range(33))
"""Canonical prefix lengths of IPv4 (no sign, no leading zero)."""


def network_of(text: str) -> IPNetwork:
    """``ipaddress.ip_network(text, strict=False)``, the same value, faster for plain IPv4.

    A bare address is a /32 (/128); host bits under the prefix are cleared, as iptables does.
    Raises what ``ip_network`` raises for text that is no address.
    """
    address, slash, prefix = text.partition("/")
    if not slash or prefix in _V4_PREFIXES:
        try:
            packed = socket.inet_aton(address)
        except (OSError, ValueError):  # not an address; a NUL inside
            packed = b""
        if len(packed) == 4 and socket.inet_ntoa(packed) == address:
            length = int(prefix) if slash else 32
            return ipaddress.IPv4Network((int.from_bytes(packed, "big"), length), strict=False)
    return ipaddress.ip_network(text, strict=False)


def cidr_text(network: IPNetwork) -> str:
    """``ADDR/PREFIX`` as iptables-save prints an address match (``10.0.0.1/32``)."""
    if network.version == 4:
        return f"{socket.inet_ntoa(network.network_address.packed)}/{network.prefixlen}"
    return f"{network.network_address}/{network.prefixlen}"
