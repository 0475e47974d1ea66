"""One assembled iptables sync: its kernel state now, its restore text when someone asks.

:func:`assemble` puts the fragments of a full sync (the fixed head, one block per service port,
the fixed tail; :mod:`svcsim.proxy.iptables_assembly`) together into the kernel state a clean
node holds afterwards. :func:`reassemble` makes the next sync's state from the previous one when
only a few service ports' blocks changed: as kube-proxy's partial sync writes only the changed
Services' chains (kubernetes ``pkg/proxy/iptables/proxier.go`` @531be812, ``syncProxyRules``
with ``MinimizeIPTablesRestore``), it replaces only those blocks' chains
(:mod:`svcsim.proxy.iptables_layout`), so its cost follows the change, not the cluster. Both give
the same :class:`Assembly` for the same fragments (a test replays random changes against full
assemblies).

The iptables-restore text (hundreds of thousands of lines for 10,000 Services) is written only
when read (:meth:`Assembly.restore_text`): the simulation installs the state as data and needs
only line counts, ``svcsim rules`` prints it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from svcsim.netfilter.model import Ruleset
from svcsim.proxy.caches import CompileCaches
from svcsim.proxy.iptables_assembly import (
    JUMP_RULES,
    NatLine,
    PartLines,
    RestoreSections,
    assembled_state,
    chain_lines,
    lines_of,
    rule_lines,
)
from svcsim.proxy.iptables_layout import TableLayout, fixed_chain_names, layout_of, splice_part
from svcsim.proxy.iptables_service import KUBE_PROXY_CANARY, RestoreBuffers, ServicePortBlock
from svcsim.proxy.names import is_service_chain

PROTECTED: Final = {
    table: frozenset(j.dst_chain for j in JUMP_RULES if j.table == table)
    for table in ("nat", "filter")
}
"""Per table, the chains the jump rules ensure: placed at the end when nobody declares them."""


class LineCounts(NamedTuple):
    """Chain (``:CHAIN``) and rule (``-A``) lines of a restore input, per table."""

    filter_chains: int
    filter_rules: int
    nat_chains: int
    nat_rules: int


@dataclass(frozen=True, slots=True)
class Assembly:
    """The kernel state of one full sync, what it was assembled from, and its text on demand."""

    parts: tuple[ServicePortBlock, ...]
    lines: tuple[PartLines, ...]
    """Each fragment's lines and chains (:func:`~svcsim.proxy.iptables_assembly.lines_of`)."""
    ruleset: Ruleset
    counts: LineCounts
    nat: TableLayout | None
    """Where each fragment's nat chains are (None: not of the plain shape, see
    :func:`~svcsim.proxy.iptables_layout.layout_of`)."""
    filter: TableLayout | None
    """The same for the filter table."""
    nat_fixed_rules: int
    """nat rule lines whose chain is no service chain (a partial sync writes all of them)."""
    nat_fixed_parts: tuple[int, ...]
    """Fragments that declare a nat chain that is no service chain (the fixed head, tail)."""
    filter_declared: tuple[str, ...]
    """The filter chains the fragments declare, in order (a partial sync writes them all)."""
    single_lines: bool
    """No line of the text holds a line break (:attr:`PartLines.single_lines` of every
    fragment): the text's lines are the fragments' lines."""
    _text: list[str] = field(default_factory=list, repr=False, compare=False)
    """The restore text once written (a one-element list: the frozen object's cache)."""
    _sections: list[RestoreSections | None] = field(default_factory=list, repr=False, compare=False)
    """:meth:`sections` once split (the same kind of cache)."""

    def buffers(self) -> RestoreBuffers:
        """kube-proxy's four buffers holding every fragment (built on each call)."""
        buf = RestoreBuffers()
        for part in self.parts:
            part.replay(buf)
        return buf

    def restore_text(self) -> str:
        """The iptables-restore input in kube-proxy's line order (written once, when asked)."""
        if not self._text:
            self._text.append(self._write_text())
        return self._text[0]

    def _write_text(self) -> str:
        nat_declared = [c for p in self.parts for c in p.nat_chains]
        text = ["*filter", *chain_lines(self.filter_declared)]
        for part in self.parts:
            text += rule_lines(part.filter_rules)
        text += ["COMMIT", "*nat", *chain_lines(nat_declared)]
        for part in self.parts:
            text += rule_lines(part.nat_rules)
        text.append("COMMIT")
        return "\n".join(text) + "\n"

    def sections(self) -> RestoreSections | None:
        """:meth:`restore_text` as the lines outside the nat table and the nat table's lines.

        None if a line holds a line break (only splitting the text tells them then). Made
        once, when asked.
        """
        if not self._sections:
            self._sections.append(self._split())
        return self._sections[0]

    def _split(self) -> RestoreSections | None:
        if not self.single_lines:
            return None
        other = ["*filter", *chain_lines(self.filter_declared)]
        for part in self.parts:
            other += rule_lines(part.filter_rules)
        other.append("COMMIT")
        nat_declared = [c for p in self.parts for c in p.nat_chains]
        nat: list[NatLine] = [
            (line, c, True) for line, c in zip(chain_lines(nat_declared), nat_declared, strict=True)
        ]
        for part in self.parts:
            nat += [(f"-A {c} {r.text}", c, False) for c, r in part.nat_rules]
        return tuple(other), tuple(nat)


def assemble(parts: tuple[ServicePortBlock, ...], caches: CompileCaches | None = None) -> Assembly:
    """The assembly of the concatenated fragments, memoised.

    Keyed by the fragments' identities (the entry holds them, so the ids stay theirs): nodes
    that compile the same informer state get the very same fragment objects (from
    :func:`~svcsim.proxy.iptables_assembly.fixed_head_tail` and
    :func:`~svcsim.proxy.iptables_service.service_port_block`), hence one ruleset object between
    them. Its ruleset equals ``kernel_state(buf)`` and its text ``buf.restore_text()`` for the
    fragments replayed into ``buf``. ``caches``: the run's; None computes afresh.
    """
    caches = caches if caches is not None else CompileCaches()
    key = tuple(map(id, parts))
    hit = caches.assembled.get(key)
    if hit is not None:
        return hit
    lines = tuple(lines_of(part, caches) for part in parts)
    nat_declared = [c for p in parts for c in p.nat_chains]
    filter_declared = [c for p in parts for c in p.filter_chains]
    state = assembled_state(nat_declared, filter_declared, lines, caches.interner)
    layouts = [
        layout_of(
            table,
            [p.nat_chains if name == "nat" else p.filter_chains for p in parts],
            [of_part.written_names(name) for of_part in lines],
            fixed_chain_names(name, KUBE_PROXY_CANARY),
        )
        for name in ("nat", "filter")
        if (table := state.table(name)) is not None
    ]
    built = Assembly(
        parts,
        lines,
        state,
        LineCounts(
            len(filter_declared),
            sum(len(p.filter_rules) for p in parts),
            len(nat_declared),
            sum(len(p.nat_rules) for p in parts),
        ),
        layouts[0],
        layouts[1],
        sum(of_part.nat_fixed_rules for of_part in lines),
        tuple(i for i, p in enumerate(parts) if not all(map(is_service_chain, p.nat_chains))),
        tuple(filter_declared),
        all(of_part.single_lines for of_part in lines),
    )
    for table in state.tables:
        # Counted once here, then carried through every table spliced from it: a partial
        # restore's -X check asks how many rules jump to a chain (Table.jump_count).
        table.jump_count("")
        # The same for the chains' places (a partial restore finds the chains it rewrites).
        table.position("")
        # And the chains in pieces: a splice copies the pieces it changes, not ~110,000 chains.
        table.chunks()
    return caches.assembled.put(key, built, holds=parts)


def reassemble(
    previous: Assembly, changed: Mapping[int, ServicePortBlock], caches: CompileCaches
) -> Assembly | None:
    """:func:`assemble` of ``previous.parts`` with ``changed`` ones, from ``previous``'s state.

    ``changed``: fragment index -> its new block. Builds only the changed fragments' chains
    and the tables around them (see the module docstring); memoised with :func:`assemble`'s
    memo. None when a change is not a plain replacement of a service port's own chains
    (:func:`~svcsim.proxy.iptables_layout.splice_part`): call :func:`assemble` then.
    """
    parts = list(previous.parts)
    for index, block in changed.items():
        parts[index] = block
    key = tuple(map(id, parts))
    hit = caches.assembled.get(key)
    if hit is not None:
        return hit
    nat, filter_ = previous.nat, previous.filter
    if nat is None or filter_ is None:
        return None
    lines = list(previous.lines)
    counts = previous.counts
    fixed_rules = previous.nat_fixed_rules
    filter_declared = previous.filter_declared
    single_lines = previous.single_lines
    interner = caches.interner
    for index, block in changed.items():
        old, old_lines = previous.parts[index], lines[index]
        if index in previous.nat_fixed_parts or not all(map(is_service_chain, block.nat_chains)):
            return None
        new_lines = lines_of(block, caches)
        nat = splice_part(
            nat,
            index,
            (old.nat_chains, old_lines.written("nat")),
            (block.nat_chains, new_lines.written("nat")),
            PROTECTED["nat"],
            interner,
        )
        if nat is None:
            return None
        filter_ = splice_part(
            filter_,
            index,
            (old.filter_chains, old_lines.written("filter")),
            (block.filter_chains, new_lines.written("filter")),
            PROTECTED["filter"],
            interner,
        )
        if filter_ is None:
            return None
        counts = LineCounts(
            counts.filter_chains + len(block.filter_chains) - len(old.filter_chains),
            counts.filter_rules + len(block.filter_rules) - len(old.filter_rules),
            counts.nat_chains + len(block.nat_chains) - len(old.nat_chains),
            counts.nat_rules + len(block.nat_rules) - len(old.nat_rules),
        )
        fixed_rules += new_lines.nat_fixed_rules - old_lines.nat_fixed_rules
        single_lines = single_lines and new_lines.single_lines
        if block.filter_chains != old.filter_chains:
            filter_declared = ()  # recounted below, once
        lines[index] = new_lines
    mangle = previous.ruleset.table("mangle")
    assert mangle is not None  # every assembly has it (assembled_state)
    ruleset = interner.ruleset((mangle, nat.table, filter_.table))
    if not filter_declared:
        filter_declared = tuple(c for p in parts for c in p.filter_chains)
    if not single_lines:
        single_lines = all(of_part.single_lines for of_part in lines)
    built = Assembly(
        tuple(parts),
        tuple(lines),
        ruleset,
        counts,
        nat,
        filter_,
        fixed_rules,
        previous.nat_fixed_parts,
        filter_declared,
        single_lines,
    )
    return caches.assembled.put(key, built, holds=built.parts)
