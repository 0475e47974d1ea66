"""kube-proxy (iptables, nftables, IPVS or userspace mode) on one node, as SimPy processes.

One :class:`KubeProxy` per node owns a *life* (:class:`_Life`): the informers, the
:class:`~svcsim.sim.changes.ChangeTracker` and the
:class:`~svcsim.sim.runner.BoundedFrequencyRunner`, modelled on kubernetes
``pkg/proxy/iptables/proxier.go`` @531be812 and ``cmd/kube-proxy/app/server.go``:

* **Start.** The runner loop starts at once (``SyncLoop``); handlers do not ask for syncs until
  both informers have synced. After ``informer_sync_s`` the informers list Services and
  EndpointSlices from the API server and start watching (with this node's watch delay); then
  ``OnEndpointSlicesSynced`` calls ``syncProxyRules`` *directly*, outside the runner: the first
  sync is full and starts at once. Syncs never overlap (``proxier.mu``). Because that call is
  not the runner's, a failure of it schedules no retry: the next change (or the runner's max
  interval) brings the next, full, sync.
* **A sync** takes all pending changes at its start, compiles the complete ruleset from the
  informer state (:func:`svcsim.proxy.iptables.sync_from_maps`; nodes in step share their maps
  and that compile, :mod:`svcsim.sim.shared_sync`), plans the restore input
  (full, or partial per KEP-3453: :mod:`svcsim.sim.synccost`), waits the cost model's duration,
  and at its end either installs the result in the node's kernel atomically or fails (the xtables
  lock is held by :meth:`KubeProxy.block_sync`, or the restore was rejected). Changes that arrive
  during a sync wait for the next one. A failure forces the next sync to be full and the runner
  retries after ``syncPeriod``; the changes it took are lost (so are their trigger times and
  their conntrack clean-up), exactly as upstream. A sync is full on start, after a failure, or
  when the last full sync ended ``FullSyncPeriod`` (1 h) ago or more.
* **After a successful sync**: metrics (``sync_proxy_rules_duration_seconds`` for every attempt,
  ``network_programming_duration_seconds`` = end - trigger time for each trigger time taken,
  ``sync_proxy_rules_last_timestamp_seconds``), then, if a changed Service had a UDP port, the
  stale UDP conntrack clean-up (``pkg/proxy/conntrack/cleanup.go`` @6a26e455,
  :class:`~svcsim.sim.synccost.StaleUdpFilter`).
* **Faults**: :meth:`KubeProxy.crash` (the kernel keeps its rules and conntrack),
  :meth:`KubeProxy.restart`, :meth:`KubeProxy.block_sync`, :meth:`KubeProxy.inject_stale_rule`.
* **Losing the API server** (:meth:`KubeProxy.api_cut`, :meth:`KubeProxy.api_back`): the watch
  breaks, the process keeps running and syncing from its last view (its timers go on). When the
  API server answers again, client-go's reflectors relist and the informers hand the
  differences to the handlers as add/update/delete events: here, every Service and
  EndpointSlice that differs from the informer's copy is fed to the change tracker at that
  instant, then the watch resumes. A (re)start while cut lists only once the API answers.
* **Cohorts** (:meth:`KubeProxy.start_in_step`): kube-proxies of nodes in step share one life
  - one watch delivery, change tracker, runner and sync process - and an iptables-mode sync
  compiles and plans once for them; its end installs, measures and records for each member in
  the order they started, as their own lives (whose SimPy events would have followed one
  another at each instant) would have. A crash or restart takes a member out; the life ends
  with its last member.
* **nftables mode** (the node's kernel holds nf_tables; ``pkg/proxy/nftables/proxier.go``
  @b0f823e6) shares all of the above - runner, informers, change tracking, failure handling,
  metrics' names, the UDP conntrack clean-up (upstream shares ``pkg/proxy/conntrack``). A sync
  compiles the table (:func:`svcsim.proxy.nftables.table_from_maps`) and plans its one
  transaction (:func:`svcsim.sim.nft_sync.plan_nft_sync`: partial syncs write only the chains
  of changed Services and the elements that differ; the same transaction is spliced from the
  node's last install when it can be, :func:`svcsim.sim.nft_splice.splice_sync`, so a partial
  sync's work follows the changed ports); its cost is per object written (``nft_cost``).
  Before it, stale chains flushed over a second ago are deleted in a
  transaction of their own (:func:`~svcsim.sim.nft_sync.delete_stale_chains`); its failure
  counts in ``sync_proxy_rules_nftables_cleanup_failures_total`` and the sync goes on. A
  blocked sync fails as a whole (``sync_proxy_rules_nftables_sync_failures_total``).
* **IPVS mode** (``pkg/proxy/ipvs/proxier.go``) shares the same machinery too. Every sync is
  full (the IPVS proxier has no partial sync): it compiles the node's IPVS state
  (:func:`svcsim.proxy.ipvs.ipvs_from_maps`), costs ``ipvs_cost`` per object walked and per
  kernel change (:func:`svcsim.sim.ipvs_sync.sync_counts`) and at its end changes the servers
  and ip sets through the life's graceful-termination manager
  (:func:`svcsim.sim.ipvs_sync.install_sync`). A blocked sync fails at its
  ``iptables-restore``, after the servers and sets were changed (as upstream). Each life runs
  the manager's check every minute (``rsCheckDeleteInterval``); it dies with the process, and
  the next life's first sync takes the weight-0 servers over again.
* **userspace mode** (kube-proxy <= v1.25; the node's kernel holds portal rules and proxy
  sockets): each life runs a :class:`~svcsim.sim.userspace_proxy.UserspaceProcess` (see there:
  the flush at start, balancers updated in the watch handler, the sync's sockets and portals,
  what a crash closes). Only Service changes ask for a sync (upstream's endpoint handlers
  update the balancers and never call ``Sync()``); a blocked sync fails as in iptables mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import simpy

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.text import apply_restore
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import (
    EndpointInfo,
    EndpointsMap,
    ServicePortInfo,
    build_endpoints_map,
    build_service_port_map,
)
from svcsim.proxy.iptables import IptablesSync
from svcsim.proxy.ipvs import ipvs_from_maps
from svcsim.proxy.ipvs_graceful import RS_CHECK_DELETE_INTERVAL_S, GracefulTermination
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.nftables import table_from_maps
from svcsim.proxy.shared_maps import (
    SharedEndpoints,
    node_endpoints_map,
    shared_endpoints,
    shared_service_port_map,
)
from svcsim.results.records import EventKind, Recorder
from svcsim.sim.api import ApiServer, EventType, Watch, WatchEvent
from svcsim.sim.caches import RunCaches
from svcsim.sim.changes import (
    ENDPOINT_SLICE_KIND,
    SERVICE_KIND,
    WATCHED_KINDS,
    ChangeTracker,
    PendingChanges,
    TriggerTimeFn,
    annotation_trigger_time_s,
)
from svcsim.sim.health import ProxyHealth, service_health
from svcsim.sim.ipvs_cost import IpvsSyncCostModel
from svcsim.sim.ipvs_sync import check_draining, install_sync, sync_counts
from svcsim.sim.kernel import Kernel
from svcsim.sim.nft_splice import Spliced, install_planned, splice_sync
from svcsim.sim.nft_sync import (
    delete_stale_chains,
    parse_installed,
    plan_nft_sync,
    stale_endpoint_edit,
)
from svcsim.sim.restore import (
    RestoreError,
    SyncPlan,
    apply_plan,
    chain_names,
    plan_sync,
    service_chains,
    stale_rule_restore,
)
from svcsim.sim.runner import BoundedFrequencyRunner
from svcsim.sim.shared_sync import iptables_compile, shared_context, uniform_compile
from svcsim.sim.synccost import KubeProxyConfig, ProgrammedView, ProxyMetrics, StaleUdpFilter
from svcsim.sim.userspace_proxy import UserspaceConfig, UserspaceProcess

__all__ = [
    "CleanupListener",
    "KubeProxy",
    "KubeProxyConfig",
    "ProgrammedView",
    "ProxyMetrics",
    "ProxyStopped",
    "StaleUdpFilter",
]


@dataclass(frozen=True, slots=True)
class ProxyStopped:
    """Interrupt cause delivered to a kube-proxy life that ends (crash or restart)."""

    t_s: float
    reason: str
    """``"crash"`` or ``"restart"``."""


CleanupListener = Callable[[StaleUdpFilter, float], None]
"""Told ``(filter, now_s)`` after kube-proxy cleaned conntrack (for flow state kept elsewhere)."""


class _InformerView(NamedTuple):
    """The endpoints map of one process life's informers at one version of its tracker."""

    life: _Life
    version: int
    endpoints: EndpointsMap


class KubeProxy:
    """kube-proxy on ``node``: call :meth:`start` once at t=0; faults are methods."""

    def __init__(
        self,
        env: simpy.Environment,
        node: str,
        api: ApiServer,
        kernel: Kernel,
        ctx: NodeContext,
        config: KubeProxyConfig | None = None,
        recorder: Recorder | None = None,
        *,
        trigger_time: TriggerTimeFn = annotation_trigger_time_s,
        service_cidrs: tuple[str, ...] = (),
        caches: RunCaches | None = None,
        userspace: UserspaceConfig | None = None,
    ) -> None:
        if ctx.node_name != node:
            raise ValueError(f"NodeContext is for {ctx.node_name!r}, not node {node!r}")
        self.env = env
        self.node = node
        self.api = api
        self.kernel = kernel
        self.ctx = ctx
        self.config = config if config is not None else KubeProxyConfig()
        self.recorder = recorder
        self.trigger_time = trigger_time
        self.service_cidrs = service_cidrs
        """The Service CIDRs kube-proxy knows (``OnServiceCIDRsChanged``; nftables mode)."""
        self.caches = caches if caches is not None else RunCaches()
        """The run's memos, shared by its nodes (DESIGN decision 8; :mod:`svcsim.sim.caches`)."""
        self.parse_memo = self.caches.nft_chains
        """Parsed nf_tables chains, shared by the run's nodes."""
        self.chain_names = self.caches.nft_names
        """Hashed nf_tables chain names, shared by the run's nodes."""
        if (kernel.mode == "userspace") != (userspace is not None):
            raise ValueError(f"node {node}: userspace settings iff a userspace-mode kernel")
        self.userspace_config = userspace
        """userspace mode: the settings and random streams each process starts with."""
        self.stale_chains: dict[str, float] = {}
        """nftables mode: flushed stale service chains and when (upstream ``staleChains``)."""
        self.spliced: Spliced | None = None
        """nftables mode: the last sync's install as blocks (:mod:`svcsim.sim.nft_splice`)."""
        self.metrics = ProxyMetrics()
        self.programmed: ProgrammedView | None = None
        """What the rules were last programmed from; None before the first successful sync."""
        self.blocked_until_s = -math.inf
        self._last_error: str | None = None
        self._failing_listeners: list[Callable[[], None]] = []
        self._life: _Life | None = None
        self.api_reachable = True
        """False while the node cannot reach the API server (:meth:`api_cut`)."""
        self.node_eligible = True
        """False while its Node is tainted ToBeDeletedByClusterAutoscaler (``/healthz`` 503)."""
        self._cleanup_listeners: list[CleanupListener] = []
        self._programmed_listeners: list[Callable[[str, ProgrammedView], None]] = []
        self._informer_cache: _InformerView | None = None
        self.alike_ctx = shared_context(ctx, self.caches)
        """The context this node shares compiles with (:mod:`svcsim.sim.shared_sync`)."""

    # --- state the traffic layer reads ------------------------------------------------------

    @property
    def up(self) -> bool:
        """True while the kube-proxy process runs."""
        return self._life is not None

    @property
    def blocked(self) -> bool:
        """True while restores fail because of :meth:`block_sync`."""
        return self.env.now < self.blocked_until_s

    @property
    def last_error(self) -> str | None:
        """Why the last sync attempt failed; None after a success."""
        return self._last_error

    @last_error.setter
    def last_error(self, error: str | None) -> None:
        flips = (error is None) != (self._last_error is None)
        self._last_error = error
        if flips:
            # The traffic path reads :attr:`failing` ("blocked" vs "up"): a sync that fails
            # without installing, or succeeds without a new kernel generation, is still a new
            # state it must see.
            for listener in self._failing_listeners:
                listener()

    @property
    def failing(self) -> bool:
        """True if the last sync attempt failed and no sync has succeeded since."""
        return self._last_error is not None

    @property
    def rules_current(self) -> bool:
        """True while running and the kernel holds rules this process wrote.

        False when down, and after a restart until its first sync ends: in between, the
        kernel still holds the rules of the process that crashed.
        """
        return self._life is not None and self._life.installed

    @property
    def initialized(self) -> bool:
        """True once this life's informers have synced."""
        return self._life is not None and self._life.initialized

    @property
    def tracker(self) -> ChangeTracker | None:
        """The running life's change tracker (its informer view), or None when down."""
        return self._life.tracker if self._life is not None else None

    @property
    def userspace(self) -> UserspaceProcess | None:
        """The running process's userspace proxier (None when down or in another mode)."""
        return self._life.userspace if self._life is not None else None

    @property
    def runner(self) -> BoundedFrequencyRunner | None:
        """The running life's sync runner, or None when down."""
        return self._life.runner if self._life is not None else None

    def informer_services(self) -> list[Service]:
        """Services as this kube-proxy has seen them (empty when down)."""
        t = self.tracker
        return list(t.services.values()) if t is not None else []

    def informer_slices(self) -> list[EndpointSlice]:
        """EndpointSlices as this kube-proxy has seen them (empty when down)."""
        t = self.tracker
        return list(t.slices.values()) if t is not None else []

    def programmed_endpoints(self, spn: ServicePortName) -> tuple[EndpointInfo, ...]:
        """Endpoints of ``spn`` in the state the kernel was last programmed from."""
        return self.programmed.endpoints(spn) if self.programmed is not None else ()

    def informer_endpoints(self, spn: ServicePortName) -> tuple[EndpointInfo, ...]:
        """Endpoints of ``spn`` as the informers hold them now (newer than programmed)."""
        life = self._life
        if life is None:
            return ()
        view = self._informer_cache
        if view is None or view.life is not life or view.version != life.tracker.version:
            endpoints = build_endpoints_map(
                life.tracker.slices.values(), self.node, self.caches.compile
            )
            view = self._informer_cache = _InformerView(life, life.tracker.version, endpoints)
        return view.endpoints.get(spn, ())

    def on_programmed(self, listener: Callable[[str, ProgrammedView], None]) -> None:
        """Register a listener called as ``listener(node, view)`` after each successful sync."""
        self._programmed_listeners.append(listener)

    def on_failing_change(self, listener: Callable[[], None]) -> None:
        """Register a listener called whenever :attr:`failing` turns True or False."""
        self._failing_listeners.append(listener)

    def on_conntrack_cleanup(self, listener: CleanupListener) -> None:
        """Register a listener called after each UDP conntrack clean-up."""
        self._cleanup_listeners.append(listener)

    # --- lifecycle and faults ---------------------------------------------------------------

    def start(self, *, warm: bool = False, programmed: ProgrammedView | None = None) -> None:
        """Start kube-proxy (the world calls this once, at t=0).

        ``warm``: the process has long been running when the simulation begins, so its
        informers are already synced (no ``informer_sync_s`` wait); its first sync is still
        a full one, as after any start. ``programmed``: what the kernel's rules were
        programmed from before the simulation began (its health servers answer from it).
        """
        if self._life is not None:
            raise RuntimeError(f"kube-proxy on {self.node} already running")
        if programmed is not None:
            self.programmed = programmed
        self._life = _Life(self, informer_sync_s=0.0 if warm else None)

    def start_in_step(
        self, leader: KubeProxy, *, warm: bool = False, programmed: ProgrammedView | None = None
    ) -> None:
        """Start kube-proxy as a member of ``leader``'s *cohort*: nodes in step share one life.

        Nodes alike (same settings, same watch delay, same start, iptables mode, a shared
        compile context: :mod:`svcsim.sim.shared_sync`) started at the same instant receive
        the same watch events and sync at the same instants from the same objects. Their
        kube-proxies then share one life (informers, change tracker, runner, sync process);
        a sync's end installs, measures and records for each member, in the order the
        members started, exactly as their separate lives would have one after the other
        (``leader``'s life stands where ``leader``'s own processes would stand in SimPy's
        queue, so the members must start right after it, before anything else starts).

        A member leaves the cohort when it crashes or restarts (its new life is its own).
        Faults that would make a member's life differ while it runs (:meth:`api_cut`,
        :meth:`block_sync`, :meth:`inject_stale_rule`) raise for a member: a node they
        touch must be started on its own (the scenario builder does so,
        :mod:`svcsim.scenario.cohorts`).
        """
        life = leader._life
        if self._life is not None:
            raise RuntimeError(f"kube-proxy on {self.node} already running")
        if life is None or leader not in life.members:
            raise ValueError(f"kube-proxy on {leader.node} is not running")
        problem = self.unlike(leader, warm=warm)
        if problem is not None or life.started_s != self.env.now or life.watch is not None:
            raise ValueError(
                f"node {self.node} cannot share the life of {leader.node}'s kube-proxy: "
                f"{problem or 'it started earlier'}"
            )
        if programmed is not None:
            self.programmed = programmed
        life.members.append(self)
        self._life = life

    def unlike(self, leader: KubeProxy, *, warm: bool) -> str | None:
        """Why this kube-proxy, started now, could not share ``leader``'s life; None if it can.

        ``leader`` must be running (started at this instant); ``warm`` as for :meth:`start`.
        """
        life = leader._life
        if life is None:
            return f"{leader.node}'s kube-proxy is not running"
        checks = (
            (self.kernel.mode == "iptables" and leader.kernel.mode == "iptables", "mode"),
            (self.userspace_config is None, "userspace settings"),
            (self.alike_ctx is not None and self.alike_ctx is leader.alike_ctx, "context"),
            (self.config == leader.config, "settings"),
            (self.env is leader.env and self.api is leader.api, "environment"),
            (self.caches is leader.caches and self.recorder is leader.recorder, "run"),
            (self.trigger_time is leader.trigger_time, "trigger times"),
            (warm == (life.informer_sync_s == 0.0 and life.installed), "start"),
            (self.blocked_until_s == leader.blocked_until_s, "block"),
            (self.api_reachable and leader.api_reachable, "API reach"),
            (self.kernel.ruleset == leader.kernel.ruleset, "kernel rules"),
        )
        failed = [what for ok, what in checks if not ok]
        return f"different {', '.join(failed)}" if failed else None

    @property
    def in_cohort(self) -> bool:
        """True while this kube-proxy shares its life with other nodes' (:meth:`start_in_step`)."""
        return self._life is not None and len(self._life.members) > 1

    def _leave(self, cause: ProxyStopped) -> None:
        """End this node's part in its life: the life itself ends with its last member."""
        life = self._life
        assert life is not None
        self._life = None
        life.members.remove(self)
        if not life.members:
            life.stop(cause)
        elif life.proxy is self:
            life.proxy = life.members[0]

    def _alone(self, fault: str) -> None:
        if self.in_cohort:
            raise RuntimeError(
                f"node {self.node}: {fault} on a kube-proxy that shares its life with nodes in "
                "step; start it on its own (KubeProxy.start) to fault it alone"
            )

    def crash(self) -> bool:
        """Kill the process: watches stop, no more syncs; kernel rules and conntrack stay.

        A sync in progress never completes. Returns False (and records nothing) if already down.
        """
        if self._life is None:
            return False
        self._leave(ProxyStopped(self.env.now, "crash"))
        self._event(EventKind.PROXY_CRASHED, "crash")
        return True

    def restart(self) -> None:
        """(Re)start the process: informer sync, then a full sync (a running one is killed)."""
        if self._life is not None:
            self._leave(ProxyStopped(self.env.now, "restart"))
        self.stale_chains = {}  # the new process starts with an empty staleChains
        self._life = _Life(self)
        self._event(EventKind.PROXY_RESTARTED, "restart")

    def healthz(self) -> int | None:
        """What ``/healthz`` (port 10256) answers now; None when kube-proxy is not running."""
        life = self._life
        if life is None:
            return None
        return life.health.healthz(self.env.now, eligible=self.node_eligible)

    def node_tainted_for_deletion(self, tainted: bool) -> None:
        """Its Node gained or lost ``ToBeDeletedByClusterAutoscaler``, seen through its watch."""

        def seen(_: simpy.Event) -> None:
            self.node_eligible = not tainted

        self.env.timeout(self.config.watch_delay_s).callbacks.append(seen)

    def service_health(self, namespace: str, name: str) -> int | None:
        """What the Service's healthCheckNodePort answers now (:mod:`svcsim.sim.health`).

        None when nothing listens: kube-proxy is down, or this process has not yet opened
        the port (its first sync), or the Service has no healthCheckNodePort.
        """
        life = self._life
        if life is None or not life.installed:
            return None
        return service_health(self.programmed, life.health, namespace, name, self.env.now)

    def api_cut(self) -> None:
        """The node loses the API server: the watch breaks; rules and syncs go on as they are."""
        self._alone("api_cut")
        self.api_reachable = False
        if self._life is not None:
            self._life.disconnect()

    def api_back(self) -> None:
        """The API server answers again: relist (the differences become changes), watch again."""
        self._alone("api_back")
        self.api_reachable = True
        if self._life is not None:
            self._life.reconnect()

    def block_sync(self, for_s: float) -> None:
        """Make restores fail for ``for_s`` seconds from now (e.g. the xtables lock is held).

        A sync whose restore (its end) falls in the window fails after taking its full
        duration; the runner retries after ``syncPeriod`` and the first success is full.
        """
        if for_s <= 0:
            raise ValueError(f"block_sync needs a positive duration, got {for_s!r}")
        self._alone("block_sync")
        self.blocked_until_s = max(self.blocked_until_s, self.env.now + for_s)
        self._event(EventKind.FAULT, f"block-sync for={for_s:g}s")

    def inject_stale_rule(
        self, service_port: ServicePortName | str, endpoint: str, *, own_chain: bool = True
    ) -> str:
        """Edit the kernel's nat table by hand so ``service_port`` also sends to ``endpoint``.

        The exact restore input is :func:`~svcsim.sim.restore.stale_rule_restore`'s: by
        default a ``KUBE-SEP`` chain for the endpoint plus a jump to it at the top of the
        Service's ``KUBE-SVC`` chain, as kube-proxy would have written them. Returns that text.
        """
        self._alone("inject_stale_rule")
        kernel = self.kernel
        if kernel.mode == "ipvs":
            raise ValueError(
                f"node {self.node}: IPVS mode has no KUBE-SVC chain to inject a stale rule into"
            )
        spn = self._resolve(service_port)
        if kernel.mode == "userspace":
            # No per-endpoint rule exists: the stale state is the balancer's (kube-proxy's own).
            if self.userspace is None:
                raise ValueError(f"node {self.node}: kube-proxy is not running")
            self.userspace.add_stale_endpoint(spn, endpoint)
            text = f"# balancer of {spn.text} also holds {endpoint}\n"
        elif kernel.mode == "nftables":
            if kernel.nft is None:
                raise ValueError(f"node {self.node}: no nf_tables table to edit yet")
            text, table = stale_endpoint_edit(kernel.nft.table, spn, endpoint)
            kernel.install_nft(table, parse_installed(table, self.parse_memo), self.env.now)
        else:
            text = stale_rule_restore(kernel.ruleset, spn, endpoint, own_chain=own_chain)
            edited = apply_restore(
                kernel.ruleset, text, noflush=True, interner=self.caches.compile.interner
            )
            kernel.install(edited, self.env.now)
        self._event(EventKind.FAULT, f"inject-stale-rule {spn.text} -> {endpoint}", spn.text)
        return text

    # --- internals --------------------------------------------------------------------------

    def _resolve(self, service_port: ServicePortName | str) -> ServicePortName:
        if isinstance(service_port, ServicePortName):
            return service_port
        known = set(self.programmed.service_ports) if self.programmed is not None else set()
        known |= set(build_service_port_map(self.informer_services(), self.caches.compile))
        hits = sorted(spn for spn in known if spn.text == service_port)
        if not hits:
            raise ValueError(f"node {self.node}: no service port {service_port!r} known")
        if len(hits) > 1:
            raise ValueError(f"{service_port!r} is ambiguous ({len(hits)} protocols)")
        return hits[0]

    def _endpoint_set(self, spn: ServicePortName, endpoints: frozenset[str]) -> None:
        """Userspace mode: a balancer's endpoints changed (the set this node spreads over)."""
        if self.recorder is not None:
            self.recorder.add_endpoint_set(self.env.now, self.node, spn.text, endpoints)

    def _event(self, kind: EventKind, detail: str, obj: str = "") -> None:
        if self.recorder is not None:
            self.recorder.add_event(self.env.now, kind, node=self.node, object=obj, detail=detail)

    def _clean_udp_conntrack(self, flt: StaleUdpFilter, now_s: float) -> int:
        deleted = self.kernel.conntrack.delete(flt.matches_entry)
        self._event(EventKind.CONNTRACK_CLEANUP, f"deleted={deleted}")
        for listener in self._cleanup_listeners:
            listener(flt, now_s)
        return deleted


class _Prepared(NamedTuple):
    """One member's part of an iptables-mode sync, planned at its start."""

    proxy: KubeProxy
    endpoints_map: EndpointsMap
    plan: SyncPlan
    rules_written: int
    delete_stale: bool


class _Life:
    """One run of the kube-proxy process, from (re)start to crash."""

    def __init__(self, proxy: KubeProxy, *, informer_sync_s: float | None = None) -> None:
        env = proxy.env
        cfg = proxy.config
        self.proxy = proxy
        """The first of :attr:`members` (what is the same for all of them is read from it)."""
        self.members = [proxy]
        """The kube-proxies living this life, in the order they started (more than one: a
        cohort, :meth:`KubeProxy.start_in_step`)."""
        self.informer_sync_s = cfg.informer_sync_s if informer_sync_s is None else informer_sync_s
        self.received_through_s = -math.inf
        """API time of the newest Service/EndpointSlice change this life's informers hold."""
        # A warm start inherits rules that match the API state, as if this life wrote them.
        self.installed = informer_sync_s == 0.0
        """True once the kernel's rules are this life's (its first successful sync ended)."""
        self.started_s = env.now
        self.tracker = ChangeTracker(
            proxy.node, start_s=env.now, trigger_time=proxy.trigger_time, caches=proxy.caches
        )
        self.runner = BoundedFrequencyRunner(
            env,
            self.sync,
            min_interval_s=cfg.min_sync_period_s,
            retry_interval_s=cfg.sync_period_s,
            max_interval_s=cfg.full_sync_period_s,
            alarms=proxy.caches.alarms,
        )
        self.mutex = simpy.Resource(env, capacity=1)
        self.initialized = False
        self.need_full = True
        self.last_full_end_s = -math.inf
        self.last_cleanup_s = -math.inf
        self.watch: Watch | None = None
        self.waiting_for_api = False
        """The informer wait ended while the API server was unreachable: listing waits."""
        self.health = ProxyHealth(2 * cfg.sync_period_s)
        """This process's ``/healthz`` state (``healthTimeout`` = 2 x ``syncPeriod``)."""
        self.userspace: UserspaceProcess | None = None
        """userspace mode: this process's proxier (sockets, balancers, portals)."""
        if proxy.userspace_config is not None:
            self.userspace = UserspaceProcess(
                proxy.kernel,
                proxy.ctx.node_ip or "127.0.0.1",
                proxy.userspace_config,
                proxy._endpoint_set,
                proxy.caches.compile,
            )
            if self.installed and proxy.programmed is not None:
                self.userspace.adopt(proxy.programmed.service_ports, env.now)
            else:
                self.userspace.flush(env.now)  # createProxier: iptablesInit + iptablesFlush
        self.runner.start()
        self.main = env.process(self._main())
        # --- ipvs mode (start) ---
        self.graceful = GracefulTermination()
        """IPVS mode: this process's graceful-termination manager (its list dies with it)."""
        self.drain_check: simpy.Process | None = None
        if proxy.kernel.mode == "ipvs":
            self.drain_check = env.process(self._check_draining())
        # --- ipvs mode (end) ---

    def disconnect(self) -> None:
        """The watch breaks (the API server is unreachable)."""
        if self.watch is not None:
            self.watch.stop()
            self.watch = None

    def reconnect(self) -> None:
        """Relist and watch again; a life still waiting to list does its start-up now."""
        if not self.initialized:
            if self.waiting_for_api:
                self.waiting_for_api = False
                self.main = self.proxy.env.process(self._start_informers())
            return
        proxy, tracker = self.proxy, self.tracker
        changed = False
        services = {s.meta.key: s for s in proxy.api.list(SERVICE_KIND)}
        for key, old in list(tracker.services.items()):
            if key not in services:
                changed = tracker.service_update(old, None) or changed
        for key, svc in services.items():
            seen = tracker.services.get(key)
            if seen != svc:
                changed = tracker.service_update(seen, svc) or changed
        slices = {sl.meta.key: sl for sl in proxy.api.list(ENDPOINT_SLICE_KIND)}
        for key, old_slice in list(tracker.slices.items()):
            if key not in slices:
                pending = tracker.slice_update(old_slice, removed=True)
                if self.userspace is not None:
                    self.userspace.slice_seen(old_slice, removed=True)
                    pending = False  # the balancers took it: no sync (see _on_event)
                changed = pending or changed
        for key, sl in slices.items():
            if tracker.slices.get(key) != sl:
                pending = tracker.slice_update(sl, removed=False)
                if self.userspace is not None:
                    self.userspace.slice_seen(sl, removed=False)
                    pending = False  # the balancers took it: no sync (see _on_event)
                changed = pending or changed
        self.received_through_s = proxy.env.now
        self.watch = proxy.api.watch(
            WATCHED_KINDS, self._on_event, delay_s=proxy.config.watch_delay_s
        )
        # userspace mode: pending slice changes ask for no sync (the balancers took them).
        waiting = (
            bool(tracker.pending().service_changes)
            if self.userspace is not None
            else tracker.has_pending()
        )
        if changed or waiting:
            self.health.queued(proxy.env.now)
            self.runner.run()

    def stop(self, cause: ProxyStopped) -> None:
        """End this life: watches stop, the runner and the start-up process are interrupted."""
        if self.watch is not None:
            self.watch.stop()
        if self.userspace is not None:
            self.userspace.exit(self.proxy.env.now)
        self.runner.stop(cause)
        if self.main.is_alive:
            self.main.interrupt(cause)
        if self.drain_check is not None and self.drain_check.is_alive:
            self.drain_check.interrupt(cause)

    def _main(self) -> Generator[simpy.Event, Any, None]:
        try:
            yield self.proxy.env.timeout(self.informer_sync_s)
        except simpy.Interrupt:
            return
        if not self.proxy.api_reachable:
            self.waiting_for_api = True  # :meth:`reconnect` lists once the API answers
            return
        yield from self._start_informers()

    def _start_informers(self) -> Generator[simpy.Event, Any, None]:
        """List, watch, then the first (full) sync, called directly as upstream does."""
        proxy = self.proxy
        try:
            for svc in proxy.api.list(SERVICE_KIND):
                self.tracker.service_update(None, svc)
            for sl in proxy.api.list(ENDPOINT_SLICE_KIND):
                self.tracker.slice_update(sl, removed=False)
                if self.userspace is not None:
                    self.userspace.slice_seen(sl, removed=False)
            self.received_through_s = proxy.env.now  # the list is the API state of now
            self.watch = proxy.api.watch(
                WATCHED_KINDS, self._on_event, delay_s=proxy.config.watch_delay_s
            )
            self.initialized = True
            # OnServiceSynced / OnEndpointSlicesSynced call syncProxyRules directly.
            yield from self.sync()
        except simpy.Interrupt:
            return

    def _on_event(self, event: WatchEvent) -> None:
        # A watch delivers in the API server's order: this is the newest change received.
        self.received_through_s = max(self.received_through_s, event.t_s)
        changed = self.tracker.on_event(event)
        if self.userspace is not None and event.kind == ENDPOINT_SLICE_KIND:
            removed = event.type is EventType.DELETED
            self.userspace.slice_seen(event.old if removed else event.new, removed=removed)
            changed = False  # the balancers took it; endpoint handlers never ask for a sync
        if changed and self.initialized:
            self.health.queued(self.proxy.env.now)  # ``Sync()``: QueuedUpdate, then Run
            self.runner.run()

    def sync(self) -> Generator[simpy.Event, Any, bool]:
        """``syncProxyRules``: serialised by the proxier mutex; a no-op before initialisation."""
        with self.mutex.request() as req:
            yield req
            if not self.initialized:
                return True
            ok = yield from self._sync_locked()
            return ok

    def _sync_locked(self) -> Generator[simpy.Event, Any, bool]:
        proxy, env, cfg = self.proxy, self.proxy.env, self.proxy.config
        start = env.now
        through = self.received_through_s
        # >=: upstream's lastFullSync is taken before the runner re-arms its timer, so an
        # hourly run always finds strictly more than an hour elapsed.
        full = self.need_full or start - self.last_full_end_s >= cfg.full_sync_period_s
        changes = self.tracker.take()
        caches = proxy.caches
        # Nodes in step hold the same objects: they share both maps (svcsim.proxy.shared_maps).
        service_ports = shared_service_port_map(self.tracker.services.values(), caches.compile)
        shared = shared_endpoints(self.tracker.slices.values(), caches.compile)
        if proxy.kernel.mode == "iptables":
            ok = yield from self._sync_iptables(
                start, through, full, changes, service_ports, shared
            )
            return ok
        endpoints_map = node_endpoints_map(shared, proxy.node, caches.compile)
        if self.userspace is not None:
            ok = yield from self._sync_userspace(
                start, through, full, changes, service_ports, endpoints_map
            )
            return ok
        if proxy.kernel.mode == "nftables":
            ok = yield from self._sync_nftables(
                start, through, full, changes, service_ports, endpoints_map
            )
            return ok
        ok = yield from self._sync_ipvs(start, through, changes, service_ports, endpoints_map)
        return ok

    def _sync_iptables(
        self,
        start: float,
        through: float,
        full: bool,
        changes: PendingChanges,
        service_ports: Mapping[ServicePortName, ServicePortInfo],
        shared: SharedEndpoints,
    ) -> Generator[simpy.Event, Any, bool]:
        """One iptables-mode sync of every member (see the module docstring); True if it succeeded.

        Members plan alike (the same number of rules written, the same stale-chain clean-up)
        and end alike (all restores succeed or all fail): if they did not, they could not have
        shared a life, and this raises.
        """
        env, cfg = self.proxy.env, self.proxy.config
        members = self.members
        caches = self.proxy.caches
        # A cohort whose members compile alike: one compile, and one plan per kernel ruleset
        # (members in step hold the same one), not one of each per member.
        uniform = (
            uniform_compile(service_ports, shared, self.proxy.alike_ctx, caches)
            if len(members) > 1
            else None
        )
        plans: dict[int, tuple[SyncPlan, bool]] = {}
        prepared = [
            self._prepare_iptables(
                member, start, full, changes, service_ports, shared, uniform, plans
            )
            for member in members
        ]
        ours = prepared[0]
        if any(p[3:] != ours[3:] for p in prepared):
            raise RuntimeError(self._diverged("plan a different number of rules"))
        if ours.delete_stale:
            self.last_cleanup_s = start
        duration = cfg.cost.duration_s(ours.rules_written)
        yield env.timeout(duration)
        end = env.now
        # Members that crashed or restarted during the sync have left (their sync never ends).
        done = [p for p in prepared if p.proxy._life is self]
        restored: dict[tuple[int, int], Ruleset] = {}
        outcomes = [self._restore_iptables(p, end, restored) for p in done]
        if any((error is None) != (outcomes[0][1] is None) for _, error in outcomes):
            raise RuntimeError(self._diverged("end their restores differently"))
        latency = max(
            (end - t for times in changes.trigger_times_s.values() for t in times),
            default=math.nan,
        )
        # kube-proxy's UDP clean-up reads endpoint IPs and serving, never locality: one filter
        # serves every member (made at the first success that needs it).
        udp_filter: StaleUdpFilter | None = None
        ok = True
        for p, (ruleset, error) in zip(done, outcomes, strict=True):
            member, m = p.proxy, p.proxy.metrics
            m.sync_proxy_rules_duration_seconds.observe(duration)
            if full:
                m.sync_full_proxy_rules_duration_seconds.observe(duration)
            else:
                m.sync_partial_proxy_rules_duration_seconds.observe(duration)
            m.sync_proxy_rules_iptables_last = p.rules_written
            if error is not None:
                # The changes were checked out: only a full sync can recover them.
                self.need_full = True
                member.last_error = error
                m.sync_proxy_rules_iptables_restore_failures_total += 1
                if not full:
                    m.sync_proxy_rules_iptables_partial_restore_failures_total += 1
                self._record(start, end, full, False, p.rules_written, math.nan, through, member)
                ok = False
                continue
            assert ruleset is not None
            member.kernel.install(ruleset, end)
            if udp_filter is None and changes.conntrack_cleanup_required:
                udp_filter = StaleUdpFilter.from_maps(service_ports, p.endpoints_map)
            self._succeeded(
                start, end, full, changes, service_ports, p.endpoints_map, member, udp_filter
            )
            self._record(start, end, full, True, p.rules_written, latency, through, member)
        return ok

    def _prepare_iptables(
        self,
        proxy: KubeProxy,
        start: float,
        full: bool,
        changes: PendingChanges,
        service_ports: Mapping[ServicePortName, ServicePortInfo],
        shared: SharedEndpoints,
        uniform: IptablesSync | None,
        plans: dict[int, tuple[SyncPlan, bool]],
    ) -> _Prepared:
        """One member's iptables-mode compile and restore plan at the start of a sync.

        ``uniform``: every member's compile (:func:`~svcsim.sim.shared_sync.uniform_compile`),
        or None; ``plans``: this sync's plans so far by kernel ruleset (with ``uniform``).
        """
        caches, cfg = proxy.caches, proxy.config
        endpoints_map = node_endpoints_map(shared, proxy.node, caches.compile)
        kernel_ruleset = proxy.kernel.ruleset
        if uniform is not None:
            found = plans.get(id(kernel_ruleset))
            if found is not None:
                plan, delete_stale = found
                return _Prepared(proxy, endpoints_map, plan, plan.rules_written, delete_stale)
        compiled = (
            uniform
            if uniform is not None
            else iptables_compile(
                service_ports, shared, endpoints_map, proxy.node, proxy.ctx, proxy.alike_ctx, caches
            )
        )
        delete_stale = (
            not compiled.stats.large_cluster_mode or start - self.last_cleanup_s > cfg.sync_period_s
        )
        nat = kernel_ruleset.table("nat")
        plan = plan_sync(
            compiled,
            # Chain names do not depend on locality: the shared map names them for every node.
            () if full else service_chains(service_ports, shared.base, changes.services, caches),
            full=full,
            existing_nat_chains=chain_names(nat, caches),
            delete_stale=delete_stale,
            caches=caches,
            kernel_nat=nat,
        )
        if uniform is not None:
            plans[id(kernel_ruleset)] = (plan, delete_stale)  # its kernel holds it through the sync
        return _Prepared(proxy, endpoints_map, plan, plan.rules_written, delete_stale)

    def _restore_iptables(
        self, p: _Prepared, end: float, restored: dict[tuple[int, int], Ruleset]
    ) -> tuple[Ruleset | None, str | None]:
        """The ruleset one member's restore leaves at the sync's end, or why it failed.

        ``restored``: this sync's results so far by (kernel ruleset, plan) identities (members
        in step restore the same plan onto the same ruleset; their kernels hold both).
        """
        proxy = p.proxy
        if end < proxy.blocked_until_s:
            return None, "iptables-restore: another app is currently holding the xtables lock"
        kernel_ruleset = proxy.kernel.ruleset
        key = (id(kernel_ruleset), id(p.plan))
        found = restored.get(key)
        if found is not None:
            return found, None
        try:
            found = restored[key] = apply_plan(kernel_ruleset, p.plan, proxy.caches)
        except RestoreError as exc:
            return None, str(exc)
        return found, None

    def _diverged(self, how: str) -> str:
        nodes = ", ".join(m.node for m in self.members)
        return (
            f"kube-proxies in step ({nodes}) {how}: nodes whose syncs can differ must not share "
            "a life (svcsim.scenario.cohorts decides which do)"
        )

    def _sync_nftables(
        self,
        start: float,
        through: float,
        full: bool,
        changes: PendingChanges,
        service_ports: Mapping[ServicePortName, ServicePortInfo],
        endpoints_map: EndpointsMap,
    ) -> Generator[simpy.Event, Any, bool]:
        """One nftables-mode sync (see the module docstring); True if it succeeded."""
        proxy, env, cfg = self.proxy, self.proxy.env, self.proxy.config
        kernel, m = proxy.kernel, proxy.metrics
        installed = kernel.nft.table if kernel.nft is not None else None
        if installed is not None and proxy.stale_chains:
            cleaned, proxy.stale_chains, _, failed = delete_stale_chains(
                installed, proxy.stale_chains, start
            )
            if failed:
                m.sync_proxy_rules_nftables_cleanup_failures_total += 1
            elif cleaned is not installed:
                kernel.install_nft(cleaned, parse_installed(cleaned, proxy.parse_memo), start)
                installed = cleaned
        compiled = table_from_maps(
            service_ports, endpoints_map, proxy.ctx, proxy.service_cidrs, proxy.chain_names
        )
        layout = proxy.chain_names.layout(compiled)
        # A partial sync spliced from the last install where it can be (sim/nft_splice.py).
        fast = (
            None
            if proxy.spliced is None or installed is None
            else splice_sync(
                proxy.spliced,
                installed,
                compiled,
                layout,
                changes.services,
                full=full,
                now_s=start,
                stale_chains=proxy.stale_chains,
                memo=proxy.parse_memo,
            )
        )
        plan, next_spliced = (
            fast
            if fast is not None
            else (
                plan_nft_sync(
                    installed,
                    compiled,
                    changes.services,
                    full=full,
                    now_s=start,
                    stale_chains=proxy.stale_chains,
                ),
                None,
            )
        )
        duration = cfg.nft_cost.duration_s(plan.objects_written)
        yield env.timeout(duration)
        end = env.now
        m.sync_proxy_rules_duration_seconds.observe(duration)
        if full:
            m.sync_full_proxy_rules_duration_seconds.observe(duration)
        else:
            m.sync_partial_proxy_rules_duration_seconds.observe(duration)
        m.nftables_objects_last = plan.objects_written
        if end < proxy.blocked_until_s:
            # The transaction fails as a whole; staleChains is recomputed next time.
            self.need_full = True
            proxy.last_error = "nft: transaction failed (the sync was blocked)"
            proxy.stale_chains = {}
            m.sync_proxy_rules_nftables_sync_failures_total += 1
            self._record(start, end, full, False, plan.objects_written, math.nan, through)
            return False
        proxy.stale_chains = plan.stale_chains
        proxy.spliced = install_planned(kernel, plan, next_spliced, layout, proxy.parse_memo, end)
        self._succeeded(start, end, full, changes, service_ports, endpoints_map)
        latency = max(
            (end - t for times in changes.trigger_times_s.values() for t in times),
            default=math.nan,
        )
        self._record(start, end, full, True, plan.objects_written, latency, through)
        return True

    # --- ipvs mode (start) ---

    def _sync_ipvs(
        self,
        start: float,
        through: float,
        changes: PendingChanges,
        service_ports: Mapping[ServicePortName, ServicePortInfo],
        endpoints_map: EndpointsMap,
    ) -> Generator[simpy.Event, Any, bool]:
        """One IPVS-mode sync (always full; see the module docstring); True if it succeeded."""
        proxy, env, cfg = self.proxy, self.proxy.env, self.proxy.config
        kernel, m = proxy.kernel, proxy.metrics
        wanted = ipvs_from_maps(
            service_ports,
            endpoints_map,
            proxy.ctx,
            cfg.ipvs_scheduler,
            show_draining=False,
            memo=proxy.caches.ipvs_ports,
        )
        installed = kernel.ipvs
        assert installed is not None  # an IPVS-mode kernel always holds a state
        counts = sync_counts(installed, wanted)
        cost = cfg.ipvs_cost if cfg.ipvs_cost is not None else IpvsSyncCostModel()
        duration = cost.duration_s(counts.objects, counts.changes)
        yield env.timeout(duration)
        end = env.now
        m.sync_proxy_rules_duration_seconds.observe(duration)
        m.sync_full_proxy_rules_duration_seconds.observe(duration)
        restored = end >= proxy.blocked_until_s
        install_sync(kernel, self.graceful, wanted, end, restored=restored)
        if not restored:
            # The servers and sets changed; the helper rules' restore failed: retry in full.
            self.need_full = True
            proxy.last_error = "iptables-restore: another app is currently holding the xtables lock"
            m.sync_proxy_rules_iptables_restore_failures_total += 1
            self._record(start, end, True, False, counts.changes, math.nan, through)
            return False
        self._succeeded(start, end, True, changes, service_ports, endpoints_map)
        latency = max(
            (end - t for times in changes.trigger_times_s.values() for t in times),
            default=math.nan,
        )
        self._record(start, end, True, True, counts.changes, latency, through)
        return True

    def _check_draining(self) -> Generator[simpy.Event, Any, None]:
        """``gracefuldeleteManager.Run``: ``tryDeleteRs`` every ``rsCheckDeleteInterval``."""
        env = self.proxy.env
        try:
            while True:
                yield env.timeout(RS_CHECK_DELETE_INTERVAL_S)
                check_draining(self.proxy.kernel, self.graceful, env.now)
        except simpy.Interrupt:
            return

    # --- ipvs mode (end) ---

    def _sync_userspace(
        self,
        start: float,
        through: float,
        full: bool,
        changes: PendingChanges,
        service_ports: Mapping[ServicePortName, ServicePortInfo],
        endpoints_map: EndpointsMap,
    ) -> Generator[simpy.Event, Any, bool]:
        """One userspace-mode sync (:mod:`svcsim.sim.userspace_proxy`); True if iptables took it.

        ``full`` (at start, after a failure): every Service known or open is merged; those that
        did not change keep their sockets (``sameConfig``), so this only catches up. (Upstream
        has no full syncs: its sockets change even when iptables fails, as here.)
        """
        proxy, env, cfg = self.proxy, self.proxy.env, self.proxy.config
        process, m = self.userspace, proxy.metrics
        assert process is not None
        changed = set(changes.service_changes)
        if full:
            changed |= {spn.service for spn in (*service_ports, *process.portals)}
        plan = process.plan(service_ports, changed)
        rules = process.rules_ensured(plan)
        duration = cfg.cost.duration_s(rules)
        yield env.timeout(duration)
        end = env.now
        m.sync_proxy_rules_duration_seconds.observe(duration)
        if full:
            m.sync_full_proxy_rules_duration_seconds.observe(duration)
        else:
            m.sync_partial_proxy_rules_duration_seconds.observe(duration)
        m.sync_proxy_rules_iptables_last = rules
        ok = end >= proxy.blocked_until_s
        process.apply(plan, end, iptables_ok=ok)
        if not ok:
            self.need_full = True
            proxy.last_error = "iptables: another app is currently holding the xtables lock"
            m.sync_proxy_rules_iptables_restore_failures_total += 1
            self._record(start, end, full, False, rules, math.nan, through)
            return False
        # Upstream's userspace sync clears UDP conntrack only for removed ports (done above).
        self._succeeded(
            start, end, full, replace(changes, conntrack_cleanup_required=False),
            service_ports, endpoints_map,
        )  # fmt: skip
        latency = max(
            (end - t for times in changes.trigger_times_s.values() for t in times),
            default=math.nan,
        )
        self._record(start, end, full, True, rules, latency, through)
        return True

    def _succeeded(
        self,
        start: float,
        end: float,
        full: bool,
        changes: PendingChanges,
        service_ports: Mapping[ServicePortName, ServicePortInfo],
        endpoints_map: EndpointsMap,
        member: KubeProxy | None = None,
        udp_filter: StaleUdpFilter | None = None,
    ) -> None:
        """What follows a successful sync in either mode: state, metrics, listeners, clean-up.

        ``member``: whose sync (a cohort's member); None: the life's own proxy.
        ``udp_filter``: the UDP clean-up's filter if already made from these maps.
        """
        proxy = self.proxy if member is None else member
        m = proxy.metrics
        self.health.updated()
        self.need_full = False
        proxy.last_error = None
        if full:
            self.last_full_end_s = end
        latencies = [end - t for times in changes.trigger_times_s.values() for t in times]
        m.network_programming_duration_seconds.observe_all(latencies)
        m.sync_proxy_rules_last_timestamp_seconds = end
        proxy.programmed = ProgrammedView(
            start, end, service_ports, endpoints_map, None if full else changes.services
        )
        for listener in proxy._programmed_listeners:
            listener(proxy.node, proxy.programmed)
        if changes.conntrack_cleanup_required:
            if udp_filter is None:
                udp_filter = StaleUdpFilter.from_maps(service_ports, endpoints_map)
            proxy._clean_udp_conntrack(udp_filter, end)
        self.installed = True

    def _record(
        self,
        start: float,
        end: float,
        full: bool,
        ok: bool,
        rules: int,
        latency: float,
        through: float,
        member: KubeProxy | None = None,
    ) -> None:
        proxy = self.proxy if member is None else member
        rec = proxy.recorder
        if rec is not None:
            rec.add_sync(
                node=proxy.node,
                start_s=start,
                end_s=end,
                full=full,
                ok=ok,
                rules_written=rules,
                programming_latency_s=latency,
                applied_through_s=through,
            )
