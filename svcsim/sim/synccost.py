"""What one kube-proxy sync costs, and the plain values around a node's kube-proxy.

The restore input a sync writes, and applying it, are :mod:`svcsim.sim.restore`.

**UDP conntrack clean-up** after a sync: :class:`StaleUdpFilter`. Also here, as plain values:
a node's kube-proxy settings (:class:`KubeProxyConfig`), its metrics (:class:`ProxyMetrics`)
and the state its rules were last programmed from (:class:`ProgrammedView`).

**Cost.** ``duration_s = base_s + per_rule_s x rules_written``, where ``rules_written`` is the
number of ``-A`` lines in the restore input. The defaults are a two-point fit through published
measurements (:data:`PUBLISHED_POINTS`):

* 897 NAT rules -> 176 ms per sync: the figure the project's issue quotes; its original source
  was not located with the search tool (UNVERIFIED). The nearest public log line found reads
  ``syncProxyRules took 176.666464ms`` (a 2019 v1.13 node; rule count not shown).
* 695,992 lines -> 12.772 s: ``time iptables-restore iptables2.log`` on a real host, kubernetes
  issue #96018 "nftables do not scale for services" (comment of 2021-02-19; the dump was
  695,992 lines, ``real 0m12.772s``, iptables-nft). Lines of the dump are counted as rules.

Solving the two equations exactly gives ``per_rule_s = (12.772 - 0.176) / (695992 - 897)
= 18.1213 us`` and ``base_s = 0.176 - 897 x per_rule_s = 0.159745 s``.

**nftables cost.** ``duration_s = base_s + per_object_s x objects_written``, where
``objects_written`` counts the lines of the sync's ``nft -f`` transaction (adds, flushes and
deletes: :mod:`svcsim.sim.nft_sync`). nftables mode's partial syncs make a sync's cost
O(changes) (kubernetes.io blog "NFTables mode for kube-proxy", 2025-02-28: incremental updates
touch only what changed); its first (full) sync of a large cluster is slow. Two published
points (:data:`NFT_PUBLISHED_POINTS`):

* a partial sync adding one Service (with two endpoints) to 10,000: ~141 ms, kubernetes PR
  #126013 "[kube-proxy: nftables] Implement partial sync" (description, 2024-07-10);
* the first, full, sync of 10,000 Services x 2 endpoints: 3 min 14 s (194 s) in nftables mode
  vs 40 s in iptables mode, kubernetes PR #130119 "Optimize kube-proxy restart time" (figure
  as quoted by the project's issue 9; not re-read in the PR text here: UNVERIFIED).

Object counts are this project's transaction (:func:`svcsim.sim.nft_sync.plan_nft_sync`) for
those cluster shapes (ClusterIP Services, two endpoints on other nodes):
:data:`NFT_OBJECTS_PER_SERVICE` per such Service port, in a full sync and in the partial one
that adds it, plus :data:`NFT_SETUP_OBJECTS` for a full sync. The fit is exact through both
points: ``base_s = 0.121622 s``, ``per_object_s = 1.38414 ms``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from svcsim.k8s.objects import Protocol
from svcsim.netfilter.conntrack_states import ConntrackEntry
from svcsim.proxy.endpoints import EndpointInfo, EndpointsMap, ServicePortInfo
from svcsim.proxy.names import ServicePortName

if TYPE_CHECKING:
    from svcsim.sim.ipvs_cost import IpvsSyncCostModel


@dataclass(frozen=True, slots=True)
class CalibrationPoint:
    """One published measurement: a sync writing ``rules`` rules took ``duration_s``."""

    rules: int
    duration_s: float
    source: str


PUBLISHED_POINTS: Final = (
    CalibrationPoint(
        897,
        0.176,
        "project issue 3 ('897 NAT rules ~ 176 ms per sync'); original source not located",
    ),
    CalibrationPoint(
        695_992,
        12.772,
        "kubernetes/kubernetes#96018: 695,992-line iptables-restore, real 0m12.772s",
    ),
)


@dataclass(frozen=True, slots=True)
class SyncCostModel:
    """``duration_s = base_s + per_rule_s x rules_written``."""

    base_s: float
    per_rule_s: float

    def __post_init__(self) -> None:
        if self.base_s < 0:
            raise ValueError(f"negative base_s {self.base_s!r}")
        if self.per_rule_s < 0:
            raise ValueError(f"negative per_rule_s {self.per_rule_s!r}")

    def duration_s(self, rules_written: int) -> float:
        """How long a sync writing ``rules_written`` rules takes."""
        if rules_written < 0:
            raise ValueError(f"negative rules_written {rules_written!r}")
        return self.base_s + self.per_rule_s * rules_written

    @classmethod
    def fit(cls, a: CalibrationPoint, b: CalibrationPoint) -> SyncCostModel:
        """The line through two measurements."""
        if a.rules == b.rules:
            raise ValueError(f"both points have {a.rules!r} rules")
        per_rule = (b.duration_s - a.duration_s) / (b.rules - a.rules)
        return cls(base_s=a.duration_s - a.rules * per_rule, per_rule_s=per_rule)


NFT_OBJECTS_PER_SERVICE: Final = 14
"""Transaction objects one ClusterIP Service port with two endpoints adds: 3 chains x (add,
flush) + 6 rules + 2 elements (``tests/sim/test_nft_sync.py`` checks it on the compiler)."""
NFT_SETUP_OBJECTS: Final = 71
"""Objects of an empty cluster's full sync (table, fixed chains, sets, maps, their rules and
flushes; ``tests/sim/test_nft_sync.py`` checks it on the compiler)."""

NFT_PUBLISHED_POINTS: Final = (
    CalibrationPoint(
        NFT_OBJECTS_PER_SERVICE,
        0.141,
        "kubernetes/kubernetes#126013: one new Service with 10K existing, partial sync ~141ms",
    ),
    CalibrationPoint(
        NFT_SETUP_OBJECTS + 10_000 * NFT_OBJECTS_PER_SERVICE,
        194.0,
        "kubernetes/kubernetes#130119 as quoted by issue 9: 10,000 Services x 2 endpoints, "
        "first sync 3m14s (nftables) vs 40s (iptables); UNVERIFIED",
    ),
)

DEFAULT_COST: Final = SyncCostModel.fit(*PUBLISHED_POINTS)
"""The calibrated model: base 0.159745 s, 18.1213 us per rule."""
DEFAULT_BASE_S: Final = DEFAULT_COST.base_s
DEFAULT_PER_RULE_S: Final = DEFAULT_COST.per_rule_s
DEFAULT_NFT_COST: Final = SyncCostModel.fit(*NFT_PUBLISHED_POINTS)
"""nftables mode's calibrated model: ``per_rule_s`` is per transaction object."""
DEFAULT_NFT_BASE_S: Final = DEFAULT_NFT_COST.base_s
DEFAULT_NFT_PER_OBJECT_S: Final = DEFAULT_NFT_COST.per_rule_s


FULL_SYNC_PERIOD_S: Final = 3600.0
"""``proxyutil.FullSyncPeriod`` (1 h; PR kubernetes#129329 — the constant itself UNVERIFIED)."""


@dataclass(frozen=True, slots=True)
class KubeProxyConfig:
    """One node's kube-proxy timing, with kube-proxy's names and defaults."""

    min_sync_period_s: float = 1.0
    sync_period_s: float = 30.0
    """Retry interval after a failed sync (and the large-cluster stale-chain cleanup period)."""
    full_sync_period_s: float = FULL_SYNC_PERIOD_S
    informer_sync_s: float = 2.0
    """From (re)start until both informers have synced."""
    watch_delay_s: float = 0.1
    """API server -> this kube-proxy's informers."""
    cost: SyncCostModel = DEFAULT_COST
    """iptables mode's sync cost (per rule written)."""
    nft_cost: SyncCostModel = DEFAULT_NFT_COST
    """nftables mode's sync cost (per transaction object written)."""
    ipvs_cost: IpvsSyncCostModel | None = None
    """IPVS mode's sync cost (per object walked and per kernel change); None: the defaults."""
    ipvs_scheduler: str = "rr"
    """IPVS mode's ``--ipvs-scheduler``."""

    def __post_init__(self) -> None:
        for name in ("min_sync_period_s", "informer_sync_s", "watch_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"negative {name} {getattr(self, name)!r}")
        if self.sync_period_s <= 0:
            raise ValueError(f"sync_period_s must be > 0, got {self.sync_period_s!r}")
        if self.full_sync_period_s < self.min_sync_period_s:
            raise ValueError(
                f"full_sync_period_s {self.full_sync_period_s!r} < "
                f"min_sync_period_s {self.min_sync_period_s!r}"
            )


@dataclass(slots=True)
class Observations:
    """A histogram metric's running figures: how many values were observed, their sum, the last.

    Upstream's duration metrics are Prometheus histograms (``pkg/proxy/metrics/metrics.go``,
    kubernetes @531be812): a count, a sum and bucket counts, never the values themselves. So is
    this, without the buckets (nothing reads them): a day-long run observes millions of syncs,
    and keeping each value would grow with simulated time (DESIGN.md decision 9). The syncs
    table of the run folder has every sync's duration.
    """

    count: int = 0
    sum: float = 0.0
    last: float = math.nan
    """The latest value observed (NaN before the first)."""

    def observe(self, value: float) -> None:
        """Count one value (Prometheus ``Observe``)."""
        self.count += 1
        self.sum += value
        self.last = value

    def observe_all(self, values: list[float]) -> None:
        """Count each of ``values``, in order."""
        for value in values:
            self.observe(value)


@dataclass(slots=True)
class ProxyMetrics:
    """kube-proxy's metrics for one node, cumulative over restarts (upstream resets on restart)."""

    sync_proxy_rules_duration_seconds: Observations = field(default_factory=Observations)
    """Every sync attempt, failed ones included (upstream observes in a defer)."""
    sync_full_proxy_rules_duration_seconds: Observations = field(default_factory=Observations)
    sync_partial_proxy_rules_duration_seconds: Observations = field(default_factory=Observations)
    network_programming_duration_seconds: Observations = field(default_factory=Observations)
    """Sync end - trigger time, one per trigger time applied by a successful sync."""
    sync_proxy_rules_last_timestamp_seconds: float = math.nan
    sync_proxy_rules_iptables_restore_failures_total: int = 0
    sync_proxy_rules_iptables_partial_restore_failures_total: int = 0
    sync_proxy_rules_iptables_last: int = 0
    """Rules written by the last sync attempt (filter + nat ``-A`` lines); iptables mode."""
    sync_proxy_rules_nftables_sync_failures_total: int = 0
    """nftables mode: failed sync transactions (``NFTablesSyncFailuresTotal``)."""
    sync_proxy_rules_nftables_cleanup_failures_total: int = 0
    """nftables mode: failed stale-chain deletions (``NFTablesCleanupFailuresTotal``)."""
    nftables_objects_last: int = 0
    """nftables mode: objects in the last sync's transaction (no upstream metric: svcsim's)."""


@dataclass(frozen=True, slots=True)
class ProgrammedView:
    """The informer state a node's rules were last programmed from (its last successful sync)."""

    synced_at_s: float
    """Start of that sync: the state is the informer state at this time."""
    installed_at_s: float
    """End of that sync: when the kernel got the rules."""
    service_ports: Mapping[ServicePortName, ServicePortInfo]
    endpoints_map: EndpointsMap
    changed_services: frozenset[str] | None = None
    """Services (``namespace/name``) whose ports or endpoints may differ from the node's
    previous view: those its sync took changes of (a partial sync after a successful one).
    None: any may (a full sync: the first, one after a failure, the hourly one)."""

    def endpoints(self, spn: ServicePortName) -> tuple[EndpointInfo, ...]:
        """Endpoints of ``spn`` (all conditions, as the endpoints map holds them)."""
        return self.endpoints_map.get(spn, ())


@dataclass(frozen=True, slots=True)
class StaleUdpFilter:
    """``CleanStaleEntries``: which UDP conntrack entries kube-proxy deletes after a sync.

    An entry goes if its original destination is a UDP Service's ClusterIP / LB IP / external IP
    and its reply source is not a *serving* endpoint IP of that Service (traffic policy, topology
    and terminating state are ignored), or if its original destination port is a UDP NodePort
    and its reply source is not a serving endpoint of that Service. Upstream maps each IP to the
    last UDP port's set (Go map order); here sets of ports sharing an IP are united.
    """

    service_ips: Mapping[str, frozenset[str]]
    node_ports: Mapping[int, frozenset[str]]

    @classmethod
    def from_maps(
        cls, service_ports: Mapping[ServicePortName, ServicePortInfo], endpoints_map: EndpointsMap
    ) -> StaleUdpFilter:
        """Build the filter from kube-proxy's maps after a sync."""
        ips: dict[str, frozenset[str]] = {}
        ports: dict[int, frozenset[str]] = {}
        for spn, svc in service_ports.items():
            if spn.protocol != Protocol.UDP:
                continue
            serving = frozenset(ep.ip for ep in endpoints_map.get(spn, ()) if ep.serving)
            for ip in (svc.cluster_ip, *svc.load_balancer_vips, *svc.external_ips):
                ips[ip] = ips.get(ip, frozenset()) | serving
            if svc.node_port:
                ports[svc.node_port] = ports.get(svc.node_port, frozenset()) | serving
        return cls(ips, ports)

    def matches(self, proto: str, orig_dst_ip: str, orig_dst_port: int, reply_src_ip: str) -> bool:
        """True if a flow with these fields is deleted."""
        if proto != "udp":
            return False
        serving = self.service_ips.get(orig_dst_ip)
        if serving is not None and reply_src_ip not in serving:
            return True
        serving = self.node_ports.get(orig_dst_port)
        return serving is not None and reply_src_ip not in serving

    def matches_entry(self, entry: ConntrackEntry) -> bool:
        """:meth:`matches` for a conntrack entry."""
        o = entry.original
        return self.matches(o.proto, o.dst_ip, o.dst_port, entry.reply.src_ip)
