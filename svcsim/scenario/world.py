"""The world of one scenario run: every simulated component, its random streams, and the loop.

The loop is DESIGN.md decision 3: control-plane events are SimPy events; between two of them
nothing in the control plane changes, so the traffic engine resolves every request of that
interval in one vectorised step against the state that holds there::

    while t < end:
        t_next = min(env.peek(), end)
        traffic.advance_to(t_next)     # requests starting in [t, t_next)
        env.step() for every event at t_next

:class:`World` is also the traffic layer's :class:`~svcsim.traffic.context.TrafficContext`.
It is assembled by :mod:`svcsim.scenario.build`; nothing here reads scenario files.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import simpy

from svcsim.k8s.objects import Service
from svcsim.proxy.endpoints import EndpointInfo, ServicePortInfo
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.topology import categorize_endpoints_shared
from svcsim.results.records import Recorder
from svcsim.results.schema import RecordLevel
from svcsim.sim.api import ApiServer
from svcsim.sim.caches import PortsOfServicesKey, RunCaches
from svcsim.sim.coredns import CoreDns
from svcsim.sim.kernel import Kernel
from svcsim.sim.kubeproxy import KubeProxy
from svcsim.sim.loadbalancer import CloudLoadBalancer
from svcsim.sim.network import PodNetwork
from svcsim.sim.nodelocaldns import NodeLocalDns
from svcsim.sim.nodes import NodeLifecycle
from svcsim.sim.synccost import ProgrammedView
from svcsim.traffic.context import ApiView, ClientPod, ProxyState
from svcsim.traffic.core import EngineCore
from svcsim.traffic.dns_race import RaceSettings
from svcsim.traffic.spec import ExponentialTime, ServiceTime

DEFAULT_SERVICE_TIME = ExponentialTime(0.010)
"""Service time of an app the scenario says nothing about (10 ms mean)."""

CONNTRACK_SAMPLE_S = 1.0
"""How often each node's conntrack table size is sampled (simulated seconds)."""

_ProgrammedInput = tuple[ServicePortInfo, tuple[EndpointInfo, ...], frozenset[str], tuple[str, str]]
"""What :meth:`World._programmed` last saw for one node's service port (see there)."""

Progress = Callable[[float], None]
"""Called with the simulated time after each step of the loop (for progress bars)."""


def stream_key(name: str) -> tuple[int, ...]:
    """A stable ``spawn_key`` for the random stream called ``name``.

    Streams are keyed by name, not by creation order, so adding a consumer (a workload, a
    node) never changes the draws of another (DESIGN.md decision 4).
    """
    digest = hashlib.sha256(name.encode()).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


RECORDS_FINAL_EVERY_S: Final = 10.0
"""How often (simulated seconds) the main loop hands the recorder a watermark: the counts of
``failures-and-aggregates`` are held at most about this long plus the longest attempt."""


class World:
    """Everything simulated in one run, and the main loop.

    The builder fills in the components (:attr:`network`, :attr:`kernels`, :attr:`proxies`,
    :attr:`view`, :attr:`traffic`, the app service times and the addresses outside the Pod
    network that answer) before :meth:`run`.
    """

    def __init__(
        self, seed: int, end_s: float, records: RecordLevel = RecordLevel.EVERY_REQUEST
    ) -> None:
        if end_s <= 0:
            raise ValueError(f"non-positive duration {end_s!r}")
        self.seed = seed
        self.end_s = end_s
        self.env = simpy.Environment()
        self.api = ApiServer(self.env)
        self.caches = RunCaches()
        """This run's memos (DESIGN.md decision 8): handed to each node's kube-proxy and to the
        compilers; no other World shares them (:mod:`svcsim.sim.caches`)."""
        self._recorder = Recorder(records, span_s=end_s)
        self._rngs: dict[str, np.random.Generator] = {}
        self._network = PodNetwork({})
        self._kernels: dict[str, Kernel] = {}
        self.proxies: dict[str, KubeProxy] = {}
        self.view: ApiView | None = None
        self.traffic: EngineCore | None = None
        self.service_times: dict[str, ServiceTime] = {}
        self.outside_hosts: dict[str, str] = {}
        self.coredns: CoreDns | None = None
        """The cluster's CoreDNS answers, when a workload dials names (docs/dns.md)."""
        self.dns_race: RaceSettings | None = None
        """The A/AAAA conntrack insert race of the client nodes (with :attr:`coredns`)."""
        self.nodelocaldns: NodeLocalDns | None = None
        """NodeLocal DNSCache's per-node caches, when ``cluster.dns.nodeLocalCache`` runs it."""
        self.outside_down: set[str] = set()
        """Hand-made endpoints outside the Pod network that are down now."""
        self.outside_version = 0
        """Counts changes of :attr:`outside_down` (classifications depend on it)."""
        self._proxy_changes = 0
        self._last_sets: dict[tuple[str, str], frozenset[str]] = {}
        self._programmed_seen: dict[str, dict[ServicePortName, _ProgrammedInput]] = {}
        """Per node and service port: the info and endpoints :meth:`_programmed` last
        categorised, the set then noted for it and its key in ``_last_sets``."""
        self._restarting: set[str] = set()
        self.nodes: NodeLifecycle | None = None
        """Node faults and the node lifecycle controller (set by the builder)."""
        self.load_balancers: dict[str, CloudLoadBalancer] = {}
        """The cloud load balancer of each Service reached through one, by ``ns/name``."""

    # --- assembly -------------------------------------------------------------------------------

    def set_network(self, network: PodNetwork) -> None:
        """Install the Pod network (before any Pod starts)."""
        self._network = network

    def add_kernel(self, kernel: Kernel) -> None:
        """Add a node's kernel."""
        self._kernels[kernel.node] = kernel

    def record_event(self, t_s: float, kind: str, node: str, obj: str, detail: str) -> None:
        """The control plane's event sink (:data:`svcsim.sim.config.RecordEvent`)."""
        self._recorder.add_event(t_s, kind, node=node, object=obj, detail=detail)

    def add_proxy(self, proxy: KubeProxy) -> None:
        """Add a node's kube-proxy and follow the endpoint sets it programs."""
        self.proxies[proxy.node] = proxy
        proxy.on_programmed(self._programmed)
        proxy.on_failing_change(self.proxy_changed)

    def _programmed(self, node: str, view: ProgrammedView) -> None:
        """Note the endpoint sets of a sync that just installed its rules.

        The set is the one a Pod's ClusterIP traffic meets on this node: the cluster
        endpoints (narrowed by topology hints where kube-proxy obeys them), or the local ones
        for ``internalTrafficPolicy: Local``.
        """
        proxy = self.proxies.get(node)
        zone, prefer = "", True
        if proxy is not None:
            zone = proxy.ctx.node_zone or ""
            prefer = proxy.ctx.prefer_same_traffic_distribution
        if node in self._restarting:
            self._restarting.discard(node)
            self.proxy_changed()  # its state is "up" again
        if proxy is not None and proxy.kernel.mode == "userspace":
            return  # its balancers record their sets as they change (no sync involved)
        seen = self._programmed_seen.setdefault(node, {})
        last_sets = self._last_sets
        texts = self.caches.endpoint_texts
        endpoints_map = view.endpoints_map
        for spn, info in self._ports_to_check(view):
            eps = endpoints_map.get(spn, ())
            last = seen.get(spn)
            if (
                last is not None
                and last[0] is info
                and last[1] is eps
                and last_sets.get(last[3]) is last[2]
            ):
                # The very same frozen inputs as last time, whose set is still the one noted:
                # computing it again would find it unchanged and record nothing.
                continue
            split = categorize_endpoints_shared(eps, info, node, zone, prefer, self.caches.compile)
            chosen = split.local if info.internal_policy_local else split.cluster
            # Nodes in step meet the very same endpoints: their texts are collected once.
            endpoints = texts.get(id(chosen))
            if endpoints is None:
                endpoints = texts.put(id(chosen), frozenset(e.text for e in chosen), chosen)
            key = (node, spn.text)
            if last_sets.get(key) != endpoints:
                last_sets[key] = endpoints
                self._recorder.add_endpoint_set(view.installed_at_s, node, spn.text, endpoints)
            seen[spn] = (info, eps, last_sets[key], key)

    def _ports_to_check(
        self, view: ProgrammedView
    ) -> Iterable[tuple[ServicePortName, ServicePortInfo]]:
        """The service ports of ``view`` whose set may have changed, in the view's order.

        After a partial sync only the Services it took changes of: every other port has the
        same Service and slices as in the node's previous view, hence the same set, and
        looking at it would record nothing. (Nodes in step share the map, and its index.)
        """
        ports = view.service_ports
        changed = view.changed_services
        if changed is None:
            return ports.items()
        key = PortsOfServicesKey(id(ports), changed)
        found = self.caches.ports_of_services.get(key)
        if found is not None:
            return found  # another node in step asked the same an instant ago
        memo = self.caches.ports_by_service
        index = memo.get(id(ports))
        if index is None:
            built: dict[str, list[tuple[int, ServicePortName]]] = {}
            for position, spn in enumerate(ports):
                built.setdefault(spn.service, []).append((position, spn))
            index = memo.put(id(ports), built, holds=ports)
        picked = sorted(p for service in changed for p in index.get(service, ()))
        return self.caches.ports_of_services.put(
            key, [(spn, ports[spn]) for _, spn in picked], holds=ports
        )

    def proxy_changed(self) -> None:
        """Note a kube-proxy state change (crash, restart, block, failing) for the traffic path."""
        self._proxy_changes += 1

    def node_changed(self, node: str, change: str) -> None:
        """A node failed, was cut off, booted or healed (:data:`svcsim.sim.nodes.NodeChange`)."""
        if change == "boot":
            if self.traffic is not None:
                self.traffic.conntrack_flushed(node)  # the boot emptied its table
            self.proxy_restarted(node)
        else:
            self.proxy_changed()

    def load_balancer_nodes(self, service: str) -> tuple[str, ...]:
        """The nodes the Service's cloud load balancer sends new connections to now."""
        lb = self.load_balancers.get(service)
        return lb.healthy_nodes() if lb is not None else ()

    def load_balancer_changed(self, service: str, node: str, healthy: bool) -> None:
        """A load balancer turned a node healthy or unhealthy (recorded; a new traffic state)."""
        kind = "lb-node-healthy" if healthy else "lb-node-unhealthy"
        self.record_event(self.env.now, kind, node, service, "")
        self.proxy_changed()

    def machine_up(self, node: str) -> bool:
        """False while ``node`` has failed (see :class:`~svcsim.sim.nodes.NodeLifecycle`)."""
        return self.nodes is None or self.nodes.machine_up(node)

    def proxy_restarted(self, node: str) -> None:
        """Note a kube-proxy restart: it counts as down until its first sync ends."""
        self._restarting.add(node)
        self.proxy_changed()

    # --- TrafficContext -------------------------------------------------------------------------

    @property
    def kernels(self) -> Mapping[str, Kernel]:
        """Each node's kernel, by node name."""
        return self._kernels

    @property
    def network(self) -> PodNetwork:
        """The Pod network."""
        return self._network

    @property
    def recorder(self) -> Recorder:
        """Where everything is recorded."""
        return self._recorder

    def _view(self) -> ApiView:
        if self.view is None:
            raise RuntimeError("the world has no API view yet")
        return self.view

    def client_pods(self, selector: Mapping[str, str]) -> Sequence[ClientPod]:
        """Running Pods matching ``selector`` (see the TrafficContext protocol)."""
        return self._view().client_pods(selector)

    def service(self, key: str) -> Service | None:
        """The Service as the API holds it."""
        return self._view().service(key)

    def serving_endpoints(self, service_port_name: str) -> frozenset[str]:
        """API truth: the endpoints kube-proxy should have programmed."""
        return self._view().serving_endpoints(service_port_name)

    def slices_version(self, service: str) -> int:
        """Changes whenever ``service``'s EndpointSlices may have (see TrafficContext)."""
        return self._view().slices_version(service)

    def endpoint_owner(self, service: str, ip: str) -> str | None:
        """The Pod the Service's slices last named for ``ip``."""
        return self._view().endpoint_owner(service, ip)

    def proxy_state(self, node: str) -> ProxyState:
        """``up``, ``down`` (not running), ``blocked`` (running, syncs fail) or ``cut``.

        ``cut``: running but cut off from the API server (its node is partitioned).
        """
        proxy = self.proxies.get(node)
        if proxy is None or not proxy.rules_current:
            return "down"  # not running, or restarted but its first sync has not ended
        if proxy.blocked or proxy.failing:
            return "blocked"
        return "up" if proxy.api_reachable else "cut"

    def service_time_of(self, app: str) -> ServiceTime:
        """The service-time distribution of app ``app``."""
        return self.service_times.get(app, DEFAULT_SERVICE_TIME)

    def outside_host(self, ip: str) -> str | None:
        """The app answering at an address outside the Pod network, or None."""
        return None if ip in self.outside_down else self.outside_hosts.get(ip)

    def outside_endpoint_down(self, ip: str) -> bool:
        """True while the hand-made endpoint at ``ip`` is down (``fail-endpoint``)."""
        return ip in self.outside_down

    def set_outside_endpoint(self, ip: str, *, up: bool) -> None:
        """Take the hand-made endpoint at ``ip`` down or bring it back."""
        if up:
            self.outside_down.discard(ip)
        else:
            self.outside_down.add(ip)
        self.outside_version += 1
        self.proxy_changed()  # what the traffic path met changes: a new state

    def rng(self, name: str) -> np.random.Generator:
        """The random stream called ``name`` (the same Generator every time)."""
        found = self._rngs.get(name)
        if found is None:
            seq = np.random.SeedSequence(self.seed, spawn_key=stream_key(name))
            found = self._rngs[name] = np.random.Generator(np.random.PCG64(seq))
        return found

    def stream_names(self) -> list[str]:
        """Names of the random streams drawn from so far."""
        return list(self._rngs)

    def state_version(self) -> int:
        """Changes whenever API truth, the Pod network or a kube-proxy's state may have."""
        return self._view().version + self._network.version + self._proxy_changes

    # --- the loop -------------------------------------------------------------------------------

    def _sample_conntrack(self) -> Generator[simpy.Event, Any, None]:
        """Every :data:`CONNTRACK_SAMPLE_S`, each node's conntrack table size and limit."""
        names: list[str] = []
        while True:
            if self.traffic is not None:
                if len(names) != len(self._kernels):
                    names = sorted(self._kernels)
                counts = self.traffic.conntrack_counts(self.env.now)
                kernels = self._kernels
                self._recorder.add_conntrack_samples(
                    self.env.now,
                    names,
                    [counts[node] for node in names],
                    [kernels[node].conntrack.max_entries for node in names],
                )
            yield self.env.timeout(CONNTRACK_SAMPLE_S)

    def notices(self) -> list[str]:
        """What the traffic engine tells the user about this run (one line each)."""
        return self.traffic.notices() if self.traffic is not None else []

    def run(self, progress: Progress | None = None) -> None:
        """Simulate from now to :attr:`end_s`, then finish the requests still in flight.

        For the run's duration the objects that exist when it starts are kept out of the
        cyclic garbage collector's scans (``gc.freeze()``; ``gc.unfreeze()`` afterwards, which
        also unfreezes anything the caller had frozen).
        """
        if self.traffic is None:
            raise RuntimeError("the world has no traffic engine")
        env, traffic = self.env, self.traffic
        env.process(self._sample_conntrack())
        # What exists now (API objects, compiled rules, memo tables) lives through the run: the
        # cyclic garbage collector need not scan it again at every full collection. The objects
        # go back to the collector's care when the run ends (CPython's gc.freeze/unfreeze).
        gc.freeze()
        recorder = self._recorder
        counting = recorder.level is RecordLevel.FAILURES_AND_AGGREGATES
        next_final_s = RECORDS_FINAL_EVERY_S
        try:
            while True:
                t_next = min(env.peek(), self.end_s)
                traffic.advance_to(t_next)
                if t_next >= self.end_s:
                    break
                if counting and t_next >= next_final_s:
                    # What was sent before the watermark is all recorded: its counts are final.
                    recorder.advance(traffic.recorded_through())
                    next_final_s = t_next + RECORDS_FINAL_EVERY_S
                while env.peek() == t_next:
                    env.step()
                if progress is not None:
                    progress(t_next)
            traffic.finish()
            recorder.finish()
        finally:
            gc.unfreeze()
        if progress is not None:
            progress(self.end_s)
