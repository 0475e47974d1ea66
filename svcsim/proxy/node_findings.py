"""Findings about a node's rules themselves, for ``diff``: who acts, what belongs to no Service.

:func:`other_software` names the rules of other programs (and a built-in chain's DROP policy)
that act on a probe's paths; :func:`unknown_reached` the rules svcsim does not know that a
probe reached; :func:`services_not_in_cluster` the Service ports the node's kube-proxy chains
name that the cluster does not have; :func:`unreferenced` kube-proxy's per-Service chains that
no rule jumps to. :class:`Finding` is what every part of :mod:`svcsim.proxy.node_diff` reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from svcsim.netfilter.model import (
    CommentMatch,
    DnatTarget,
    JumpTarget,
    MarkTarget,
    OtherTarget,
    RejectTarget,
)
from svcsim.netfilter.node_save import NodeDump
from svcsim.netfilter.packet import TraceStep
from svcsim.netfilter.paths import WalkPath

FindingKind = Literal[
    "stale-endpoint",
    "missing-endpoint",
    "no-rules",
    "verdict",
    "probability",
    "masquerade",
    "affinity",
    "other-software",
    "unknown-rule",
    "undecided",
    "service-not-in-cluster",
    "unreferenced-chain",
]

SERVICE_CHAIN_PREFIXES: Final = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")
"""kube-proxy's per-Service chains: one nobody jumps to is left over from an earlier sync."""

_CHANGING_TARGETS: Final = frozenset(
    {"DNAT", "SNAT", "MASQUERADE", "REDIRECT", "TPROXY", "MARK", "CONNMARK", "NOTRACK", "CT"}
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found: its kind, a sentence, the dump line it is about, whether it differs.

    ``differs`` False marks what the user should see but that does not change the verdict of
    ``diff``: where other software's rules act (their effect shows in the compared paths), and
    findings that hold only under a ``condition``.
    """

    kind: FindingKind
    message: str
    line: int | None = None
    differs: bool = True
    condition: str = ""
    """For a finding that holds only for some answers to what svcsim cannot know (an
    ipset's members...): those answers. Such a finding does not make the node differ."""


def other_software(
    frontend: str, who: str, paths: Iterable[WalkPath], dump: NodeDump
) -> list[Finding]:
    """Other software's rules on the path that drop, reject, translate or mark Service packets.

    Each is where, not whether: what they do to the packet shows in the comparison of paths
    (verdict, endpoints, masquerade), which alone decides whether the node differs. A built-in
    chain's DROP policy that ends a path is named the same way.
    """
    found: list[Finding] = []
    for path in paths:
        for step in path.steps:
            if step.kind == "policy" and step.action == "DROP" and step is path.steps[-1]:
                found.append(
                    Finding(
                        "other-software",
                        f"*{step.table} {step.chain} policy DROP drops {frontend} from {who}",
                        differs=False,
                    )
                )
            if step.kind != "rule" or step.chain.startswith("KUBE-"):
                continue
            finding = _foreign_rule(step, dump, frontend, who)
            if finding is not None:
                found.append(finding)
    matched = {f.line for f in found if f.message.endswith(who)}
    return [f for f in found if f.message.endswith(who) or f.line not in matched]


def _foreign_rule(step: TraceStep, dump: NodeDump, frontend: str, who: str) -> Finding | None:
    chain = dump.ruleset.chain(step.table, step.chain)
    assert chain is not None and step.rule_index is not None
    rule = chain.rules[step.rule_index]
    target = rule.target
    if isinstance(target, JumpTarget):
        name = target.chain
        if name.startswith("KUBE-") or name not in ("DROP",):
            return None
        kind = "DROP"
    elif isinstance(target, RejectTarget):
        kind = "REJECT"
    elif isinstance(target, DnatTarget):
        kind = "DNAT"
    elif isinstance(target, MarkTarget):
        kind = "MARK"
    elif isinstance(target, OtherTarget) and target.name in _CHANGING_TARGETS:
        kind = target.name
    else:
        return None
    line = dump.line_of(step.table, step.chain, step.rule_index)
    where = f"*{step.table} {step.chain} rule {step.rule_number}: -j {kind}"
    if not step.matched:
        # On the path but not taken by this packet: worth knowing, not a difference.
        if kind not in ("DROP", "REJECT", "DNAT"):
            return None
        message = f"{where} is on the path of {frontend} from {who} (not matched)"
        return Finding("other-software", message, line, differs=False)
    message = f"{where} acts on {frontend} from {who}"
    return Finding("other-software", message, line, differs=False)


def unknown_reached(paths: Iterable[WalkPath], dump: NodeDump) -> list[Finding]:
    """The rules with an extension svcsim does not know that ``paths`` stopped at."""
    found = []
    for path in paths:
        stop = path.stopped
        if stop is not None and stop.unknown:
            line = dump.line_of(stop.table, stop.chain, stop.index)
            found.append(
                Finding("unknown-rule", f"*{stop.table} {stop.chain}: {stop.reason}", line)
            )
    return found


def services_not_in_cluster(dump: NodeDump, expected: set[str]) -> list[Finding]:
    """Service ports the node's kube-proxy chains name that the cluster does not have."""
    found: dict[str, Finding] = {}
    for site in dump.sites:
        if not site.chain.startswith("KUBE-") or site.chain.startswith("KUBE-SEP-"):
            continue
        chain = dump.ruleset.chain(site.table, site.chain)
        assert chain is not None
        rule = chain.rules[site.index]
        comment = next((m.comment for m in rule.matches if isinstance(m, CommentMatch)), "")
        name = _service_port_name(comment)
        if name is None or name in expected or name in found:
            continue
        found[name] = Finding(
            "service-not-in-cluster",
            f"the node still has rules for {name}, a Service port the cluster does not have "
            f"(*{site.table} {site.chain}, first on line {site.line})",
            site.line,
        )
    return list(found.values())


def _service_port_name(comment: str) -> str | None:
    """``ns/name:port`` from one of kube-proxy's rule comments, or None."""
    head = comment.split(" ")[0]
    if "/" not in head or ":" not in head:
        return None
    return head


def unreferenced(dump: NodeDump) -> list[Finding]:
    """kube-proxy's per-Service chains of ``dump`` that no rule jumps to."""
    found = []
    for table in dump.ruleset.tables:
        targets = {
            r.target.chain
            for c in table.chains
            for r in c.rules
            if isinstance(r.target, JumpTarget)
        }
        for chain in table.chains:
            if chain.name.startswith(SERVICE_CHAIN_PREFIXES) and chain.name not in targets:
                line = next(
                    (s.line for s in dump.sites if (s.table, s.chain) == (table.name, chain.name)),
                    None,
                )
                found.append(
                    Finding(
                        "unreferenced-chain",
                        f"*{table.name} {chain.name}: no rule jumps to it (left over from an "
                        "earlier sync; kube-proxy deletes it on its next full sync)",
                        line,
                    )
                )
    return found
