"""What the traffic layer needs from the world, and a ready-made view of the API's truth.

:class:`TrafficContext` is the contract the world implements. :class:`ApiView` implements its
API-truth half (Services, serving endpoints, endpoint owners, client Pods, a change counter)
from an :class:`~svcsim.sim.api.ApiServer` and the :class:`~svcsim.sim.network.PodNetwork`, so a
world (or a test) only adds kernels, kube-proxy states, app service times and random streams.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, Protocol

import numpy as np

from svcsim.k8s.objects import EndpointSlice, Pod, Service
from svcsim.proxy.caches import CompileCaches
from svcsim.proxy.endpoints import build_endpoints_map
from svcsim.results.records import Recorder
from svcsim.sim.api import ApiServer, WatchEvent
from svcsim.sim.coredns import CoreDns
from svcsim.sim.kernel import Kernel
from svcsim.sim.network import Backend, BackendState, PodNetwork
from svcsim.sim.nodelocaldns import NodeLocalDns
from svcsim.traffic.dns_race import RaceSettings
from svcsim.traffic.spec import ServiceTime

ProxyState = Literal["up", "down", "blocked", "cut"]
"""kube-proxy on a node: running and syncing, not running, running but its syncs fail, running
but cut off from the API server (its node is partitioned)."""

ClientPod = tuple[str, str, str]
"""``(pod key, pod IP, node)`` of one client."""

RUNNING = frozenset({BackendState.SERVING, BackendState.DRAINING})
"""Backend states in which a Pod's process runs, so a client Pod sends."""


class TrafficContext(Protocol):
    """The world as the traffic engine sees it. Every call answers for the current instant."""

    coredns: CoreDns | None
    """The cluster's DNS (``cluster.dns``), which name-addressed workloads ask; None without."""
    dns_race: RaceSettings | None
    """The A/AAAA conntrack insert race's settings (:mod:`svcsim.traffic.dns_race`), if any."""
    nodelocaldns: NodeLocalDns | None
    """NodeLocal DNSCache on every node (``cluster.dns.nodeLocalCache``), if enabled."""

    @property
    def kernels(self) -> Mapping[str, Kernel]:
        """Each node's kernel, by node name."""
        ...

    @property
    def network(self) -> PodNetwork:
        """The Pod network (ground truth of who owns each IP and in what state)."""
        ...

    @property
    def recorder(self) -> Recorder:
        """Where request attempts are recorded."""
        ...

    def client_pods(self, selector: Mapping[str, str]) -> Sequence[ClientPod]:
        """Pods whose labels match ``selector`` and that exist as clients now, sorted by key.

        A client exists while its Pod has an IP and its process runs: the Backend at that IP
        is this Pod and is SERVING or DRAINING (a client keeps sending after SIGTERM until its
        process exits). Readiness does not matter.
        """
        ...

    def service(self, key: str) -> Service | None:
        """The Service ``namespace/name`` as the API holds it, or None."""
        ...

    def serving_endpoints(self, service_port_name: str) -> frozenset[str]:
        """``"IP:port"`` of the endpoints kube-proxy should have programmed for a service port.

        ``service_port_name`` is the ServicePortName text (``ns/name:port`` or ``ns/name``).
        API truth (EndpointSlices now, no watch delay), cluster traffic policy: the ready
        endpoints, or if none, the serving-and-terminating ones (kube-proxy-facts §1.11).
        """
        ...

    def endpoint_owner(self, service: str, ip: str) -> str | None:
        """The Pod (``namespace/name``) that ``service``'s slices last named for ``ip``.

        The targetRef last seen for the address, even if the endpoint has since been removed;
        None if never seen.
        """
        ...

    def proxy_state(self, node: str) -> ProxyState:
        """The state of kube-proxy on ``node``."""
        ...

    def machine_up(self, node: str) -> bool:
        """False while ``node`` has failed: its host processes send nothing."""
        ...

    def load_balancer_nodes(self, service: str) -> tuple[str, ...]:
        """The nodes the cloud load balancer of ``service`` (``ns/name``) sends to now."""
        ...

    def slices_version(self, service: str) -> int:
        """A number that changes whenever ``service``'s EndpointSlices may have changed.

        :meth:`serving_endpoints` of its ports and :meth:`endpoint_owner` for it answer alike
        while it stays the same.
        """
        ...

    def service_time_of(self, app: str) -> ServiceTime:
        """The service-time distribution of app ``app`` (a Backend's ``app``)."""
        ...

    def outside_host(self, ip: str) -> str | None:
        """The app answering at ``ip`` outside the Pod network, or None if nothing answers.

        For hand-made Endpoints with addresses outside the cluster.
        """
        ...

    def outside_endpoint_down(self, ip: str) -> bool:
        """True while the hand-made endpoint at ``ip`` (outside the Pod network) is down."""
        ...

    @property
    def outside_version(self) -> int:
        """Changes whenever :meth:`outside_host` or :meth:`outside_endpoint_down` may have."""
        ...

    def rng(self, name: str) -> np.random.Generator:
        """The named child random stream (the same Generator for the same name)."""
        ...

    def state_version(self) -> int:
        """A number that changes whenever anything the answers above depend on may have changed.

        It must change on every API write of a Service, EndpointSlice, Endpoints or Pod, every
        kube-proxy state change, and every Pod network change (allocate, release, set_state).
        The engine also watches kernel generations and Backend state changes itself, but caches
        everything else per version.
        """
        ...


class ApiView:
    """API truth for the traffic path, kept current by a zero-delay watch.

    ``version`` counts Service/EndpointSlice/Pod changes and Backend state changes; call
    :meth:`bump` for other changes the traffic path must notice (an IP released or allocated,
    a kube-proxy state change). Serving endpoints are cached per Service until one of its
    EndpointSlices changes; client Pods until a Pod (or the Pod network) does.
    """

    def __init__(
        self, api: ApiServer, network: PodNetwork, caches: CompileCaches | None = None
    ) -> None:
        self.api = api
        self.network = network
        self.caches = caches if caches is not None else CompileCaches()
        """The run's compile memos (:mod:`svcsim.proxy.caches`), shared with its kube-proxies."""
        self.version = 0
        self._owners: dict[tuple[str, str], str] = {}
        self._serving: dict[str, dict[str, frozenset[str]]] = {}
        """Serving endpoints per Service (``namespace/name``), then per service port name."""
        self._clients: dict[tuple[tuple[str, str], ...], _ClientsOf] = {}
        """Client Pods per selector, kept until a change that may touch them (see
        :meth:`client_pods`)."""
        self._clients_net = network.version
        """The Pod network version :attr:`_clients` was last brought up to."""
        self._slices: dict[tuple[str, str | None], list[EndpointSlice]] | None = None
        self._slice_versions: dict[str, int] = {}
        for sl in api.list("EndpointSlice"):
            self._note_slice(sl)
        api.watch(("Service", "EndpointSlice", "Pod"), self._on_event, 0.0)
        network.on_state_change(self._on_backend)

    def bump(self) -> None:
        """Note a change the view cannot see (IP release, kube-proxy state...)."""
        self.version += 1
        self._clients.clear()

    def _on_event(self, event: WatchEvent) -> None:
        self.version += 1
        if event.kind == "Pod" and self._clients:
            # Only the selectors matching the Pod, before or after, can list other clients.
            labels = [pod.meta.labels for pod in (event.old, event.new) if pod is not None]
            for key in [k for k in self._clients if any(_matches(k, m) for m in labels)]:
                del self._clients[key]
        if event.kind == "EndpointSlice":
            if event.new is not None:
                self._note_slice(event.new)
            # Only that Service's serving endpoints (and endpoint owners) read its slices.
            for sl in (event.old, event.new):
                if sl is not None and sl.service_name is not None:
                    service = f"{sl.meta.namespace}/{sl.service_name}"
                    self._serving.pop(service, None)
                    self._slice_versions[service] = self.version
            self._slices = None

    def _on_backend(self, backend: Backend, old: BackendState, now_s: float) -> None:
        self.version += 1

    def _note_slice(self, sl: EndpointSlice) -> None:
        service = sl.service_name
        if service is None:
            return
        key = f"{sl.meta.namespace}/{service}"
        for ep in sl.endpoints:
            if ep.target_ref is not None:
                for address in ep.addresses:
                    self._owners[(key, address)] = ep.target_ref

    def service(self, key: str) -> Service | None:
        """The Service ``namespace/name``, or None."""
        found: Service | None = self.api.get("Service", key)
        return found

    def slices_version(self, service: str) -> int:
        """The :attr:`version` of the last change to ``service``'s slices (0 if none)."""
        return self._slice_versions.get(service, 0)

    def endpoint_owner(self, service: str, ip: str) -> str | None:
        """The last-known targetRef of ``ip`` in ``service``'s slices."""
        return self._owners.get((service, ip))

    def serving_endpoints(self, service_port_name: str) -> frozenset[str]:
        """Ready endpoints of the service port, else serving-and-terminating ones."""
        ports = self._serving.setdefault(service_port_name.partition(":")[0], {})
        found = ports.get(service_port_name)
        if found is None:
            found = ports[service_port_name] = self._compute_serving(service_port_name)
        return found

    def _compute_serving(self, service_port_name: str) -> frozenset[str]:
        base, _, port = service_port_name.partition(":")
        namespace, _, name = base.partition("/")
        if self._slices is None:
            # One listing per slice change, grouped by Service (each keeps the list's order).
            self._slices = {}
            for sl in self.api.list("EndpointSlice"):
                self._slices.setdefault((sl.meta.namespace, sl.service_name), []).append(sl)
        slices = self._slices.get((namespace, name), [])
        out: set[str] = set()
        for spn, endpoints in build_endpoints_map(slices, "", self.caches).items():
            if spn.port != port:
                continue
            ready = [e.text for e in endpoints if e.ready]
            out.update(ready or [e.text for e in endpoints if e.serving and e.terminating])
        return frozenset(out)

    def client_pods(self, selector: Mapping[str, str]) -> tuple[ClientPod, ...]:
        """Pods matching ``selector`` whose process runs (see :class:`TrafficContext`)."""
        self._follow_network()
        key = tuple(sorted(selector.items()))
        found = self._clients.get(key)
        if found is None:
            found = self._clients[key] = self._compute_clients(selector)
        return found.clients

    def _follow_network(self) -> None:
        """Drop the client lists a Pod network change since the last call may have touched.

        A selector's list reads the network only at the addresses of the Pods it matches (a
        Pod's address changes with a Pod event, which drops the list itself).
        """
        network = self.network
        if self._clients_net == network.version:
            return
        changed = network.changed_ips_since(self._clients_net)
        self._clients_net = network.version
        if changed is None:
            self._clients.clear()  # too long ago to tell
            return
        for key in [k for k, found in self._clients.items() if not changed.isdisjoint(found.ips)]:
            del self._clients[key]

    def _compute_clients(self, selector: Mapping[str, str]) -> _ClientsOf:
        out: list[ClientPod] = []
        ips: set[str] = set()
        wanted = set(selector.items())  # labels are unique (key, value) pairs
        pod: Pod
        for pod in self.api.list("Pod"):
            if pod.pod_ip is None or pod.node_name is None:
                continue
            if not wanted.issubset(pod.meta.labels):
                continue
            ips.add(pod.pod_ip)
            backend = self.network.lookup(pod.pod_ip)
            if backend is None or backend.pod != pod.meta.key or backend.state not in RUNNING:
                continue
            out.append((pod.meta.key, pod.pod_ip, pod.node_name))
        return _ClientsOf(tuple(out), frozenset(ips))


class _ClientsOf(NamedTuple):
    """A selector's client Pods, and the addresses of every Pod it matches (what it read)."""

    clients: tuple[ClientPod, ...]
    ips: frozenset[str]


def _matches(selector: tuple[tuple[str, str], ...], labels: tuple[tuple[str, str], ...]) -> bool:
    """True if ``labels`` hold every ``(key, value)`` of ``selector``."""
    return set(selector).issubset(labels)
