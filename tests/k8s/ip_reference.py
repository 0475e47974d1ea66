"""The endpoint address checks as first written with ipaddress, to compare the fast ones with."""

from __future__ import annotations

import ipaddress

from svcsim.k8s.fields import _SPECIAL_NETS


def reference_special_ip_problem(ip: str) -> str | None:
    """Why ``ip`` cannot be an endpoint address, by ipaddress membership."""
    addr = ipaddress.ip_address(ip)
    for net, why in _SPECIAL_NETS:
        if addr.version == net.version and addr in net:
            return why
    return None


def reference_normalize_ipv4(text: str) -> str:
    """Dotted decimal with leading zeros read as decimal (ParseIPSloppy); ValueError if not."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(text)
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        raise ValueError(text)
    return ".".join(str(o) for o in octets)
