"""kube-proxy in nftables mode in a small world: transactions, partial syncs, stale chains, faults.

Same fixed numbers as tests/sim/test_kubeproxy.py: informer sync 2 s, watch delay 0.125 s,
minSyncPeriod 1 s, syncPeriod 30 s, every sync costs 0.25 s unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from svcsim.k8s.objects import Protocol, ServicePort
from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.nft_eval import walk_nft
from svcsim.netfilter.nftables import NftTable
from svcsim.netfilter.packet import NodeNetwork, Packet
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.nftables import compile_nftables
from svcsim.results.records import Recorder
from svcsim.sim.api import ApiServer
from svcsim.sim.changes import ENDPOINT_SLICE_KIND, SERVICE_KIND
from svcsim.sim.kernel import Kernel
from svcsim.sim.kubeproxy import KubeProxy
from svcsim.sim.nft_sync import plan_nft_sync, service_of
from svcsim.sim.synccost import (
    DEFAULT_NFT_COST,
    NFT_OBJECTS_PER_SERVICE,
    NFT_PUBLISHED_POINTS,
    NFT_SETUP_OBJECTS,
    KubeProxyConfig,
    SyncCostModel,
)
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, nft_fake_context
from tests.proxy.test_iptables_support import ep, make_service, make_slice, port
from tests.sim.test_kubeproxy import CTX, eps, svc

CFG = KubeProxyConfig(
    min_sync_period_s=1.0,
    sync_period_s=30.0,
    informer_sync_s=2.0,
    watch_delay_s=0.125,
    nft_cost=SyncCostModel(0.25, 0.0),
)
A = ServicePortName("default", "a", "p", Protocol.TCP)
NETWORK = NodeNetwork(("10.0.0.1",), pod_cidr="10.244.1.0/24")


class World:
    """One nftables node: API server, kernel, kube-proxy, recorder."""

    def __init__(self, config: KubeProxyConfig = CFG) -> None:
        self.env = simpy.Environment()
        self.api = ApiServer(self.env)
        self.rec = Recorder()
        timeouts = ConntrackTimeouts(udp_s=300.0, udp_stream_s=300.0)
        self.kernel = Kernel("n1", NETWORK, 1000, timeouts, mode="nftables")
        self.kp = KubeProxy(
            self.env,
            "n1",
            self.api,
            self.kernel,
            CTX,
            config,
            self.rec,
            service_cidrs=("10.96.0.0/12",),
        )
        self.api.apply(SERVICE_KIND, svc("a", "10.96.0.1"))
        self.api.apply(SERVICE_KIND, svc("b", "10.96.0.2"))
        self.api.apply(ENDPOINT_SLICE_KIND, eps("a", ["10.244.2.1", "10.244.2.2"]))
        self.api.apply(ENDPOINT_SLICE_KIND, eps("b", ["10.244.3.1"]))
        self.kp.start()

    def at(self, t_s: float, action: Callable[[], object]) -> None:
        def fire(_: simpy.Event) -> None:
            action()

        self.env.timeout(t_s - self.env.now).callbacks.append(fire)

    def syncs(self) -> list[tuple[float, float, bool, bool]]:
        df = self.rec.frames()["syncs"]
        return [(r.start_s, r.end_s, bool(r.full), bool(r.ok)) for r in df.itertuples(index=False)]

    def reached(self, vip: str) -> set[str]:
        """Where new connections to ``vip:80`` from a Pod go, over every numgen value."""
        assert self.kernel.nft is not None
        table = self.kernel.nft.parsed
        out = set()
        for r in range(0, 1 << 32, (1 << 32) // 64):
            outcome, _ = walk_nft(
                table, Packet("10.244.1.5", vip, "tcp", 80), NETWORK, draw=lambda r=r: r
            )
            dnat = outcome.dnat
            out.add(f"{dnat[0]}:{dnat[1]}" if dnat else str(outcome.verdict))
        return out


def test_syncs_install_the_compiled_table_and_partial_syncs_write_little() -> None:
    w = World()
    w.at(5.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("a", ["10.244.2.7"])))
    w.env.run(6.0)
    assert w.syncs() == [(2.0, 2.25, True, True), (5.125, 5.375, False, True)]
    assert w.reached("10.96.0.1") == {"10.244.2.7:8080"}
    assert w.reached("10.96.0.2") == {"10.244.3.1:8080"}
    # The partial transaction: a's service chain and its new endpoint chain (add, flush,
    # rules), the old endpoint chains flushed as stale; no element changed.
    assert w.kp.metrics.nftables_objects_last == 4 + 4 + 2
    assert set(w.kp.stale_chains) == {
        c.name
        for c in w.kernel.nft.table.chains
        if "10.244.2.1" in c.name or "10.244.2.2" in c.name
    }  # type: ignore[union-attr]
    # More than a second later, the next sync deletes them first (its own transaction).
    w.at(8.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("b", ["10.244.3.2"])))
    w.env.run(9.0)
    assert [n for n in w.kp.stale_chains if "10.244.2." in n] == []
    assert [n for n in w.kp.stale_chains if "10.244.3.1" in n] != []  # b's, flushed at 8.125
    names = [c.name for c in w.kernel.nft.table.chains]  # type: ignore[union-attr]
    assert not any("10.244.2.1" in n for n in names)
    assert w.kp.metrics.sync_proxy_rules_nftables_cleanup_failures_total == 0


def test_block_sync_fails_the_transaction_then_a_full_sync_recovers() -> None:
    w = World()
    w.at(5.0, lambda: w.kp.block_sync(40.0))
    w.at(6.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("a", ["10.244.2.7"])))
    w.env.run(100.0)
    assert w.syncs() == [
        (2.0, 2.25, True, True),
        (6.125, 6.375, False, False),
        (36.375, 36.625, True, False),
        (66.625, 66.875, True, True),
    ]
    assert w.kp.metrics.sync_proxy_rules_nftables_sync_failures_total == 2
    assert w.reached("10.96.0.1") == {"10.244.2.7:8080"}


def test_stale_endpoint_edit_survives_partial_syncs_of_others_until_a_full_sync() -> None:
    cfg = KubeProxyConfig(
        min_sync_period_s=1.0,
        sync_period_s=30.0,
        full_sync_period_s=20.0,
        informer_sync_s=2.0,
        watch_delay_s=0.125,
        nft_cost=SyncCostModel(0.25, 0.0),
    )
    w = World(cfg)
    texts: list[str] = []
    w.at(3.0, lambda: texts.append(w.kp.inject_stale_rule("default/a:p", "10.244.9.9:8080")))
    w.env.run(3.5)
    assert w.reached("10.96.0.1") == {"10.244.2.1:8080", "10.244.2.2:8080", "10.244.9.9:8080"}
    text = texts[0]
    assert text.startswith("add chain ip kube-proxy endpoint-")
    assert "numgen random mod 3 vmap {" in text and "replace rule ip kube-proxy service-" in text
    # A partial sync of b: a's edited chain stays; the extra chain is flushed as stale, so the
    # numgen value that goes there falls out of the empty chain without DNAT, and the table's
    # cluster-ips-check rejects the connection to the ClusterIP.
    w.at(5.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("b", ["10.244.3.2"])))
    w.env.run(5.5)
    assert w.syncs()[1] == (5.125, 5.375, False, True)
    assert w.reached("10.96.0.1") == {"10.244.2.1:8080", "10.244.2.2:8080", "REJECT"}
    # Deleting the stale chain fails while the edited rule still jumps there.
    w.at(8.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("b", ["10.244.3.3"])))
    w.env.run(9.0)
    assert w.kp.metrics.sync_proxy_rules_nftables_cleanup_failures_total == 1
    assert w.syncs()[2][3]  # the sync itself succeeds
    # The full sync (runner's max interval) rewrites a's chain.
    w.env.run(40.0)
    assert any(full and ok for _, _, full, ok in w.syncs()[3:])
    assert w.reached("10.96.0.1") == {"10.244.2.1:8080", "10.244.2.2:8080"}


def test_affinity_sets_of_removed_services_go_with_their_elements() -> None:
    w = World()
    w.env.run(3.0)
    assert w.kernel.nft is not None
    w.kernel.sets.update("affinity-gone", "10.244.1.5", 0.0, 10)
    w.at(5.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("a", ["10.244.2.7"])))
    w.env.run(6.0)
    assert "affinity-gone" not in w.kernel.sets.expiry


def test_service_of_reads_kube_proxy_chain_names() -> None:
    assert service_of("service-ULMVA6XW-ns1/svc1/tcp/p80") == "ns1/svc1"
    assert service_of("endpoint-5OJB2KTY-ns-x/svc-1/tcp/p80__10.180.0.1/80") == "ns-x/svc-1"
    assert service_of("affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80") == "ns1/svc1"
    assert service_of("services") is None


def _cluster(n: int) -> NftTable:
    services = [
        make_service(
            "ns", f"s{i}", cluster_ip=f"172.30.0.{i + 1}", ports=(ServicePort(80, name="p"),)
        )
        for i in range(n)
    ]
    slices = [
        make_slice(
            "ns",
            f"s{i}",
            (ep(f"10.1.0.{i + 1}", node="other"), ep(f"10.2.0.{i + 1}", node="other")),
            (port(8080, "p"),),
        )
        for i in range(n)
    ]
    return compile_nftables(services, slices, nft_fake_context(), FAKE_SERVICE_CIDRS)


def test_the_cost_calibration_counts_are_the_transactions() -> None:
    """The object counts the published points are placed at are what plan_nft_sync writes."""
    for n in (0, 1, 3):
        table = _cluster(n)
        plan = plan_nft_sync(None, table, (), full=True, now_s=0.0, stale_chains={})
        assert plan.objects_written == NFT_SETUP_OBJECTS + n * NFT_OBJECTS_PER_SERVICE
    before, after = _cluster(3), _cluster(4)
    plan = plan_nft_sync(before, after, {"ns/s3"}, full=False, now_s=0.0, stale_chains={})
    assert plan.objects_written == NFT_OBJECTS_PER_SERVICE
    for point in NFT_PUBLISHED_POINTS:
        assert abs(DEFAULT_NFT_COST.duration_s(point.rules) - point.duration_s) < 1e-9
    # The iptables-mode figure of the same PR: nftables' first sync is ~5x slower.
    assert NFT_PUBLISHED_POINTS[1].duration_s / 40.0 > 4


def test_a_partial_sync_of_nothing_writes_nothing_and_keeps_the_table() -> None:
    table = _cluster(2)
    plan = plan_nft_sync(table, table, (), full=False, now_s=0.0, stale_chains={})
    assert plan.objects_written == 0
    assert _by_chain(plan.table) == _by_chain(table)


def _by_chain(table: NftTable) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {c.name: [] for c in table.chains}
    for rule in table.rules:
        out[rule.chain].append(rule.rule)
    return out


def test_after_partial_syncs_the_kernel_holds_the_full_compile_plus_flushed_stale_chains() -> None:
    w = World()
    w.at(5.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("a", ["10.244.2.7", "10.244.2.1"])))
    w.at(7.0, lambda: w.api.apply(SERVICE_KIND, svc("c", "10.96.0.3")))
    w.at(7.0, lambda: w.api.apply(ENDPOINT_SLICE_KIND, eps("c", ["10.244.4.1"])))
    w.at(9.0, lambda: w.api.delete(SERVICE_KIND, "default/b"))
    w.env.run(12.0)
    assert [full for _, _, full, _ in w.syncs()] == [True, False, False, False]
    assert w.kernel.nft is not None
    compiled = compile_nftables(
        w.api.list(SERVICE_KIND), w.api.list(ENDPOINT_SLICE_KIND), CTX, ("10.96.0.0/12",)
    )
    held, wanted = _by_chain(w.kernel.nft.table), _by_chain(compiled)
    assert {n: r for n, r in held.items() if n in wanted} == wanted
    stale = {n: r for n, r in held.items() if n not in wanted}
    assert all(r == [] for r in stale.values()) and set(stale) == set(w.kp.stale_chains)
    assert {e.key for e in w.kernel.nft.table.elements} == {e.key for e in compiled.elements}
