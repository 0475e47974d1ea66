"""Sync cost calibration, the full/partial restore input, the stale-rule edit, the UDP filter."""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import (
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    ObjectMeta,
    Protocol,
)
from svcsim.netfilter.conntrack_states import ConntrackEntry, FlowTuple, UdpState
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.text import apply_restore, render_save
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.names import ServicePortName
from svcsim.sim.restore import (
    RestoreError,
    apply_plan,
    plan_sync,
    stale_rule_restore,
)
from svcsim.sim.synccost import (
    DEFAULT_BASE_S,
    DEFAULT_COST,
    DEFAULT_PER_RULE_S,
    PUBLISHED_POINTS,
    CalibrationPoint,
    StaleUdpFilter,
    SyncCostModel,
)
from tests.sim.restore_cases import SERVICES, SLICES, compile_, eps, nat_chains, svc

SPN_A = ServicePortName("default", "a", "p", Protocol.TCP)
SPN_B = ServicePortName("default", "b", "p", Protocol.TCP)


# --- cost model ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", PUBLISHED_POINTS)
def test_calibration_reproduces_published_points(point: CalibrationPoint) -> None:
    assert DEFAULT_COST.duration_s(point.rules) == pytest.approx(point.duration_s, rel=0.01)


@pytest.mark.parametrize(("rules", "seconds"), [(897, 0.176), (696_000, 12.8)])
def test_calibration_reproduces_the_issue_figures(rules: int, seconds: float) -> None:
    assert DEFAULT_COST.duration_s(rules) == pytest.approx(seconds, rel=0.01)


def test_calibration_constants() -> None:
    per_rule = (12.772 - 0.176) / (695_992 - 897)
    assert per_rule == pytest.approx(18.1213e-6, rel=1e-5)
    assert pytest.approx(per_rule, rel=1e-12) == DEFAULT_PER_RULE_S
    assert pytest.approx(0.176 - 897 * per_rule, rel=1e-12) == DEFAULT_BASE_S
    assert pytest.approx(0.159745, abs=1e-6) == DEFAULT_BASE_S
    assert DEFAULT_COST.duration_s(0) == DEFAULT_BASE_S


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: SyncCostModel(-1.0, 0.0), "negative base_s"),
        (lambda: SyncCostModel(0.0, -1.0), "negative per_rule_s"),
        (lambda: DEFAULT_COST.duration_s(-1), "negative rules_written"),
        (
            lambda: SyncCostModel.fit(CalibrationPoint(5, 1.0, ""), CalibrationPoint(5, 2.0, "")),
            "both points",
        ),
    ],
)
def test_cost_errors(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


# --- restore input ------------------------------------------------------------------------


def test_full_plan_is_the_compiled_restore_input() -> None:
    compiled, chains_of = compile_(SERVICES, SLICES)
    plan = plan_sync(compiled, chains_of([]), full=True, existing_nat_chains=[])
    assert plan.restore_text == compiled.restore_text
    assert plan.rules_written == compiled.stats.filter_rules + compiled.stats.nat_rules
    assert plan.deleted_chains == ()
    assert apply_plan(Ruleset(), plan) is compiled.ruleset


def test_partial_plan_writes_only_changed_service_chains() -> None:
    compiled, chains_of = compile_(SERVICES, SLICES)
    plan = plan_sync(compiled, chains_of(["default/a"]), full=False, existing_nat_chains=[])
    a_chains = {SPN_A.cluster_chain, *(SPN_A.endpoint_chain(f"10.244.1.{i}:8080") for i in (1, 2))}
    b_chains = {SPN_B.cluster_chain, *(SPN_B.endpoint_chain(f"10.244.2.{i}:8080") for i in (1, 2))}
    assert a_chains <= plan.rewritten_nat_chains
    assert not b_chains & plan.rewritten_nat_chains
    for chain in b_chains:
        assert chain not in plan.restore_text.replace(f"-j {SPN_B.cluster_chain}", "")
    # The KUBE-SERVICES jump of the unchanged Service is still written (KUBE-SERVICES is
    # always rewritten in full), as is the whole filter table.
    assert f"-j {SPN_B.cluster_chain}" in plan.restore_text
    full = plan_sync(compiled, chains_of([]), full=True, existing_nat_chains=[])
    lines = full.restore_text.splitlines()
    b_rules = sum(1 for line in lines if line.startswith("-A ") and line.split()[1] in b_chains)
    assert b_rules == 1 + 2 + 2 * 2  # SVC: masquerade + 2 dispatch rules; 2 rules per SEP
    assert plan.rules_written == full.rules_written - b_rules


def test_stale_chains_are_deleted_before_the_nodeports_tail() -> None:
    compiled, chains_of = compile_(SERVICES, SLICES)
    stale = SPN_A.endpoint_chain("10.244.1.9:8080")
    existing = [*nat_chains(compiled.ruleset), stale, "CUSTOM-CHAIN"]
    plan = plan_sync(compiled, chains_of([]), full=False, existing_nat_chains=existing)
    assert plan.deleted_chains == (stale,)
    lines = plan.restore_text.splitlines()
    assert f":{stale} - [0:0]" in lines
    x = lines.index(f"-X {stale}")
    tail = next(i for i, line in enumerate(lines) if "must be the last rule" in line)
    assert x == tail - 1
    assert "CUSTOM-CHAIN" not in plan.restore_text
    skip = plan_sync(
        compiled, chains_of([]), full=False, existing_nat_chains=existing, delete_stale=False
    )
    assert skip.deleted_chains == ()


def test_partial_syncs_converge_to_the_full_compile() -> None:
    """Partial restores on the kernel give what a full sync would (nothing injected)."""
    before, _ = compile_(SERVICES, SLICES)
    kernel = before.ruleset
    services = [*SERVICES, svc("c", "10.96.0.3")]
    slices = [
        eps("a", ["10.244.1.1", "10.244.1.3"]),  # a changed
        SLICES[1],  # b unchanged
        eps("c", ["10.244.3.1"]),  # c new
    ]
    after, chains_of = compile_(services, slices)
    plan = plan_sync(
        after,
        chains_of(["default/a", "default/c"]),
        full=False,
        existing_nat_chains=nat_chains(kernel),
    )
    assert plan.deleted_chains == (SPN_A.endpoint_chain("10.244.1.2:8080"),)
    result = apply_plan(kernel, plan)
    assert render_save(result) == render_save(after.ruleset)
    assert result != after.ruleset or nat_chains(result) == nat_chains(after.ruleset)


def test_partial_that_misses_a_change_leaves_the_old_chain() -> None:
    before, _ = compile_(SERVICES, SLICES)
    slices = [SLICES[0], eps("b", ["10.244.2.1", "10.244.2.2", "10.244.2.3"])]
    after, chains_of = compile_(SERVICES, slices)
    plan = plan_sync(
        after, chains_of([]), full=False, existing_nat_chains=nat_chains(before.ruleset)
    )
    result = apply_plan(before.ruleset, plan)
    assert result.chain("nat", SPN_B.cluster_chain) == before.ruleset.chain(
        "nat", SPN_B.cluster_chain
    )


def test_deleting_a_referenced_chain_fails() -> None:
    before, chains_of = compile_(SERVICES, SLICES)
    text = stale_rule_restore(before.ruleset, SPN_B, "10.244.9.9:8080")
    kernel = apply_restore(before.ruleset, text, noflush=True)
    plan = plan_sync(
        before, chains_of(["default/a"]), full=False, existing_nat_chains=nat_chains(kernel)
    )
    stale = SPN_B.endpoint_chain("10.244.9.9:8080")
    assert plan.deleted_chains == (stale,)
    with pytest.raises(RestoreError, match=f"-X {stale}: chain is still referenced"):
        apply_plan(kernel, plan)
    # A full sync rewrites KUBE-SVC as well, so it removes both.
    full = plan_sync(before, chains_of([]), full=True, existing_nat_chains=nat_chains(kernel))
    assert full.deleted_chains == (stale,)
    assert apply_plan(kernel, full) is before.ruleset


def test_stale_rule_restore_text() -> None:
    before, _ = compile_(SERVICES, SLICES)
    sep = SPN_B.endpoint_chain("10.244.9.9:8080")
    svc_chain = SPN_B.cluster_chain
    head = (
        f'-I {svc_chain} 1 -m comment --comment "default/b:p -> 10.244.9.9:8080" '
        "-m statistic --mode random --probability 0.3333333333"
    )
    assert stale_rule_restore(before.ruleset, SPN_B, "10.244.9.9:8080") == (
        "*nat\n"
        f":{sep} - [0:0]\n"
        f"-A {sep} -m comment --comment default/b:p -s 10.244.9.9 -j KUBE-MARK-MASQ\n"
        f"-A {sep} -m comment --comment default/b:p -m tcp -p tcp -j DNAT "
        "--to-destination 10.244.9.9:8080\n"
        f"{head} -j {sep}\n"
        "COMMIT\n"
    )
    assert stale_rule_restore(before.ruleset, SPN_B, "10.244.9.9:8080", own_chain=False) == (
        f"*nat\n{head} -m tcp -p tcp -j DNAT --to-destination 10.244.9.9:8080\nCOMMIT\n"
    )
    kernel = apply_restore(
        before.ruleset, stale_rule_restore(before.ruleset, SPN_B, "10.244.9.9:8080"), noflush=True
    )
    chain = kernel.chain("nat", svc_chain)
    assert chain is not None and chain.rules[0].text.endswith(f"-j {sep}")


@pytest.mark.parametrize(
    ("spn", "endpoint", "message"),
    [
        (ServicePortName("default", "zz", "p"), "10.0.0.1:80", "no KUBE-SVC-"),
        (SPN_B, "10.0.0.1", "IP:port"),
    ],
)
def test_stale_rule_errors(spn: ServicePortName, endpoint: str, message: str) -> None:
    before, _ = compile_(SERVICES, SLICES)
    with pytest.raises(ValueError, match=message):
        stale_rule_restore(before.ruleset, spn, endpoint)


# --- UDP conntrack clean-up ----------------------------------------------------------------


def udp_entry(dst: str, dport: int, reply_src: str, proto: str = "udp") -> ConntrackEntry:
    return ConntrackEntry(
        FlowTuple(proto, "10.244.5.5", 40000, dst, dport),
        FlowTuple(proto, reply_src, 8080, "10.244.5.5", 40000),
        UdpState.REPLIED,
        100.0,
        0.0,
    )


@pytest.mark.parametrize(
    ("entry", "deleted"),
    [
        (udp_entry("10.96.0.53", 80, "10.244.3.1"), False),  # serving endpoint
        (udp_entry("10.96.0.53", 80, "10.244.3.2"), True),  # not serving
        (udp_entry("10.96.0.53", 80, "10.244.3.9"), True),  # gone
        # Any port of the ClusterIP: upstream matches on the IP only.
        (udp_entry("10.96.0.53", 9999, "10.244.3.9"), True),
        # Created while the Service had no endpoints (REJECT): not DNATed, reply from the VIP.
        (udp_entry("10.96.0.53", 80, "10.96.0.53"), True),
        (udp_entry("10.0.0.1", 30053, "10.244.3.9"), True),  # NodePort, any destination IP
        (udp_entry("10.0.0.1", 30053, "10.244.3.1"), False),
        (udp_entry("10.96.0.53", 80, "10.244.3.9", proto="tcp"), False),  # TCP never
        (udp_entry("10.96.0.1", 80, "10.244.3.9"), False),  # a TCP Service's IP
    ],
)
def test_stale_udp_filter(entry: ConntrackEntry, deleted: bool) -> None:
    services = [svc("dns", "10.96.0.53", Protocol.UDP, node_port=30053), svc("a", "10.96.0.1")]
    slices = [
        eps("dns", ["10.244.3.1"], Protocol.UDP),
        EndpointSlice(
            meta=ObjectMeta("dns-b", labels=((SERVICE_NAME_LABEL, "dns"),)),
            endpoints=(
                Endpoint(("10.244.3.2",), EndpointConditions(False, False, True), node_name="n2"),
            ),
            ports=(EndpointPort(8080, protocol=Protocol.UDP, name="p"),),
        ),
        eps("a", ["10.244.1.1"]),
    ]
    flt = StaleUdpFilter.from_maps(
        build_service_port_map(services), build_endpoints_map(slices, "n1")
    )
    assert flt.service_ips == {"10.96.0.53": frozenset({"10.244.3.1"})}
    assert flt.matches_entry(entry) is deleted
