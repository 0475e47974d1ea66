"""``nft list table``: how the nft binary prints an :class:`NftTable` the kernel holds.

Checked against nftables 1.0.6 (Debian 12) in a throw-away network namespace
(tests/netfilter/test_nftables_kernel.py). nft prints what the kernel holds, not what was
written, so this differs from :func:`~svcsim.netfilter.nftables.dump` in these ways:

* one block per table: its comment, then sets and maps, then chains, in the order they were
  created (``dump``'s order), each followed by a blank line except the last;
* base chains show ``type T hook H priority P; policy accept;`` where P is a standard priority
  name when within 10 of one valid for that hook (``dstnat - 10`` in prerouting), else a number;
* sets show their ``size`` (65535 for dynamic sets without one), timeouts as ``3h``/``1m30s``,
  and their elements sorted the way nft sorts them: single-type keys by value, concatenated keys
  by the little-endian value of their padded network-order bytes; lines hold two IPv4
  addresses, five numbers, or one concatenation;
* rules are printed in nft's canonical syntax: ``mark`` becomes ``meta mark`` with C operators
  and 8-digit hex, anonymous address sets are sorted, de-duplicated, elements inside another one
  dropped (a set written with one element loses its braces), and list separators are ``, ``.
  nft also joins neighbouring intervals into ranges; that is not reproduced, and
  :func:`unreproduced_merges` names the rules where it would happen.

Only the rule shapes kube-proxy writes are covered (see :func:`canonical_rule`).
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from typing import Final

from svcsim.netfilter.nftables import NftChain, NftElement, NftSet, NftTable

DYNAMIC_SET_DEFAULT_SIZE: Final = 65535
"""The size nft gives a dynamic set created without one (``NFT_SET_MAXSIZE`` default)."""

_STANDARD_PRIORITIES: Final = (
    ("raw", -300, None),
    ("mangle", -150, None),
    ("dstnat", -100, ("prerouting",)),
    ("filter", 0, None),
    ("security", 50, None),
    ("srcnat", 100, ("postrouting",)),
)
"""(name, value, hooks it may be used with or None for all), family ip, as nft 1.0.6 names them."""

_PRIORITY_NAME_REACH: Final = 10
"""nft prints ``name +/- offset`` only for offsets up to this far from a standard priority."""

_ELEMENTS_INDENT: Final = ",\n\t\t\t     "
_PER_LINE: Final = {"ipv4_addr": 2, "inet_proto": 5, "inet_service": 5, "mark": 5, "integer": 5}
"""Elements per line by key type (nft's ``calculate_delim``); concatenations get one."""

_FIELD_BYTES: Final = {"ipv4_addr": 4, "inet_proto": 1, "inet_service": 2, "mark": 4}
_PROTOCOLS: Final = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}

_MARK_OR = re.compile(r"\bmark set mark or (0x[0-9a-fA-F]+|\d+)")
_MARK_XOR = re.compile(r"\bmark set mark xor (0x[0-9a-fA-F]+|\d+)")
_MARK_AND = re.compile(r"\bmark and (0x[0-9a-fA-F]+|\d+) == (0x[0-9a-fA-F]+|\d+)")
_BRACES = re.compile(r"\{ ([^{}]*) \}")


def _hex8(number: str) -> str:
    return f"0x{int(number, 0):08x}"


def priority_text(hook: str, priority: int) -> str:
    """A base chain's priority as nft prints it for ``hook`` (family ip)."""
    for name, value, hooks in _STANDARD_PRIORITIES:
        if hooks is not None and hook not in hooks:
            continue
        offset = priority - value
        if offset == 0:
            return name
        if abs(offset) <= _PRIORITY_NAME_REACH:
            return f"{name} {'+' if offset > 0 else '-'} {abs(offset)}"
    return str(priority)


def duration_text(seconds: int) -> str:
    """Nft's time format: ``3h``, ``1m30s``, ``1d2h``; ``0s`` for zero."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _address_items(body: str) -> list[tuple[ipaddress.IPv4Network, str]] | None:
    """The elements of an anonymous address set, or None if it is not one."""
    items = [item.strip() for item in body.split(",") if item.strip()]
    try:
        return [(ipaddress.IPv4Network(item, strict=False), item) for item in items]
    except ValueError:
        return None


def _merged(items: list[tuple[ipaddress.IPv4Network, str]]) -> list[ipaddress.IPv4Network]:
    """The elements nft keeps: duplicates and elements inside another one are merged away."""
    nets = sorted({net for net, _ in items}, key=lambda n: (n.network_address, n.prefixlen))
    return [n for n in nets if not any(o != n and n.subnet_of(o) for o in nets)]


def _adjacent_ranges(nets: list[ipaddress.IPv4Network]) -> bool:
    """Whether nft would join neighbours into a range (``a-b``), which is not reproduced."""
    return any(
        int(a.broadcast_address) + 1 == int(b.network_address)
        and (a.prefixlen < 32 or b.prefixlen < 32)
        for a, b in itertools.pairwise(nets)
    )


def _anonymous_set(body: str) -> str:
    """An anonymous set's body as nft prints it; vmaps keep their order."""
    items = _address_items(body)
    if items is None:
        parts = [item.strip() for item in body.split(",") if item.strip()]
        if any(":" in part for part in parts):
            return "{ " + ", ".join(parts) + " }"
        return "{ " + body + " }"  # not an address set (e.g. ``{ ip saddr }``): leave it
    shown = [str(n.network_address) if n.prefixlen == 32 else str(n) for n in _merged(items)]
    # A set written with one element loses its braces; merged down to one, it keeps them.
    return shown[0] if len(items) == 1 else "{ " + ", ".join(shown) + " }"


def unreproduced_merges(table: NftTable) -> list[str]:
    """Rules whose anonymous address sets nft would print as joined ranges (not reproduced).

    nft joins neighbouring intervals (``10.0.0.0/25`` + ``10.0.0.128/25`` + ``10.0.1.0`` print
    as ``10.0.0.0-10.0.1.0``); :func:`list_table` prints them unjoined, so callers warn.
    """
    found = []
    for rule in table.rules:
        for body in _BRACES.findall(rule.rule):
            items = _address_items(body)
            if items is not None and _adjacent_ranges(_merged(items)):
                found.append(f"{rule.chain}: {rule.rule}")
    return found


def canonical_rule(rule: str) -> str:
    """A kube-proxy rule (knftables syntax) as ``nft list`` prints it back."""
    rule = _MARK_OR.sub(lambda m: f"meta mark set meta mark | {_hex8(m[1])}", rule)
    rule = _MARK_XOR.sub(lambda m: f"meta mark set meta mark ^ {_hex8(m[1])}", rule)
    rule = _MARK_AND.sub(lambda m: f"meta mark & {_hex8(m[1])} == {_hex8(m[2])}", rule)
    return _BRACES.sub(lambda m: _anonymous_set(m[1]), rule)


def _key_types(s: NftSet) -> list[str]:
    key = s.type.split(":")[0]
    return [part.strip() for part in key.split(".")]


def _field_bytes(kind: str, text: str) -> bytes:
    """One key field in network byte order, padded to a 4-byte register."""
    if kind == "ipv4_addr":
        raw = ipaddress.IPv4Address(text).packed
    elif kind == "inet_proto":
        raw = bytes([_PROTOCOLS.get(text, 0) if not text.isdigit() else int(text)])
    else:
        raw = int(text, 0).to_bytes(_FIELD_BYTES.get(kind, 4), "big")
    return raw + bytes(-len(raw) % 4)


def _element_order(s: NftSet, element: NftElement) -> int:
    kinds = _key_types(s)
    blob = b"".join(_field_bytes(k, t) for k, t in zip(kinds, element.key, strict=True))
    if len(kinds) == 1:
        return int.from_bytes(blob[: _FIELD_BYTES.get(kinds[0], 4)], "big")
    return int.from_bytes(blob, "little")


def _element_text(element: NftElement) -> str:
    text = " . ".join(element.key)
    if element.comment is not None:
        text += f' comment "{element.comment}"'
    if element.value:
        text += " : " + " . ".join(element.value)
    return text


def _elements_text(s: NftSet, elements: tuple[NftElement, ...]) -> str:
    ordered = sorted(elements, key=lambda e: _element_order(s, e))
    kinds = _key_types(s)
    per_line = _PER_LINE.get(kinds[0], 1) if len(kinds) == 1 else 1
    out = ""
    for index, element in enumerate(ordered):
        if index:
            out += _ELEMENTS_INDENT if index % per_line == 0 else ", "
        out += _element_text(element)
    return "{ " + out + " }"


def _set_block(s: NftSet, elements: tuple[NftElement, ...]) -> list[str]:
    lines = [f"\t{'map' if s.is_map else 'set'} {s.name} {{", f"\t\ttype {s.type}"]
    if "dynamic" in s.flags:
        lines.append(f"\t\tsize {DYNAMIC_SET_DEFAULT_SIZE}")
    if s.flags:
        lines.append(f"\t\tflags {','.join(s.flags)}")
    if s.timeout_s is not None:
        lines.append(f"\t\ttimeout {duration_text(s.timeout_s)}")
    if s.comment is not None:
        lines.append(f'\t\tcomment "{s.comment}"')
    if elements:
        lines.append(f"\t\telements = {_elements_text(s, elements)}")
    return [*lines, "\t}"]


def _chain_block(table: NftTable, chain: NftChain) -> list[str]:
    lines = [f"\tchain {chain.name} {{"]
    if chain.hook is not None and chain.priority is not None:
        prio = priority_text(chain.hook, chain.priority)
        lines.append(f"\t\ttype {chain.type} hook {chain.hook} priority {prio}; policy accept;")
    if chain.comment is not None:
        lines.append(f'\t\tcomment "{chain.comment}"')
    for rule in table.chain_rules(chain.name):
        text = canonical_rule(rule.rule)
        if rule.comment is not None:
            text += f' comment "{rule.comment}"'
        lines.append(f"\t\t{text}")
    return [*lines, "\t}"]


def list_table(table: NftTable) -> str:
    """``nft list table <family> <name>`` output for ``table`` loaded from its dump."""
    chains = sorted(table.chains, key=lambda c: c.name)
    sets = sorted((s for s in table.sets if not s.is_map), key=lambda s: s.name)
    maps = sorted((s for s in table.sets if s.is_map), key=lambda s: s.name)
    blocks = [_set_block(s, table.elements_of(s.name)) for s in (*sets, *maps)]
    blocks += [_chain_block(table, c) for c in chains]
    lines = [f"table {table.family} {table.name} {{"]
    if table.comment is not None:
        lines.append(f'\tcomment "{table.comment}"')
    for index, block in enumerate(blocks):
        if index:
            lines.append("")
        lines += block
    return "\n".join([*lines, "}"]) + "\n"
