"""The userspace sync's portal-rule edits == the plain whole-ruleset version (random cases).

:func:`_ensure_rules` and :func:`_delete_rules` look rules up by identity first and take each
portal's rules as made when it opened; on random kernels (portals' rules in any order, some
missing, some as equal copies that are not the same objects, duplicates) they must do exactly
what the plain value-comparing versions in tests/sim/userspace_naive.py do.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.model import Rule, Ruleset, Table
from svcsim.netfilter.packet import NodeNetwork
from svcsim.netfilter.parse import _parse
from svcsim.proxy.endpoints import ServicePortInfo, build_service_port_map
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.userspace import init_ruleset, portal_rules, portal_ruleset
from svcsim.proxy.userspace_lb import DEFAULT_AFFINITY_S
from svcsim.sim.kernel import Kernel
from svcsim.sim.userspace_proxy import (
    Balancers,
    Portal,
    UserspaceConfig,
    UserspaceProcess,
    _delete_rules,
    _ensure_rules,
    _with_chain,
)
from tests.proxy.ipvs_cases import AFFINITY, cluster_service
from tests.sim.nft_splice_cases import services
from tests.sim.userspace_naive import chain_rules, delete_rules, ensure_rules, scan_plan

HOST = "192.168.0.2"


def _portals(rng: np.random.Generator) -> list[Portal]:
    ports = build_service_port_map(services())
    names = sorted(ports, key=lambda n: n.text)
    order = rng.permutation(len(names))
    return [Portal(names[i], ports[names[i]], 30000 + int(i)) for i in order]


def _portal_rules(portals: list[Portal], host_ip: str) -> Ruleset:
    """The portal chains holding exactly the rules of ``portals`` (in that order)."""
    return portal_ruleset(((p.spn, p.info, p.proxy_port) for p in portals), host_ip)


def _kernel(rng: np.random.Generator, portals: list[Portal]) -> Ruleset:
    """Some portals' rules shuffled per chain, some re-made as equal copies, some twice."""
    base = _portal_rules([p for p in portals if rng.random() < 0.7], HOST)
    tables = []
    for t in base.tables:
        chains = []
        for c in t.chains:
            rules = [r for r in c.rules if rng.random() < 0.8]
            rules = [_parse(r.text, lenient=False) if rng.random() < 0.3 else r for r in rules]
            if rules and rng.random() < 0.2:
                rules.append(rules[int(rng.integers(0, len(rules)))])
            chains.append(
                type(c)(c.name, tuple(rng.permutation(np.array(rules, dtype=object))), c.policy)
                if rules
                else c
            )
        tables.append(Table(t.name, tuple(chains)))
    return Ruleset(tuple(tables))


def _grouped(rules: tuple[tuple[str, str, Rule], ...]) -> dict[tuple[str, str], list[Rule]]:
    out: dict[tuple[str, str], list[Rule]] = {}
    for table, chain, rule in rules:
        out.setdefault((table, chain), []).append(rule)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_ensure_and_delete_match_the_plain_edits(seed: int) -> None:
    """Same rulesets after ensuring every portal and after deleting one portal's rules."""
    rng = np.random.default_rng(seed)
    portals = _portals(rng)
    kernel = _kernel(rng, portals)
    init = chain_rules(init_ruleset())  # iptablesInit's jumps
    # What the sync ensures: each portal's rules as portal_rules makes them when it opens.
    wanted = init + tuple(
        r for p in portals for r in portal_rules(p.spn, p.info, p.proxy_port, HOST)
    )
    full = _portal_rules(portals, HOST)
    assert _grouped(wanted) == _grouped(chain_rules(full))  # each chain's rules, in order
    assert _ensure_rules(kernel, wanted) == ensure_rules(kernel, full)
    gone = portals[int(rng.integers(0, len(portals)))]
    assert chain_rules(_portal_rules([gone], HOST), with_init=False) == portal_rules(
        gone.spn, gone.info, gone.proxy_port, HOST
    )
    doomed = init + portal_rules(gone.spn, gone.info, gone.proxy_port, HOST)
    assert _delete_rules(kernel, doomed) == delete_rules(kernel, _portal_rules([gone], HOST))


def _process() -> tuple[UserspaceProcess, dict[ServicePortName, ServicePortInfo]]:
    kernel = Kernel("n1", NodeNetwork((HOST,)), 1000, ConntrackTimeouts(), mode="userspace")
    config = UserspaceConfig(np.random.default_rng(1), np.random.default_rng(2))
    process = UserspaceProcess(kernel, HOST, config)
    ports = build_service_port_map(services())
    process.adopt(ports, 0.0)
    return process, ports


def _hand_edit(process: UserspaceProcess, chain: str, rules: tuple[Rule, ...]) -> None:
    process.kernel.install(_with_chain(process.kernel.ruleset, "nat", chain, rules), 1.0)


def _builtin(process: UserspaceProcess, chain: str) -> tuple[str, ...]:
    found = process.kernel.ruleset.chain("nat", chain)
    assert found is not None
    return tuple(r.text for r in found.rules)


FOREIGN = _parse("-s 10.9.9.9/32 -j ACCEPT", lenient=False)
"""A rule someone else appended to PREROUTING after kube-proxy's jumps."""


def test_closing_a_portal_keeps_the_init_jumps_where_they_are() -> None:
    """kubernetes pkg/proxy/userspace/proxier.go @v1.25.0 (0096f4a4): ``closePortal`` ->
    ``closeOnePortal`` / ``closeNodePort`` delete the portal's own rules only; the jumps
    ``iptablesInit`` wrote stay in place (they used to be deleted and re-appended after the
    foreign rule)."""
    process, ports = _process()
    before = process.kernel.ruleset.chain("nat", "PREROUTING")
    assert before is not None and len(before.rules) == 2
    _hand_edit(process, "PREROUTING", (*before.rules, FOREIGN))
    expected = _builtin(process, "PREROUTING")
    gone = sorted(ports, key=lambda n: n.text)[0]
    plan = process.plan({k: v for k, v in ports.items() if k != gone}, {gone.service})
    assert plan.close
    process.apply(plan, 2.0, iptables_ok=True)
    assert _builtin(process, "PREROUTING") == expected
    assert gone not in process.portals
    assert not any(gone.text in r for r in _builtin(process, "KUBE-PORTALS-CONTAINER"))


def test_a_missing_init_jump_is_prepended_or_appended_as_iptables_init_does() -> None:
    """``iptablesInit`` (same file) runs on every sync: ``EnsureRule(Prepend)`` for the portal
    jumps of PREROUTING/OUTPUT and INPUT, ``Append`` for the NodePort jumps."""
    process, ports = _process()
    prerouting = process.kernel.ruleset.chain("nat", "PREROUTING")
    assert prerouting is not None
    portals_jump, nodeports_jump = prerouting.rules
    _hand_edit(process, "PREROUTING", (FOREIGN,))  # both jumps deleted by hand
    process.apply(process.plan(ports, ()), 2.0, iptables_ok=True)
    assert _builtin(process, "PREROUTING") == (
        portals_jump.text,
        FOREIGN.text,
        nodeports_jump.text,
    )


@pytest.mark.parametrize("seed", range(6))
def test_a_sync_after_an_untouched_one_equals_ensuring_every_portal(seed: int) -> None:
    """Random syncs (ports re-opened, removed, added back, failed iptables calls, hand edits):
    ensuring only the new portals after an untouched sync == ensuring every portal each time.
    """
    rng = np.random.default_rng(seed)
    fast, ports = _process()
    full, _ = _process()
    names = sorted(ports, key=lambda n: n.text)
    current = dict(ports)
    for step in range(12):
        spn = names[int(rng.integers(0, len(names)))]
        roll = rng.random()
        if roll < 0.35:
            current[spn] = replace(ports[spn], port=ports[spn].port + 1 + step)
        elif roll < 0.6:
            current.pop(spn, None)
        else:
            current[spn] = ports[spn]
        ok = rng.random() > 0.2
        if rng.random() < 0.2:  # someone deletes one rule of a portal chain
            chain = fast.kernel.ruleset.chain("nat", "KUBE-PORTALS-CONTAINER")
            assert chain is not None
            if chain.rules:
                kept = list(chain.rules)
                del kept[int(rng.integers(0, len(kept)))]
                for process in (fast, full):
                    _hand_edit(process, "KUBE-PORTALS-CONTAINER", tuple(kept))
        for process in (fast, full):
            if process is full:
                process._ensured = None  # the reference ensures every portal each sync
            process.apply(process.plan(current, {spn.service}), 2.0 + step, iptables_ok=ok)
        assert fast.kernel.ruleset == full.kernel.ruleset
        assert fast.portals == full.portals
        if ok:  # ensurePortals: every open portal's rules are in the kernel after the sync
            held = set(chain_rules(fast.kernel.ruleset))
            assert all(r in held for r in fast._wanted_rules())
        # Planned from the ports indexed by Service == planned by scanning everything (the
        # map is edited in place here, between plans).
        some = {n.service for n in names if rng.random() < 0.3} | {spn.service, "ns/absent"}
        assert fast.plan(current, some) == scan_plan(fast, current, some)
        assert fast.plan(dict(current), some) == scan_plan(fast, current, some)


def test_a_port_added_in_place_to_the_map_planned_from_is_opened() -> None:
    """The plan's ports-by-Service index follows the map: a key added to the very map
    planned from before is merged like any other, and so is a port of another map."""
    process, ports = _process()
    gone = sorted(ports, key=lambda n: n.text)[0]
    current = {k: v for k, v in ports.items() if k != gone}
    process.apply(process.plan(current, {gone.service}), 1.0, iptables_ok=True)
    assert gone not in process.portals
    current[gone] = ports[gone]
    plan = process.plan(current, {gone.service})
    assert plan == scan_plan(process, current, {gone.service})
    assert gone in dict(plan.open)
    other = next(k for k in ports if k != gone)
    swapped = {k: v for k, v in current.items() if k != other}
    swapped[gone] = ports[gone]
    assert len(swapped) == len(current) - 1
    assert process.plan(swapped, {other.service}) == scan_plan(process, swapped, {other.service})


def test_sync_cleanup_expires_records_of_balancers_sticky_now_or_before() -> None:
    """``CleanupStaleStickySessions`` at a sync: a sticky port's records expire after its
    timeout (300 s here); a port made non-sticky keeps records already made, and they expire
    after the default 10800 s; a port never sticky has none to expire."""
    (sticky_info,) = build_service_port_map(cluster_service(**AFFINITY)[0]).values()
    (plain_info,) = build_service_port_map(cluster_service()[0]).values()
    spn = sticky_info.name
    balancers = Balancers(np.random.default_rng(0))
    state = balancers.new_service(spn, sticky_info)
    balancers.update(spn, ["10.0.0.1:80", "10.0.0.2:80"])
    state.next_endpoint("10.9.0.1", 0.0, affinity_reset=False)
    balancers.cleanup(299.9)
    assert set(state.affinity) == {"10.9.0.1"}
    balancers.cleanup(300.0)
    assert state.affinity == {}
    state.next_endpoint("10.9.0.1", 400.0, affinity_reset=False)
    balancers.new_service(spn, plain_info)  # affinity off: the record made before stays
    assert state.affinity_s == 0 and set(state.affinity) == {"10.9.0.1"}
    balancers.cleanup(400.0 + DEFAULT_AFFINITY_S - 0.1)
    assert set(state.affinity) == {"10.9.0.1"}
    balancers.cleanup(400.0 + DEFAULT_AFFINITY_S)
    assert state.affinity == {}
    state.next_endpoint("10.9.0.1", 20000.0, affinity_reset=False)
    assert state.affinity == {}  # not sticky: no record made
