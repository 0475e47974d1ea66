"""Read :func:`~svcsim.netfilter.nftables.dump`'s ``nft -f`` text back into an NftTable.

Only the shapes ``dump`` writes (knftables' ``add ...`` lines, one object each): enough for
tests to check that a table's parse equals the parse of its text, as the kernel would load it.
Rules come back grouped by chain and elements by container (the dump's order).
"""

from __future__ import annotations

import re

from svcsim.netfilter.nftables import NftChain, NftElement, NftRule, NftSet, NftTable

_COMMENT = re.compile(r' comment "((?:[^"\\]|\\.)*)"')


def _unquote(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


def _split_comment(text: str) -> tuple[str, str | None]:
    found = _COMMENT.search(text)
    if found is None:
        return text, None
    return text[: found.start()] + text[found.end() :], _unquote(found[1])


def _options(body: str) -> dict[str, str]:
    """``{ type X ; flags a,b ; comment "c" ; }`` as {word: rest}."""
    inner = body.strip().removeprefix("{").removesuffix("}")
    out: dict[str, str] = {}
    for item in inner.split(" ;"):
        word, _, rest = item.strip().partition(" ")
        if word:
            out[word] = _unquote(rest.strip('"')) if word == "comment" else rest
    return out


def read_dump(text: str) -> NftTable:
    """The table ``text`` (one table's ``dump``) adds."""
    family = name = ""
    comment: str | None = None
    chains: list[NftChain] = []
    sets: list[NftSet] = []
    rules: list[NftRule] = []
    elements: list[NftElement] = []
    for line in text.splitlines():
        words = line.split(" ", 5)
        kind = words[1]
        if kind == "table":
            family, name = words[2], words[3].split()[0]
            rest = line.partition("{")[2]
            comment = _options("{" + rest).get("comment") if rest else None
            continue
        obj, _, rest = (words[4] + (" " + words[5] if len(words) > 5 else "")).partition(" ")
        if kind == "chain":
            opts = _options(rest) if rest else {}
            if "type" in opts:
                chain_type, _, hook_priority = opts["type"].partition(" hook ")
                hook, _, priority = hook_priority.partition(" priority ")
                chains.append(NftChain(obj, chain_type, hook, int(priority), opts.get("comment")))
            else:
                chains.append(NftChain(obj, comment=opts.get("comment")))
        elif kind in ("set", "map"):
            opts = _options(rest)
            timeout = opts.get("timeout")
            sets.append(
                NftSet(
                    obj,
                    opts["type"],
                    is_map=kind == "map",
                    flags=tuple(opts["flags"].split(",")) if "flags" in opts else (),
                    timeout_s=int(timeout.removesuffix("s")) if timeout else None,
                    comment=opts.get("comment"),
                )
            )
        elif kind == "rule":
            rule, rule_comment = _split_comment(rest)
            rules.append(NftRule(obj, rule, rule_comment))
        elif kind == "element":
            body = rest.strip().removeprefix("{ ").removesuffix(" }")
            key_text, _, value_text = body.partition(" : ")
            key_text, element_comment = _split_comment(key_text)
            value = tuple(value_text.split(" . ")) if value_text else ()
            elements.append(NftElement(obj, tuple(key_text.split(" . ")), value, element_comment))
        else:
            raise ValueError(f"unexpected line {line!r}")
    return NftTable(
        family, name, comment, tuple(chains), tuple(sets), tuple(rules), tuple(elements)
    )
