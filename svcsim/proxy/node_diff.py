"""What a node holds against what kube-proxy should have written there, per Service.

Models are compared, not text (DESIGN decision 10): for each Service port, svcsim sends the
same probes (its cluster IP from a local Pod and from the host; its NodePort, external IPs
and load-balancer IPs from outside) through the ruleset kube-proxy would write
(:func:`svcsim.proxy.iptables.compile_iptables_sync`) and through the node's own, and compares
every path (:func:`svcsim.netfilter.paths.enumerate_walks`): which endpoints the node DNATs to
and with what probability, the verdict, masquerading, session affinity. Counters, rule order
kube-proxy does not care about, and chains that Service packets never reach cannot show up.
Differences are said in kube-proxy's and the user's words: stale and missing endpoints,
Services without rules, rules that differ, chains nobody references, other software's rules
on the path. Where the node's rules ask what svcsim cannot know (an ipset's members), each
answer is compared and a difference that holds only for some answers says so.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from svcsim.k8s.objects import Service
from svcsim.netfilter.model import (
    Ruleset,
)
from svcsim.netfilter.node_save import NodeDump
from svcsim.netfilter.other_eval import NodeFacts
from svcsim.netfilter.packet import NodeNetwork, Origin, Packet
from svcsim.netfilter.paths import WalkPath, enumerate_walks
from svcsim.proxy.node_findings import (
    Finding,
    other_software,
    services_not_in_cluster,
    unknown_reached,
    unreferenced,
)

EXTERNAL_SOURCE: Final = "203.0.113.7"
"""The source of probes from outside the cluster (TEST-NET-3, RFC 5737: no real client)."""


@dataclass(frozen=True, slots=True)
class ServiceDiff:
    """One Service port: its name, the frontends probed, what was found."""

    service: str
    frontends: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def agrees(self) -> bool:
        """True if nothing found differs."""
        return not any(f.differs for f in self.findings)


@dataclass(frozen=True, slots=True)
class NodeDiff:
    """The whole comparison: per Service, then what belongs to no Service of the cluster."""

    services: tuple[ServiceDiff, ...]
    elsewhere: tuple[Finding, ...]
    notes: tuple[str, ...] = ()

    @property
    def agrees(self) -> bool:
        """True if the node holds what kube-proxy should have written (exit code 0)."""
        return all(s.agrees for s in self.services) and not any(f.differs for f in self.elsewhere)

    def reached_unknown(self) -> list[Finding]:
        """Rules with an extension svcsim does not know that a probe reached (bad input)."""
        found = [f for s in self.services for f in s.findings if f.kind == "unknown-rule"]
        return list({(f.line, f.message): f for f in found}.values())


@dataclass(frozen=True, slots=True)
class _Probe:
    """A packet sent to one frontend of a Service port."""

    origin: Origin
    frontend: str
    packet: Packet

    @property
    def who(self) -> str:
        return {"pod": "a local Pod", "host": "the node", "external": "outside"}[self.origin]


_Key = tuple[str, str | None, bool]
"""What a path did, as compared: (verdict or STOPPED, DNAT endpoint, masqueraded)."""


def diff_node(
    services: Sequence[Service],
    expected: Ruleset,
    dump: NodeDump,
    network: NodeNetwork,
    *,
    pod_source: str | None,
    facts: NodeFacts | None = None,
) -> NodeDiff:
    """Compare ``dump`` with ``expected`` (compiled for the same node) for every Service port.

    ``pod_source`` is the address of a Pod on this node used as the source of Pod probes (None:
    no Pod probes, e.g. without a cluster CIDR). ``network`` is the node's, as for ``trace``.
    """
    results: list[ServiceDiff] = []
    expected_names: set[str] = set()
    for service in services:
        if service.cluster_ip in ("", "None") or service.type.value == "ExternalName":
            continue
        for port in service.ports:
            name = f"{service.meta.namespace}/{service.meta.name}:{port.name or port.port}"
            expected_names.add(name)
            probes = _probes(
                service, port.port, port.node_port, port.protocol.value.lower(), network, pod_source
            )
            findings: list[Finding] = []
            for probe in probes:
                findings += _compare(probe, expected, dump, network, facts)
            frontends = tuple(dict.fromkeys(p.frontend for p in probes))
            results.append(ServiceDiff(name, frontends, tuple(_unique(findings))))
    elsewhere = services_not_in_cluster(dump, expected_names) + unreferenced(dump)
    notes = []
    if pod_source is None:
        notes.append("no --cluster-cidr: traffic from local Pods was not compared")
    return NodeDiff(tuple(results), tuple(elsewhere), tuple(notes))


def _probes(
    service: Service,
    port: int,
    node_port: int,
    protocol: str,
    network: NodeNetwork,
    pod_source: str | None,
) -> list[_Probe]:
    if protocol not in ("tcp", "udp", "sctp"):
        return []
    host = network.node_ips[0]
    probes = []
    cluster = f"{service.cluster_ip}:{port}/{protocol}"
    if pod_source is not None:
        packet = Packet(pod_source, service.cluster_ip, protocol, port, origin="pod")
        probes.append(_Probe("pod", cluster, packet))
    probes.append(
        _Probe("host", cluster, Packet(host, service.cluster_ip, protocol, port, origin="host"))
    )
    if node_port:
        packet = Packet(EXTERNAL_SOURCE, host, protocol, node_port, origin="external")
        probes.append(_Probe("external", f"NodePort {host}:{node_port}/{protocol}", packet))
    outside = [*service.external_ips, *(i.ip for i in service.load_balancer_ingress if i.ip)]
    for address in outside:
        if ipaddress.ip_address(address).version != 4:
            continue
        packet = Packet(EXTERNAL_SOURCE, address, protocol, port, origin="external")
        probes.append(_Probe("external", f"{address}:{port}/{protocol}", packet))
    return probes


def _compare(
    probe: _Probe, expected: Ruleset, dump: NodeDump, network: NodeNetwork, facts: NodeFacts | None
) -> list[Finding]:
    want = enumerate_walks(expected, probe.packet, network)
    have = enumerate_walks(dump.ruleset, probe.packet, network, facts=facts)
    findings = unknown_reached(have.paths, dump)
    if findings:
        return findings
    want_dist = _distribution(want.paths)
    groups: dict[tuple[tuple[str, bool], ...], list[WalkPath]] = defaultdict(list)
    for path in have.paths:
        groups[tuple((a.question, a.answer) for a in path.assumptions)].append(path)
    per_group = [
        (assumed, _differences(probe, want_dist, _distribution(paths), paths, dump))
        for assumed, paths in groups.items()
    ]
    findings += _merge(per_group)
    findings += _affinity(probe, want.paths, have.paths)
    findings += other_software(probe.frontend, probe.who, have.paths, dump)
    if not have.complete:
        findings.append(
            Finding("undecided", f"{probe.frontend} from {probe.who}: too many paths, cut short")
        )
    return findings


def _distribution(paths: Iterable[WalkPath]) -> dict[_Key, Fraction]:
    """Probability of each (verdict, endpoint, masquerade) over paths with the same assumptions."""
    dist: dict[_Key, Fraction] = defaultdict(Fraction)
    for path in paths:
        if path.probability == 0:
            continue
        if path.outcome is None:
            assert path.stopped is not None
            dist["STOPPED", path.stopped.reason, False] += path.probability
            continue
        outcome = path.outcome
        endpoint = f"{outcome.dnat[0]}:{outcome.dnat[1]}" if outcome.dnat else None
        dist[outcome.verdict.value, endpoint, outcome.masquerade] += path.probability
    return dict(dist)


def _endpoints(dist: dict[_Key, Fraction]) -> dict[str, Fraction]:
    out: dict[str, Fraction] = defaultdict(Fraction)
    for (verdict, endpoint, _masq), p in dist.items():
        if verdict == "ACCEPT" and endpoint is not None:
            out[endpoint] += p
    return dict(out)


def _differences(
    probe: _Probe,
    want: dict[_Key, Fraction],
    have: dict[_Key, Fraction],
    paths: list[WalkPath],
    dump: NodeDump | None,
) -> list[Finding]:
    """What differs between two distributions, in kube-proxy's and the user's words.

    ``paths`` and ``dump`` (an iptables node's) name other software's rules and the rule that
    decided a verdict; without them (an nftables node) the findings say what, not where.
    """
    if want == have:
        return []
    where = f"{probe.frontend} from {probe.who}"
    want_ep, have_ep = _endpoints(want), _endpoints(have)
    found: list[Finding] = []
    translators = _translators(paths)
    for endpoint in sorted(set(have_ep) - set(want_ep)):
        chains = translators.get(endpoint, set())
        foreign = sorted(c for c in chains if not c.startswith("KUBE-"))
        if foreign:
            found.append(
                Finding(
                    "other-software",
                    f"{', '.join(foreign)} (not kube-proxy's) translates {where} to {endpoint}",
                )
            )
            continue
        found.append(
            Finding(
                "stale-endpoint",
                f"stale endpoint {endpoint}: the node still DNATs "
                f"{where} to it, but the cluster has no such ready endpoint",
            )
        )
    for endpoint in sorted(set(want_ep) - set(have_ep)):
        if have_ep:
            found.append(
                Finding(
                    "missing-endpoint",
                    f"missing endpoint {endpoint}: the cluster "
                    f"has it, but the node never DNATs {where} to it",
                )
            )
    if want_ep and not have_ep:
        verdicts = sorted({k[0] for k in have})
        if verdicts == ["ACCEPT"]:
            found.append(
                Finding(
                    "no-rules",
                    f"no rules: the node lets {where} through "
                    "untranslated; kube-proxy should DNAT it to "
                    f"{', '.join(sorted(want_ep))}",
                )
            )
    want_verdicts = {k[0] for k in want}
    by_verdict: dict[str, Fraction] = defaultdict(Fraction)
    for (verdict, detail, _masq), p in sorted(have.items(), key=str):
        by_verdict[verdict] += p
        if verdict == "STOPPED":
            found.append(Finding("undecided", f"{where}: the walk stops ({detail})"))
    for verdict, p in sorted(by_verdict.items()):
        if verdict in ("DROP", "REJECT") and verdict not in want_verdicts:
            decider = _decided_by(paths, verdict, dump)
            found.append(
                Finding(
                    "verdict",
                    f"the node {verdict}s {where} (probability "
                    f"{_pct(p)}){decider}; kube-proxy's rules would not",
                )
            )
    if (
        not want_ep
        and not have_ep
        and "REJECT" in want_verdicts
        and "REJECT" not in {k[0] for k in have}
    ):
        found.append(
            Finding(
                "no-rules",
                f"{where}: the cluster has no endpoints (kube-proxy "
                "would REJECT it), but the node has no such rule",
            )
        )
    for endpoint in sorted(set(want_ep) & set(have_ep)):
        if want_ep[endpoint] != have_ep[endpoint]:
            found.append(
                Finding(
                    "probability",
                    f"probability of {endpoint} for {where}: node "
                    f"{_pct(have_ep[endpoint])}, kube-proxy {_pct(want_ep[endpoint])}",
                )
            )
        want_m, have_m = _masquerade(want, endpoint), _masquerade(have, endpoint)
        if want_m != have_m:
            found.append(
                Finding(
                    "masquerade",
                    f"masquerade of {where} to {endpoint}: node {have_m}, kube-proxy {want_m}",
                )
            )
    return found


def _translators(paths: Iterable[WalkPath]) -> dict[str, set[str]]:
    """For each endpoint the paths DNAT to, the chains whose rule did it."""
    out: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        if path.outcome is None or path.outcome.dnat is None:
            continue
        ip, port = path.outcome.dnat
        for step in path.steps:
            if step.matched and step.action.startswith(("DNAT", "REDIRECT")):
                out[f"{ip}:{port}"].add(step.chain)
    return dict(out)


def _masquerade(dist: dict[_Key, Fraction], endpoint: str) -> str:
    flags = {masq for (verdict, ep, masq) in dist if verdict == "ACCEPT" and ep == endpoint}
    return "sometimes" if len(flags) > 1 else ("yes" if flags == {True} else "no")


def _pct(p: Fraction) -> str:
    return f"{float(p):.4g}"


def _decided_by(paths: list[WalkPath], verdict: str, dump: NodeDump | None) -> str:
    if dump is None:
        return ""
    for path in paths:
        if path.outcome is None or path.outcome.verdict.value != verdict:
            continue
        decided = path.outcome.decided_in
        step = next((s for s in reversed(path.steps) if s.matched and s.kind != "route"), None)
        if step is None or decided is None:
            continue
        if step.kind == "policy":
            return f": *{step.table} {step.chain} policy {step.action}"
        line = dump.line_of(step.table, step.chain, (step.rule_index or 0))
        return f": *{step.table} {step.chain} rule {step.rule_number} (line {line})"
    return ""


def _merge(per_group: list[tuple[tuple[tuple[str, bool], ...], list[Finding]]]) -> list[Finding]:
    """Findings of every assumption group: plain if all groups have them, else conditional."""
    if len(per_group) == 1:
        return per_group[0][1]
    out: list[Finding] = []
    every = set.intersection(*({f.message for f in found} for _, found in per_group))
    seen: set[str] = set()
    for assumed, found in per_group:
        for finding in found:
            if finding.message in every:
                if finding.message not in seen:
                    seen.add(finding.message)
                    out.append(finding)
                continue
            when = "; ".join(f"{_short(q)}: {'yes' if a else 'no'}" for q, a in assumed)
            out.append(Finding(finding.kind, finding.message, finding.line, False, when))
    return out


def _short(question: str) -> str:
    """A question without its hint (``(give --ipset ...)``): the hint is printed once."""
    return question.split(" (give ")[0]


def _affinity(probe: _Probe, want: Iterable[WalkPath], have: Iterable[WalkPath]) -> list[Finding]:
    def seconds(paths: Iterable[WalkPath]) -> set[int]:
        return {m.seconds for p in paths for m in p.recent if m.command in ("rcheck", "update")}

    want_s, have_s = seconds(want), seconds(have)
    if want_s == have_s:
        return []

    def say(values: set[int]) -> str:
        return f"ClientIP for {', '.join(f'{s} s' for s in sorted(values))}" if values else "none"

    return [
        Finding(
            "affinity",
            f"session affinity of {probe.frontend}: node {say(have_s)}, kube-proxy {say(want_s)}",
        )
    ]


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    return list({(f.kind, f.message, f.line): f for f in findings}.values())
