"""Reading ``nft list ruleset`` / ``nft list table ip kube-proxy`` as a real node prints it.

The inverse of :mod:`svcsim.netfilter.nftables_list` for kube-proxy's table: its blocks give
back an :class:`~svcsim.netfilter.nftables.NftTable` (chains with their hooks and numeric
priorities, sets and maps with flags, timeouts and elements, rules with their comments), with
the rules turned back from nft's canonical syntax into the syntax kube-proxy writes
(``meta mark set meta mark | 0x00004000`` is ``mark set mark or 0x4000``), so the same parser
and walk as for svcsim's own tables evaluate them (:mod:`svcsim.netfilter.nft_parse`). Tables
other than ``ip kube-proxy`` (a CNI's, firewalld's) are listed and skipped: the walk covers
kube-proxy's table only, and the caller says so. Problems are :class:`NftListError` with the
line they are on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from svcsim.netfilter.nftables import NftChain, NftElement, NftRule, NftSet, NftTable

KUBE_PROXY_TABLE: Final = ("ip", "kube-proxy")

_PRIORITIES: Final = {
    "raw": -300,
    "mangle": -150,
    "dstnat": -100,
    "filter": 0,
    "security": 50,
    "srcnat": 100,
}
"""nft's standard priority names for family ip (see nftables_list._STANDARD_PRIORITIES)."""

_UNITS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_TABLE = re.compile(r"^table (\w+) (\S+) \{$")
_BLOCK = re.compile(r"^(chain|set|map) (\S+) \{$")
_BASE = re.compile(r"^type (\w+) hook (\w+) (?:device \S+ )?priority ([^;]+); policy (\w+);$")
_COMMENT = re.compile(r'^comment "((?:[^"\\]|\\.)*)"$')
_TRAILING_COMMENT = re.compile(r' comment "((?:[^"\\]|\\.)*)"$')
_MARK_OR = re.compile(r"\bmeta mark set meta mark \| (0x[0-9a-f]+)")
_MARK_XOR = re.compile(r"\bmeta mark set meta mark \^ (0x[0-9a-f]+)")
_MARK_AND = re.compile(r"\bmeta mark & (0x[0-9a-f]+) == (0x[0-9a-f]+)")


class NftListError(ValueError):
    """Text that is not ``nft list`` output svcsim can read; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class NftListing:
    """What a listing held: kube-proxy's table (None if absent) and the other tables' names."""

    kube_proxy: NftTable | None
    others: tuple[str, ...]


def priority_value(text: str) -> int:
    """``dstnat - 10`` / ``-110`` / ``filter`` as a number."""
    text = text.strip()
    match = re.fullmatch(r"(\w+)(?: ([+-]) (\d+))?", text)
    if match and match[1] in _PRIORITIES:
        offset = int(match[3] or 0)
        return _PRIORITIES[match[1]] + (offset if match[2] != "-" else -offset)
    return int(text)


def seconds(text: str) -> int:
    """Nft's ``1d2h3m4s`` as seconds."""
    parts = re.findall(r"(\d+)([dhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def kube_proxy_rule(text: str) -> str:
    """A rule as nft prints it, in the syntax kube-proxy writes (``canonical_rule`` undone)."""
    text = _MARK_OR.sub(lambda m: f"mark set mark or {int(m[1], 16):#x}", text)
    text = _MARK_XOR.sub(lambda m: f"mark set mark xor {int(m[1], 16):#x}", text)
    return _MARK_AND.sub(lambda m: f"mark and {int(m[1], 16):#x} == {int(m[2], 16):#x}", text)


def _unquote(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


class _Reader:
    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.i = 0

    def next(self) -> tuple[int, str] | None:
        while self.i < len(self.lines):
            self.i += 1
            line = self.lines[self.i - 1].strip()
            if line and not line.startswith("#"):
                return self.i, line
        return None


def read_listing(text: str) -> NftListing:
    """Every table of an ``nft list ruleset`` (or ``list table``) output; see the module doc."""
    r = _Reader(text)
    table: NftTable | None = None
    others: list[str] = []
    while (item := r.next()) is not None:
        number, line = item
        found = _TABLE.match(line)
        if found is None:
            raise NftListError(number, f"expected 'table FAMILY NAME {{', got {line[:60]!r}")
        family, name = found[1], found[2]
        if (family, name) == KUBE_PROXY_TABLE:
            table = _table(r, family, name)
        else:
            others.append(f"{family} {name}")
            _skip(r, number)
    return NftListing(table, tuple(others))


def _skip(r: _Reader, start: int) -> None:
    depth = 1
    while depth:
        item = r.next()
        if item is None:
            raise NftListError(start, "table block never closed (truncated?)")
        depth += item[1].count("{") - item[1].count("}")


def _table(r: _Reader, family: str, name: str) -> NftTable:
    comment: str | None = None
    chains: list[NftChain] = []
    sets: list[NftSet] = []
    rules: list[NftRule] = []
    elements: list[NftElement] = []
    while (item := r.next()) is not None:
        number, line = item
        if line == "}":
            return NftTable(family, name, comment, tuple(chains), tuple(sets), tuple(rules),
                            tuple(elements))  # fmt: skip
        if (found := _COMMENT.match(line)) is not None:
            comment = _unquote(found[1])
            continue
        block = _BLOCK.match(line)
        if block is None:
            raise NftListError(number, f"expected a chain, set or map block, got {line[:60]!r}")
        kind, block_name = block[1], block[2]
        if kind == "chain":
            chain, chain_rules = _chain(r, block_name)
            chains.append(chain)
            rules.extend(chain_rules)
        else:
            nft_set, set_elements = _set(r, block_name, is_map=kind == "map", start=number)
            sets.append(nft_set)
            elements.extend(set_elements)
    raise NftListError(len(r.lines), f"table {family} {name} never closed (truncated?)")


def _chain(r: _Reader, name: str) -> tuple[NftChain, list[NftRule]]:
    kind = hook = None
    priority: int | None = None
    comment: str | None = None
    rules: list[NftRule] = []
    while (item := r.next()) is not None:
        number, line = item
        if line == "}":
            return NftChain(name, kind, hook, priority, comment), rules
        base = _BASE.match(line)
        if base is not None:
            kind, hook = base[1], base[2]
            try:
                priority = priority_value(base[3])
            except ValueError:
                raise NftListError(number, f"chain {name}: priority {base[3]!r}") from None
            continue
        if (found := _COMMENT.match(line)) is not None and not rules:
            comment = _unquote(found[1])
            continue
        rule_comment = None
        if (found := _TRAILING_COMMENT.search(line)) is not None:
            rule_comment = _unquote(found[1])
            line = line[: found.start()]
        rules.append(NftRule(name, kube_proxy_rule(line), rule_comment))
    raise NftListError(len(r.lines), f"chain {name} never closed (truncated?)")


def _set(r: _Reader, name: str, *, is_map: bool, start: int) -> tuple[NftSet, list[NftElement]]:
    fields: dict[str, str] = {}
    body: list[str] = []
    collecting = False
    while (item := r.next()) is not None:
        _, line = item
        if collecting:
            body.append(line)
            collecting = not line.endswith("}")
            continue
        if line == "}":
            break
        key, _, value = line.partition(" ")
        if key == "elements":
            body.append(value.removeprefix("= "))
            collecting = not line.endswith("}")
            continue
        fields[key] = value
    else:
        raise NftListError(start, f"{'map' if is_map else 'set'} {name} never closed")
    try:
        timeout = seconds(fields["timeout"]) if "timeout" in fields else None
    except ValueError as exc:
        raise NftListError(start, f"{name}: {exc}") from None
    comment = _COMMENT.match(f"comment {fields['comment']}") if "comment" in fields else None
    flags = tuple(f.strip() for f in fields.get("flags", "").split(",") if f.strip())
    nft_set = NftSet(
        name,
        fields.get("type", ""),
        is_map=is_map,
        flags=flags,
        timeout_s=timeout,
        comment=_unquote(comment[1]) if comment else None,
    )
    return nft_set, _elements(name, " ".join(body), is_map)


def _elements(name: str, text: str, is_map: bool) -> list[NftElement]:
    text = text.strip()
    if not text:
        return []
    inner = text.removeprefix("{").removesuffix("}").strip()
    out: list[NftElement] = []
    for part in _split_top(inner):
        comment = None
        key_text, sep, value_text = part.partition(" : ")
        if (found := _TRAILING_COMMENT.search(key_text)) is not None:
            comment = _unquote(found[1])
            key_text = key_text[: found.start()]
        key = tuple(k.strip() for k in key_text.split(" . "))
        value = tuple(v.strip() for v in value_text.split(" . ")) if sep else ()
        out.append(NftElement(name, key, value, comment))
    return out


def _split_top(text: str) -> list[str]:
    """``a, b, c`` split on commas outside quotes."""
    parts: list[str] = []
    current = ""
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts
