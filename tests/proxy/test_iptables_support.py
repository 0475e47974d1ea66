# ruff: noqa: E501 -- expected outputs hold verbatim iptables lines, which cannot be wrapped.
"""Helpers mirroring kubernetes pkg/proxy/iptables/proxier_test.go, plus checks of the helpers.

* :func:`fake_context` is ``NewFakeProxier``'s configuration as a :class:`NodeContext`.
* :func:`as_fake_proxier_text` swaps the real binary's mark spelling ``0x00004000`` for the
  fake proxier's hard-coded ``0x4000`` (the only deliberate difference from upstream's input).
* :func:`sort_iptables_rules` re-implements upstream's ``sortIPTablesRules``: tables by name;
  chains KUBE-NODEPORTS, KUBE-SERVICES, other KUBE-* alphabetically, then the rest; rules keep
  their order within a chain except in KUBE-NODEPORTS and KUBE-SERVICES, which are stable-sorted
  by the service name in their comment (nat KUBE-SERVICES keeps its "must be the last rule"
  rule last). ``assertIPTablesRulesEqual`` compares ``sortIPTablesRules(actual)`` with the
  expected text *verbatim*, and so do the tests here.
* :func:`trace_packet` re-implements upstream's ``tracePacket``: follow every possibly-matching
  rule (probabilistic jumps accumulate outputs), history-dependent matches (``--rcheck``,
  ``--mark``, ``--ctstate``) never match, interface matches always do.
"""

from __future__ import annotations

import ipaddress
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

import pytest

from svcsim.k8s.objects import (
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    ObjectMeta,
    Protocol,
    Service,
)
from svcsim.netfilter.model import (
    AddrTypeMatch,
    ConntrackMatch,
    DnatTarget,
    JumpTarget,
    MarkMatch,
    PortMatch,
    RecentMatch,
    RejectTarget,
    Rule,
    Ruleset,
    StatisticMatch,
)
from svcsim.proxy.context import NodeContext

TEST_NODE_NAME = "test-node"
TEST_NODE_IP = "192.168.0.2"
TEST_NODE_IP_ALT = "192.168.1.2"
TEST_EXTERNAL_IP = "192.168.99.11"
TEST_EXTERNAL_CLIENT = "203.0.113.2"
TEST_EXTERNAL_CLIENT_BLOCKED = "203.0.113.130"
TEST_NODE_IPS = (TEST_NODE_IP, TEST_NODE_IP_ALT, TEST_EXTERNAL_IP)
"""The IPv4 part of upstream's ``testNodeIPs`` (also the fake's eth0 addresses)."""


def fake_context(**overrides: Any) -> NodeContext:
    """``NewFakeProxier`` (IPv4): node test-node, nodeIP 192.168.0.2, pod CIDR 10.0.0.0/8 as the
    local detector, localhost NodePorts on, both nfacct counters present, no --random-fully."""
    values: dict[str, Any] = {
        "node_name": TEST_NODE_NAME,
        "node_ips": TEST_NODE_IPS,
        "local_detector": "ClusterCIDR",
        "local_detector_value": "10.0.0.0/8",
        "random_fully": False,
        "nfacct": True,
        "localhost_nodeports": True,
    }
    values.update(overrides)
    return NodeContext(**values)


def as_fake_proxier_text(text: str) -> str:
    """Replace the real mark spelling with the fake proxier's ``masqueradeMark: "0x4000"``."""
    return text.replace("0x00004000", "0x4000")


def dedent(text: str) -> str:
    """``dedent.Dedent`` + ``strings.TrimLeft``, as upstream prepares expected texts."""
    return textwrap.dedent(text).lstrip(" \t\n")


def make_service(namespace: str, name: str, **spec: Any) -> Service:
    """``makeTestService``."""
    return Service(meta=ObjectMeta(name=name, namespace=namespace), **spec)


def make_slice(
    namespace: str,
    service: str,
    endpoints: tuple[Endpoint, ...],
    ports: tuple[EndpointPort, ...],
    slice_num: int = 1,
    address_type: str = "IPv4",
) -> EndpointSlice:
    """``makeTestEndpointSlice``: named ``<service>-<n>`` with the service-name label."""
    return EndpointSlice(
        meta=ObjectMeta(
            name=f"{service}-{slice_num}",
            namespace=namespace,
            labels=((SERVICE_NAME_LABEL, service),),
        ),
        address_type=address_type,
        endpoints=endpoints,
        ports=ports,
    )


def ep(
    ip: str,
    node: str | None = None,
    ready: bool | None = None,
    serving: bool | None = None,
    terminating: bool | None = None,
    zones: tuple[str, ...] = (),
) -> Endpoint:
    """One endpoint with the given address, nodeName, conditions and zone hints."""
    return Endpoint(
        addresses=(ip,),
        node_name=node,
        conditions=EndpointConditions(ready=ready, serving=serving, terminating=terminating),
        hint_zones=zones,
    )


def port(number: int, name: str = "", protocol: Protocol = Protocol.TCP) -> EndpointPort:
    """One EndpointSlice port."""
    return EndpointPort(port=number, protocol=protocol, name=name)


# --- sortIPTablesRules --------------------------------------------------------------------

_COMMENT = re.compile(r'--comment ("[^"]*"|\S+)')


@dataclass
class _Table:
    name: str
    chains: list[str] = field(default_factory=list)
    rules: dict[str, list[str]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)


def _comment_of(rule: str) -> str | None:
    m = _COMMENT.search(rule)
    return m.group(1).strip('"') if m else None


def _service_name(rule: str) -> str:
    comment = _comment_of(rule) or ""
    return re.split(r"[ :]", comment, maxsplit=1)[0]


def _chain_key(name: str) -> tuple[int, str]:
    if name == "KUBE-NODEPORTS":
        return (0, name)
    if name == "KUBE-SERVICES":
        return (1, name)
    return (2 if name.startswith("KUBE-") else 3, name)


def parse_dump(text: str) -> list[_Table]:
    """``ParseIPTablesDump`` (restore input or save output; counters ignored)."""
    tables: list[_Table] = []
    current: _Table | None = None
    for raw in text.strip("\n").split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = _Table(line[1:])
            tables.append(current)
        elif current is None:
            raise ValueError(f"line outside a table: {line!r}")
        elif line.startswith(":"):
            chain = line[1:].split()[0]
            current.chains.append(chain)
            current.rules[chain] = []
        elif line.startswith("-A "):
            chain = line.split()[1]
            if chain not in current.rules:
                raise ValueError(f"rule for undeclared chain: {line!r}")
            current.rules[chain].append(line)
        elif line.startswith("-X "):
            current.deleted.append(line.split()[1])
        elif line == "COMMIT":
            current = None
        else:
            raise ValueError(f"cannot parse {line!r}")
    return tables


def sort_iptables_rules(text: str) -> str:
    """Upstream ``sortIPTablesRules`` (see the module docstring)."""
    tables = sorted(parse_dump(text), key=lambda t: t.name)
    out: list[str] = []
    for t in tables:
        chains = sorted(t.chains, key=_chain_key)
        rules = {c: list(t.rules[c]) for c in chains}
        if "KUBE-NODEPORTS" in rules:
            rules["KUBE-NODEPORTS"].sort(key=_service_name)
        if "KUBE-SERVICES" in rules:
            if t.name == "nat":
                rules["KUBE-SERVICES"].sort(
                    key=lambda r: (
                        "must be the last rule" in (_comment_of(r) or ""),
                        _service_name(r),
                    )
                )
            else:
                rules["KUBE-SERVICES"].sort(key=_service_name)
        out.append(f"*{t.name}")
        out += [f":{c} - [0:0]" for c in chains]
        out += [r for c in chains for r in rules[c]]
        out += [f"-X {c}" for c in chains if c in t.deleted]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def chain_rules(text: str, table: str, chain: str) -> str:
    """``assertIPTablesChainEqual``'s view: one chain's rule lines, newline-terminated."""
    for t in parse_dump(text):
        if t.name == table:
            return "".join(r + "\n" for r in t.rules.get(chain, []))
    return ""


# --- tracePacket --------------------------------------------------------------------------


@dataclass
class _Tracer:
    ruleset: Ruleset
    local_ips: frozenset[str]
    matches: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    mark_masq: bool = False

    def rule_matches(self, rule: Rule, src: str, proto: str, dst: str, dport: int) -> bool:
        src_ip, dst_ip = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        if rule.source is not None and not rule.source.matches(src_ip):
            return False
        addrtype = rule.find(AddrTypeMatch)
        if isinstance(addrtype, AddrTypeMatch):
            if addrtype.src_type is not None:
                hit = (src in self.local_ips) == (addrtype.src_type == "LOCAL")
                if hit == addrtype.src_negated:
                    return False
            if addrtype.dst_type is not None:
                hit = (dst in self.local_ips) == (addrtype.dst_type == "LOCAL")
                if hit == addrtype.dst_negated:
                    return False
        if rule.protocol is not None and not rule.protocol.matches(proto):
            return False
        if rule.destination is not None and not rule.destination.matches(dst_ip):
            return False
        ports = rule.find(PortMatch)
        dports = ports.destination_port if isinstance(ports, PortMatch) else None
        if dports is not None and not dports.contains(dport):
            return False
        for m in rule.matches:
            if isinstance(m, RecentMatch) and m.command == "rcheck":
                return False
            if isinstance(m, MarkMatch | ConntrackMatch):
                return False
        return True

    def run_chain(self, table: str, chain: str, src: str, proto: str, dst: str, dport: int) -> bool:
        c = self.ruleset.chain(table, chain)
        if c is None:
            return False
        for rule in c.rules:
            if rule.target is None or not self.rule_matches(rule, src, proto, dst, dport):
                continue
            self.matches.append(f"-A {chain} {rule.text}")
            target = rule.target
            if isinstance(target, RejectTarget):
                self.outputs.append("REJECT")
                return True
            if isinstance(target, DnatTarget):
                self.outputs.append(target.to_destination)
                return True
            if not isinstance(target, JumpTarget):
                continue
            if target.chain == "KUBE-MARK-MASQ":
                self.mark_masq = True
                continue
            if target.chain in ("ACCEPT", "DROP"):
                self.outputs.append(target.chain)
                return True
            terminated = self.run_chain(table, target.chain, src, proto, dst, dport)
            if terminated and rule.find(StatisticMatch) is None:
                return True
        return False


def trace_packet(
    ruleset: Ruleset,
    src: str,
    dst: str,
    dport: int,
    proto: str = "tcp",
    node_ips: tuple[str, ...] = TEST_NODE_IPS,
) -> tuple[list[str], str, bool]:
    """Upstream ``tracePacket``: ``(matched rules, outputs joined by ", ", masqueraded)``."""
    tracer = _Tracer(ruleset, frozenset({"127.0.0.1", "::1", *node_ips}))
    tracer.run_chain("nat", "PREROUTING", src, proto, dst, dport)
    if tracer.outputs:
        dst = tracer.outputs[0].split(":")[0]
    for chain in (
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ):
        tracer.run_chain("filter", chain, src, proto, dst, dport)
    return tracer.matches, ", ".join(tracer.outputs), tracer.mark_masq


@dataclass(frozen=True)
class Flow:
    """One ``packetFlowTest``."""

    name: str
    src: str
    dst: str
    dport: int
    output: str
    masq: bool = False
    proto: str = "tcp"


def assert_flows(ruleset: Ruleset, flows: list[Flow]) -> None:
    """``runPacketFlowTests``: every flow's output and masquerade flag, with the matched rules."""
    failures = []
    for f in flows:
        matched, output, masq = trace_packet(ruleset, f.src, f.dst, f.dport, f.proto)
        if output != f.output or masq != f.masq:
            failures.append(
                f"{f.name}: {f.proto} {f.src} -> {f.dst}:{f.dport} gave output {output!r} "
                f"masq {masq} (want {f.output!r} masq {f.masq}); matched:\n  "
                + "\n  ".join(matched)
            )
    assert not failures, "\n".join(failures)


# --- checks of the helpers themselves ------------------------------------------------------


def test_sort_matches_same_service_in_different_comment_styles() -> None:
    """TestSortIPTablesRules "correctly match same service name in different styles of comments"."""
    given = dedent("""
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" svc1 line 1
        -A KUBE-SERVICES -m comment --comment ns1/svc1 svc1 line 2
        -A KUBE-SERVICES -m comment --comment "ns1/svc1 blah" svc1 line 3
        -A KUBE-SERVICES -m comment --comment ns4/svc4 svc4 line 1
        -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" svc4 line 2
        -A KUBE-SERVICES -m comment --comment "ns4/svc4 blah" svc4 line 3
        -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" svc3 line 1
        -A KUBE-SERVICES -m comment --comment "ns3/svc3 blah" svc3 line 2
        -A KUBE-SERVICES -m comment --comment ns3/svc3 svc3 line 3
        COMMIT
        """)
    lines = sort_iptables_rules(given).splitlines()
    order = [line.split()[-3] + line[-1] for line in lines if line.startswith("-A")]
    assert order == [f"svc{s}{n}" for s in "1234" for n in "123"]


def test_sort_chain_order_and_unknown_chains() -> None:
    """TestSortIPTablesRules "unexpected junk lines are preserved"."""
    given = dedent("""
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
        :KUBE-AAAAA - [0:0]
        :KUBE-ZZZZZ - [0:0]
        :WHY-IS-THIS-CHAIN-HERE - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
        -A KUBE-ZZZZZ -m comment --comment "mystery chain number 1"
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A WHY-IS-THIS-CHAIN-HERE -j ACCEPT
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-AAAAA -m comment --comment "mystery chain number 2"
        COMMIT
        """)
    expected = dedent("""
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        :KUBE-AAAAA - [0:0]
        :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
        :KUBE-ZZZZZ - [0:0]
        :WHY-IS-THIS-CHAIN-HERE - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-AAAAA -m comment --comment "mystery chain number 2"
        -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
        -A KUBE-ZZZZZ -m comment --comment "mystery chain number 1"
        -A WHY-IS-THIS-CHAIN-HERE -j ACCEPT
        COMMIT
        """)
    assert sort_iptables_rules(given) == expected


def test_parse_dump_rejects_rules_for_undeclared_chains() -> None:
    with pytest.raises(ValueError, match="undeclared"):
        parse_dump("*nat\n-A KUBE-SVC-X -j ACCEPT\nCOMMIT\n")
