"""The dispatch index agrees with the interpreter, path for path and draw for draw."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from svcsim.netfilter import index as index_module
from svcsim.netfilter.index import (
    MAX_PATHS,
    REFUSE_CHECK_AFTER,
    DispatchIndex,
    DispatchTooLargeError,
    RecentCondition,
    StatisticCondition,
    build_dispatch,
)
from svcsim.netfilter.interpreter import trace
from svcsim.netfilter.packet import NodeNetwork, Origin, Packet, VerdictKind
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.statistic import threshold_from_probability
from svcsim.netfilter.text import parse_save
from svcsim.netfilter.walk_other import TraceError

NODE_IP = "192.168.0.10"
NETWORK = NodeNetwork((NODE_IP,), pod_cidr="10.244.1.0/24")
CLUSTER_CIDR = "10.244.0.0/16"
TOP = (1 << 31) - 1


# --- rulesets in kube-proxy's shape (kube-proxy-facts.md §1.4-§1.10) --------------------------


@dataclass(frozen=True)
class Svc:
    index: int
    endpoints: tuple[str, ...]
    affinity_s: int | None
    node_port: int | None
    etp_local: bool

    @property
    def vip(self) -> str:
        return f"10.96.0.{self.index + 1}"

    @property
    def local_endpoints(self) -> tuple[str, ...]:
        return tuple(ip for ip in self.endpoints if ip.startswith("10.244.1."))


def _probability(n: int) -> str:
    return f"{1.0 / n:0.10f}"  # kube-proxy's computeProbability


def _endpoint_rules(svc: Svc, chain: str, endpoints: tuple[str, ...]) -> list[str]:
    name = f"default/s{svc.index}:p"
    rules = []
    if svc.affinity_s is not None:
        for ep in endpoints:
            sep = _sep(svc, ep)
            rules.append(
                f'-A {chain} -m comment --comment "{name} -> {ep}:8080" -m recent --name {sep} '
                f"--rcheck --seconds {svc.affinity_s} --reap -j {sep}"
            )
    for j, ep in enumerate(endpoints):
        stat = ""
        if j < len(endpoints) - 1:
            stat = f"-m statistic --mode random --probability {_probability(len(endpoints) - j)} "
        comment = f'-m comment --comment "{name} -> {ep}:8080"'
        rules.append(f"-A {chain} {comment} {stat}-j {_sep(svc, ep)}")
    return rules


def _sep(svc: Svc, ep: str) -> str:
    return f"KUBE-SEP-S{svc.index}-{ep.replace('.', '-')}"


def kube_proxy_save(services: list[Svc]) -> str:
    nat: list[str] = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        "-A KUBE-POSTROUTING -j MASQUERADE --random-fully",
    ]
    nat_chains = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"}
    flt: list[str] = [
        "-A INPUT -m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES",
        "-A FORWARD -j KUBE-FORWARD",
        "-A FORWARD -m conntrack --ctstate NEW -j KUBE-SERVICES",
        "-A FORWARD -m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES",
        "-A OUTPUT -m conntrack --ctstate NEW -j KUBE-SERVICES",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        "-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT",
    ]
    flt_chains = {"KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD"}
    for svc in services:
        name, svc_chain = f"default/s{svc.index}:p", f"KUBE-SVC-S{svc.index}"
        match = f"-p tcp -m tcp -d {svc.vip} --dport 80"
        if not svc.endpoints:
            flt.append(
                f'-A KUBE-SERVICES {match} -m comment --comment "{name} has no endpoints" -j REJECT'
            )
            if svc.node_port:
                flt.append(
                    f"-A KUBE-EXTERNAL-SERVICES -m addrtype --dst-type LOCAL -p tcp "
                    f"-m tcp --dport {svc.node_port} -j REJECT"
                )
            continue
        nat_chains.add(svc_chain)
        nat.append(f"-A KUBE-SERVICES {match} -j {svc_chain}")
        nat.append(f"-A {svc_chain} {match} ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ")
        nat += _endpoint_rules(svc, svc_chain, svc.endpoints)
        for ep in svc.endpoints:
            sep = _sep(svc, ep)
            nat_chains.add(sep)
            recent = f"-m recent --name {sep} --set " if svc.affinity_s is not None else ""
            nat.append(f"-A {sep} -s {ep} -j KUBE-MARK-MASQ")
            nat.append(f"-A {sep} {recent}-p tcp -m tcp -j DNAT --to-destination {ep}:8080")
        if svc.node_port:
            ext = f"KUBE-EXT-S{svc.index}"
            nat_chains.add(ext)
            nat.append(f"-A KUBE-NODEPORTS -p tcp -m tcp --dport {svc.node_port} -j {ext}")
            if not svc.etp_local:
                nat += [f"-A {ext} -j KUBE-MARK-MASQ", f"-A {ext} -j {svc_chain}"]
            else:
                nat += [
                    f"-A {ext} -s {CLUSTER_CIDR} -j {svc_chain}",
                    f"-A {ext} -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                    f"-A {ext} -m addrtype --src-type LOCAL -j {svc_chain}",
                ]
                if svc.local_endpoints:
                    svl = f"KUBE-SVL-S{svc.index}"
                    nat_chains.add(svl)
                    nat.append(f"-A {ext} -j {svl}")
                    nat += _endpoint_rules(svc, svl, svc.local_endpoints)
                else:
                    flt.append(
                        f"-A KUBE-EXTERNAL-SERVICES -m addrtype --dst-type LOCAL -p tcp "
                        f"-m tcp --dport {svc.node_port} -j DROP"
                    )
    nat.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    lines = ["*filter", *(f":{c} - [0:0]" for c in sorted(flt_chains)), *flt, "COMMIT", "*nat"]
    lines += [*(f":{c} - [0:0]" for c in sorted(nat_chains)), *nat, "COMMIT"]
    return "\n".join(lines) + "\n"


ENDPOINT_POOL = [f"10.244.{node}.{host}" for node in (1, 2, 3) for host in range(2, 7)]


@st.composite
def services(draw: st.DrawFn) -> list[Svc]:
    count = draw(st.integers(1, 4))
    out = []
    for i in range(count):
        endpoints = draw(st.lists(st.sampled_from(ENDPOINT_POOL), max_size=8, unique=True))
        out.append(
            Svc(
                index=i,
                endpoints=tuple(sorted(endpoints)),
                affinity_s=draw(st.one_of(st.none(), st.sampled_from([1, 10, 10800]))),
                node_port=draw(st.one_of(st.none(), st.just(30000 + i))),
                etp_local=draw(st.booleans()),
            )
        )
    return out


THRESHOLD_EDGES = sorted(
    {threshold_from_probability(_probability(n)) + d for n in range(2, 9) for d in (-1, 0)}
)
draw_values = st.one_of(st.sampled_from(THRESHOLD_EDGES), st.integers(0, TOP))


@dataclass(frozen=True)
class Key:
    src: str
    origin: Origin
    dst: str
    dport: int


@st.composite
def keys(draw: st.DrawFn, svcs: list[Svc]) -> Key:
    svc = draw(st.sampled_from(svcs))
    origin: Origin = draw(st.sampled_from(["pod", "host", "external"]))
    src = {
        "pod": draw(st.sampled_from([*svc.endpoints, "10.244.1.200"])),
        "host": NODE_IP,
        "external": "203.0.113.9",
    }[origin]
    if draw(st.booleans()) and svc.node_port:
        dst = "127.0.0.1" if origin == "host" and draw(st.booleans()) else NODE_IP
        return Key(src, origin, dst, svc.node_port)
    return Key(src, origin, svc.vip, draw(st.sampled_from([80, 80, 81])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), svcs=services())
def test_resolve_agrees_with_trace(data: st.DataObject, svcs: list[Svc]) -> None:
    ruleset = parse_save(kube_proxy_save(svcs))
    index = DispatchIndex(ruleset, NETWORK)
    key = data.draw(keys(svcs))
    dispatch = index.lookup(key.src, key.origin, key.dst, "tcp", key.dport)
    packet = Packet(key.src, key.dst, "tcp", key.dport, origin=key.origin)
    by_trace, by_index = RecentTable(), RecentTable()
    now_s = 0.0
    connections = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from([0.0, 0.5, 1.0, 1.5, 10.0, 10800.0, 20000.0]),
                st.lists(draw_values, min_size=1, max_size=9),
            ),
            min_size=1,
            max_size=4,
        )
    )
    for gap_s, draws in connections:
        now_s += gap_s
        expected = trace(
            ruleset, packet, NETWORK, draw=itertools.cycle(draws), recent=by_trace, now_s=now_s
        )
        got = dispatch.resolve(itertools.cycle(draws), by_index, now_s)
        assert got == expected.outcome, expected.format()
        assert by_index.snapshot() == by_trace.snapshot()
    assert len(index) == 1


@settings(max_examples=80, deadline=None)
@given(data=st.data(), svcs=services())
def test_choose_agrees_with_resolve_row_by_row(data: st.DataObject, svcs: list[Svc]) -> None:
    index = DispatchIndex(parse_save(kube_proxy_save(svcs)), NETWORK)
    key = data.draw(keys(svcs))
    dispatch = index.lookup(key.src, key.origin, key.dst, "tcp", key.dport)
    width = max(dispatch.max_draws, 1)
    rows = data.draw(
        st.lists(st.lists(draw_values, min_size=width, max_size=width), min_size=1, max_size=12)
    )
    matrix = np.array(rows, dtype=np.uint32)
    chosen = dispatch.choose(matrix, assume_empty_recent=True)
    for row, pick in zip(rows, chosen, strict=True):
        assert pick == dispatch.resolve_index(iter(row), RecentTable())
    total = sum(dispatch.outcome_probabilities(assume_empty_recent=True), Fraction(0))
    assert total == 1


@pytest.mark.parametrize("endpoints", [1, 2, 3, 5, 8])
def test_choose_frequencies_match_exact_probabilities(endpoints: int) -> None:
    svc = Svc(0, tuple(ENDPOINT_POOL[:endpoints]), None, None, False)
    index = DispatchIndex(parse_save(kube_proxy_save([svc])), NETWORK)
    dispatch = index.lookup("10.244.1.200", "pod", svc.vip, "tcp", 80)
    assert dispatch.is_chain and dispatch.max_draws == endpoints - 1
    assert [o.dnat for o in dispatch.outcomes] == [(ep, 8080) for ep in svc.endpoints]
    probabilities = dispatch.outcome_probabilities()
    assert sum(probabilities) == 1
    size = 200_000
    counts = np.bincount(
        dispatch.choose(np.random.default_rng(20240601), size), minlength=len(dispatch.outcomes)
    )
    if endpoints == 1:
        assert counts.tolist() == [size]
        return
    expected = np.array([float(p) * size for p in probabilities])
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_kube_proxy_chain_probabilities_are_the_quantised_products() -> None:
    svc = Svc(0, tuple(ENDPOINT_POOL[:3]), None, None, False)
    dispatch = build_dispatch(
        parse_save(kube_proxy_save([svc])), Packet("10.244.1.200", svc.vip, "tcp", 80), NETWORK
    )
    q3 = Fraction(715827883, 1 << 31)
    q2 = Fraction(1, 2)
    assert dispatch.outcome_probabilities() == (q3, (1 - q3) * q2, (1 - q3) * (1 - q2))
    assert [len(p.conditions) for p in dispatch.paths] == [1, 2, 2]
    assert dispatch.paths[2].conditions == (
        StatisticCondition(715827883, False, False),
        StatisticCondition(1 << 30, False, False),
    )


def test_affinity_paths_have_recent_conditions() -> None:
    svc = Svc(0, tuple(ENDPOINT_POOL[:2]), 10800, None, False)
    dispatch = build_dispatch(
        parse_save(kube_proxy_save([svc])), Packet("10.244.1.200", svc.vip, "tcp", 80), NETWORK
    )
    assert dispatch.has_recent and not dispatch.is_chain
    assert len(dispatch.outcomes) == 2  # sticky and fresh paths share outcomes
    first = dispatch.paths[0].conditions
    assert isinstance(first[0], RecentCondition) and first[0].matched
    assert dispatch.outcomes[0].recent_sets == ((_sep(svc, svc.endpoints[0]), "10.244.1.200"),)
    with pytest.raises(ValueError, match="recent"):
        dispatch.choose(np.zeros((4, 1), dtype=np.uint32))
    with pytest.raises(ValueError, match="recent"):
        dispatch.outcome_probabilities()
    assert dispatch.outcome_probabilities(assume_empty_recent=True) == (Fraction(1, 2),) * 2


def test_no_endpoints_is_one_reject_path() -> None:
    svc = Svc(0, (), None, 30000, False)
    dispatch = DispatchIndex(parse_save(kube_proxy_save([svc])), NETWORK).lookup(
        "10.244.1.200", "pod", svc.vip, "tcp", 80
    )
    assert [o.verdict for o in dispatch.outcomes] == [VerdictKind.REJECT]
    assert dispatch.max_draws == 0 and dispatch.is_chain
    assert dispatch.choose(np.random.default_rng(1), 5).tolist() == [0] * 5


# --- arbitrary shapes ------------------------------------------------------------------------

ODD_SHAPE = """*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -m statistic --mode random --probability 0.5 -j INNER
-A FORWARD -m statistic --mode random ! --probability 0.25 -j MARK --or-mark 0x1
-A FORWARD -m mark --mark 0x1 -m statistic --mode random --probability 0.5 -j DROP
-A INNER -m statistic --mode random --probability 0.5 -j REJECT
-A INNER -m statistic --mode random --probability 0.5
COMMIT
"""


def test_odd_shapes_are_enumerated_exactly() -> None:
    ruleset = parse_save(ODD_SHAPE)
    packet = Packet("10.244.1.2", "10.244.2.2", "tcp", 80)
    dispatch = build_dispatch(ruleset, packet, NETWORK)
    assert not dispatch.is_chain
    assert sum(dispatch.outcome_probabilities()) == 1
    kinds = {
        o.verdict: p
        for o, p in zip(dispatch.outcomes, dispatch.outcome_probabilities(), strict=True)
    }
    # REJECT: 1/2 * 1/2. DROP: reach rule 3 with mark 1 (statistic not below 1/4) then 1/2.
    assert kinds[VerdictKind.REJECT] == Fraction(1, 4)
    assert kinds[VerdictKind.DROP] == Fraction(3, 4) * Fraction(3, 4) * Fraction(1, 2)
    rng = np.random.default_rng(5)
    matrix = rng.integers(0, 1 << 31, size=(3000, dispatch.max_draws), dtype=np.uint32)
    chosen = dispatch.choose(matrix)
    for row, pick in zip(matrix[:300], chosen[:300], strict=True):
        expected = trace(ruleset, packet, NETWORK, draw=iter(int(v) for v in row))
        assert dispatch.outcomes[pick] == expected.outcome
    counts = np.bincount(chosen, minlength=len(dispatch.outcomes))
    expected_counts = [float(p) * len(chosen) for p in dispatch.outcome_probabilities()]
    assert stats.chisquare(counts, expected_counts).pvalue > 1e-3


def test_set_then_check_refuses_assume_empty() -> None:
    ruleset = parse_save(
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m recent --name L --set\n"
        "-A FORWARD -m recent --name L --rcheck -j DROP\nCOMMIT\n"
    )
    packet = Packet("10.244.1.2", "10.244.2.2", "tcp", 80)
    dispatch = build_dispatch(ruleset, packet, NETWORK)
    with pytest.raises(ValueError, match="just set"):
        dispatch.choose(np.zeros((1, 1), dtype=np.uint32), assume_empty_recent=True)
    assert dispatch.resolve(None, RecentTable()).verdict is VerdictKind.DROP


def test_too_many_paths_is_a_clear_error() -> None:
    rules = "\n".join("-A FORWARD -m statistic --mode random --probability 0.5" for _ in range(8))
    ruleset = parse_save(f"*filter\n:FORWARD ACCEPT [0:0]\n{rules}\nCOMMIT\n")
    packet = Packet("10.244.1.2", "10.244.2.2", "tcp", 80)
    with pytest.raises(DispatchTooLargeError, match="more than 100 paths"):
        build_dispatch(ruleset, packet, NETWORK, max_paths=100)
    assert len(build_dispatch(ruleset, packet, NETWORK).paths) == 256
    assert MAX_PATHS == 10_000


def test_lookup_is_memoised_per_key() -> None:
    svc = Svc(0, tuple(ENDPOINT_POOL[:2]), None, None, False)
    index = DispatchIndex(parse_save(kube_proxy_save([svc])), NETWORK)
    first = index.lookup("10.244.1.200", "pod", svc.vip, "tcp", 80)
    assert index.lookup("10.244.1.200", "pod", svc.vip, "tcp", 80) is first
    assert index.lookup("10.244.1.201", "pod", svc.vip, "tcp", 80) is not first
    assert len(index) == 2


def test_choose_checks_the_draw_matrix() -> None:
    svc = Svc(0, tuple(ENDPOINT_POOL[:3]), None, None, False)
    dispatch = DispatchIndex(parse_save(kube_proxy_save([svc])), NETWORK).lookup(
        "10.244.1.200", "pod", svc.vip, "tcp", 80
    )
    with pytest.raises(ValueError, match="do not give 2"):
        dispatch.choose(np.zeros((3, 1), dtype=np.uint32))
    with pytest.raises(ValueError, match="size"):
        dispatch.choose(np.random.default_rng(0))


@pytest.mark.parametrize(
    ("rules", "target", "max_paths", "paths", "walks"),
    [
        (3, "", MAX_PATHS, 8, 8),  # under REFUSE_CHECK_AFTER paths: no check walk
        (6, "", MAX_PATHS, 64, 65),  # the check walk once, at the 16th path
        (6, "", 40, None, 38),  # 6 choices pass the check; refused past 40 paths
        (60, "", 40, None, 2),  # the first walk leaves too many to explore: checked, refused
        (60, " -j DROP", 40, None, REFUSE_CHECK_AFTER + 1),  # a chain of 61 ways: the check
        (60, " -j DROP", MAX_PATHS, 61, 62),
    ],
)
def test_the_bound_check_walk_comes_only_for_many_paths(
    rules: int,
    target: str,
    max_paths: int,
    paths: int | None,
    walks: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same dispatch or same error as checking first; no check walk for keys of few paths."""
    line = f"-A FORWARD -m statistic --mode random --probability 0.5{target}"
    ruleset = parse_save(
        f"*filter\n:FORWARD ACCEPT [0:0]\n{chr(10).join([line] * rules)}\nCOMMIT\n"
    )
    packet = Packet("10.244.1.2", "10.244.2.2", "tcp", 80)
    calls = itertools.count()
    real = index_module.walk

    def counted(*args: Any, **kwargs: Any) -> Any:
        next(calls)
        return real(*args, **kwargs)

    monkeypatch.setattr(index_module, "walk", counted)
    if paths is not None:
        assert len(build_dispatch(ruleset, packet, NETWORK, max_paths=max_paths).paths) == paths
    else:
        with pytest.raises(DispatchTooLargeError, match=f"more than {max_paths} paths"):
            build_dispatch(ruleset, packet, NETWORK, max_paths=max_paths)
    assert next(calls) == walks


def test_a_failing_enumeration_fails_as_checking_first_would() -> None:
    """The "matched" walk meets a missing chain, the other one too many choices: too large."""
    rules = ["-A FORWARD -m statistic --mode random --probability 0.5 -j MISSING"]
    rules += ["-A FORWARD -m statistic --mode random --probability 0.5 -j DROP"] * 60
    ruleset = parse_save(f"*filter\n:FORWARD ACCEPT [0:0]\n{chr(10).join(rules)}\nCOMMIT\n")
    packet = Packet("10.244.1.2", "10.244.2.2", "tcp", 80)
    with pytest.raises(DispatchTooLargeError, match="more than 40 paths"):
        build_dispatch(ruleset, packet, NETWORK, max_paths=40)
    with pytest.raises(TraceError, match="missing chain"):
        build_dispatch(ruleset, packet, NETWORK)
