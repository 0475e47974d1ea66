"""IPv4 address matches from and to text, fast: what ``-s/-d ADDR[/PREFIX]`` stores and prints.

A 10,000-Service node holds ~110,000 rules with an address match (each endpoint's hairpin
``-s IP`` and each cluster IP's ``-d IP``); :func:`ipaddress.ip_network` spends ~5 us parsing one
(regular expressions, per-octet checks), as much as building the rest of the rule. A text
that is the canonical dotted quad of its own four bytes (``socket.inet_aton`` then
``socket.inet_ntoa`` gives it back) is exactly what ``ip_network`` accepts as that address, so
it is built from the integer (public ``IPv4Network((int, prefix))``); anything else (IPv6,
leading zeros, short forms, bad text) goes to ``ip_network`` itself, which decides as before.
Printing (:func:`cidr_text`) writes the dotted quad of an IPv4 network from its stored integer.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_PREFIXES = frozenset(str(p) for p in range(33))
"""Canonical prefix lengths of IPv4 (no sign, no leading zero)."""
_NETMASKS = tuple(ipaddress.IPv4Network(f"0.0.0.0/{p}").netmask for p in range(33))
"""The netmask of each prefix length (the very objects ipaddress shares between networks)."""
_MASK_VALUES = tuple(int(mask) for mask in _NETMASKS)
"""The netmask of each prefix length as an int."""
_new = object.__new__
_OCTETS = tuple(str(n) for n in range(256))
"""The decimal text of each byte value (and prefix length)."""


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
            return _ipv4_network(int.from_bytes(packed, "big"), int(prefix) if slash else 32)
    return ipaddress.ip_network(text, strict=False)


def _ipv4_network(value: int, prefix: int) -> ipaddress.IPv4Network:
    """``IPv4Network((value, prefix), strict=False)``, set up as its ``__init__`` sets it up.

    The constructor's own checks (of a tuple, an int, a prefix) cost ~1.5 us and are spent
    here already; what it stores is ``network_address``, ``netmask``, ``_prefixlen`` and, for a
    /31 or /32, a ``hosts`` of its own (CPython 3.11 ``Lib/ipaddress.py``), set in that order
    (as attributes, so the instance shares its attribute layout with constructed ones). The
    address is made the same way: ``IPv4Address.__init__`` of an int checks its range and
    stores it in ``_ip``. The tests compare every attribute with the constructor's result.
    """
    network = _new(ipaddress.IPv4Network)
    value &= _MASK_VALUES[prefix]
    address = _new(ipaddress.IPv4Address)
    address._ip = value  # type: ignore[attr-defined]
    network.network_address = address
    network.netmask = _NETMASKS[prefix]
    network._prefixlen = prefix  # type: ignore[attr-defined]
    if prefix == 31:
        network.hosts = network.__iter__  # type: ignore[method-assign]
    elif prefix == 32:
        network.hosts = lambda: [ipaddress.IPv4Address(value)]  # type: ignore[method-assign,assignment,return-value]
    return network


def cidr_text(network: IPNetwork) -> str:
    """``ADDR/PREFIX`` as iptables-save prints an address match (``10.0.0.1/32``)."""
    if type(network) is ipaddress.IPv4Network:
        # The address's int and the prefix as stored (the public properties cost two calls),
        # the dotted quad written here (inet_ntoa goes through snprintf: ~3 times slower).
        value = network.network_address._ip  # type: ignore[attr-defined]
        prefix = network._prefixlen  # type: ignore[attr-defined]
        octets = _OCTETS
        return (
            f"{octets[value >> 24]}.{octets[value >> 16 & 255]}.{octets[value >> 8 & 255]}."
            f"{octets[value & 255]}/{octets[prefix]}"
        )
    return f"{network.network_address}/{network.prefixlen}"
