"""A small hand-built world for traffic tests: API, Pod network, kernels, no kube-proxy process.

Rules are programmed by calling :meth:`World.program`, which compiles kube-proxy's full-sync
ruleset from the API's current Services and EndpointSlices (or from given ones, to leave a
node stale) and installs it atomically.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from svcsim.k8s.controllers import endpoint_slices_for_service
from svcsim.k8s.objects import (
    ContainerPort,
    EndpointSlice,
    ObjectMeta,
    Pod,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
    SessionAffinity,
)
from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.icmp_limit import IcmpSysctls
from svcsim.netfilter.nft_parse import parse_table
from svcsim.netfilter.packet import NodeNetwork
from svcsim.proxy.context import NodeContext
from svcsim.proxy.iptables import compile_iptables
from svcsim.proxy.nftables import compile_nftables
from svcsim.results.records import Recorder
from svcsim.sim.api import ApiServer
from svcsim.sim.kernel import Kernel, KernelMode
from svcsim.sim.network import Backend, BackendState, PodNetwork
from svcsim.traffic.context import ApiView, ClientPod, ProxyState
from svcsim.traffic.core import EngineCore
from svcsim.traffic.spec import ExponentialTime, FixedTime, ServiceTime

CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"


@dataclass
class World:
    """Implements :class:`svcsim.traffic.context.TrafficContext` for tests."""

    nodes: Sequence[str] = ("node-1", "node-2")
    seed: int = 7
    pod_prefix: int = 24
    conntrack_max: int = 0
    timeouts: ConntrackTimeouts = field(default_factory=ConntrackTimeouts)
    apps: dict[str, ServiceTime] = field(
        default_factory=lambda: {"web": ExponentialTime(0.01), "client": FixedTime(0.0)}
    )
    mode: KernelMode = "iptables"
    """The nodes' kube-proxy mode: what :meth:`program` compiles and installs."""
    icmp: IcmpSysctls = field(default_factory=IcmpSysctls)
    """The nodes' ICMP rate limits (kernel defaults)."""

    def __post_init__(self) -> None:
        self.env = simpy.Environment()
        self.api = ApiServer(self.env)
        cidrs = {n: f"10.244.{i + 1}.0/{self.pod_prefix}" for i, n in enumerate(self.nodes)}
        self.network = PodNetwork(cidrs)
        self.kernels: dict[str, Kernel] = {}
        self.node_ips: dict[str, str] = {}
        for i, n in enumerate(self.nodes):
            ip = f"192.168.0.{i + 10}"
            self.node_ips[n] = ip
            net = NodeNetwork((ip,), pod_cidr=cidrs[n])
            self.kernels[n] = Kernel(
                n, net, self.conntrack_max, self.timeouts, self.mode, icmp_sysctls=self.icmp
            )
        self.recorder = Recorder()
        self.view = ApiView(self.api, self.network)
        self.proxy: dict[str, ProxyState] = dict.fromkeys(self.nodes, "up")
        self.outside: dict[str, str] = {}
        self.engines: list[EngineCore] = []
        self._rngs: dict[str, np.random.Generator] = {}

    # --- TrafficContext -----------------------------------------------------------------------

    def client_pods(self, selector: Mapping[str, str]) -> Sequence[ClientPod]:
        return self.view.client_pods(selector)

    def service(self, key: str) -> Service | None:
        return self.view.service(key)

    def serving_endpoints(self, service_port_name: str) -> frozenset[str]:
        return self.view.serving_endpoints(service_port_name)

    def endpoint_owner(self, service: str, ip: str) -> str | None:
        return self.view.endpoint_owner(service, ip)

    def slices_version(self, service: str) -> int:
        return self.view.slices_version(service)

    def proxy_state(self, node: str) -> ProxyState:
        return self.proxy[node]

    def machine_up(self, node: str) -> bool:
        return True

    def service_time_of(self, app: str) -> ServiceTime:
        return self.apps[app]

    def outside_host(self, ip: str) -> str | None:
        return self.outside.get(ip)

    def outside_endpoint_down(self, ip: str) -> bool:
        return False

    outside_version = 0

    def rng(self, name: str) -> np.random.Generator:
        found = self._rngs.get(name)
        if found is None:
            seq = np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(name.encode()),))
            found = self._rngs[name] = np.random.default_rng(seq)
        return found

    def state_version(self) -> int:
        return self.view.version

    # --- building -----------------------------------------------------------------------------

    def add_pod(
        self,
        name: str,
        node: str,
        labels: Mapping[str, str],
        *,
        app: str = "web",
        port: int = 8080,
        protocol: str = "tcp",
        state: BackendState = BackendState.SERVING,
        ready: bool = True,
    ) -> Backend:
        key_labels = tuple(sorted(labels.items()))
        backend = self.network.allocate(
            node, f"default/{name}", frozenset({(protocol, port)}), app, self.env.now
        )
        self.network.set_state(backend, state, self.env.now)
        pod = Pod(
            ObjectMeta(name, labels=key_labels),
            node_name=node,
            pod_ip=backend.ip,
            pod_ips=(backend.ip,),
            ready=ready,
            container_ports=(ContainerPort(port, Protocol(protocol.upper()), "http"),),
        )
        self.api.apply("Pod", pod)
        self.settle()
        return backend

    def backend(self, name: str) -> Backend:
        """The live Backend of Pod ``name``."""
        found = [b for b in self.network.backends() if b.pod == f"default/{name}"]
        assert len(found) == 1, name
        return found[0]

    def set_pod(self, name: str, **changes: Any) -> None:
        old = self.api.get("Pod", f"default/{name}")
        fields = {f: getattr(old, f) for f in old.__dataclass_fields__}
        fields.update(changes)
        self.api.apply("Pod", Pod(**fields))
        self.settle()

    def delete_pod(self, name: str) -> None:
        self.api.delete("Pod", f"default/{name}")
        self.settle()

    def add_service(
        self,
        name: str,
        cluster_ip: str,
        selector: Mapping[str, str],
        *,
        port: int = 80,
        target_port: int = 8080,
        protocol: str = "TCP",
        port_name: str = "http",
        affinity: bool = False,
        node_port: int = 0,
        service_type: ServiceType | None = None,
        **spec: Any,
    ) -> Service:
        default_type = ServiceType.NODE_PORT if node_port else ServiceType.CLUSTER_IP
        svc = Service(
            ObjectMeta(name),
            cluster_ip=cluster_ip,
            selector=tuple(sorted(selector.items())),
            ports=(ServicePort(port, Protocol(protocol), port_name, target_port, node_port),),
            type=service_type or default_type,
            session_affinity=SessionAffinity.CLIENT_IP if affinity else SessionAffinity.NONE,
            **spec,
        )
        self.api.apply("Service", svc)
        self.settle()
        return svc

    def slices(self) -> list[EndpointSlice]:
        """The EndpointSlices the controller would keep for the API's current Pods."""
        pods = self.api.list("Pod")
        return [
            sl for svc in self.api.list("Service") for sl in endpoint_slices_for_service(svc, pods)
        ]

    def update_slices(self) -> None:
        """Apply the controller's slices (and delete stale ones)."""
        wanted = {sl.meta.key: sl for sl in self.slices()}
        for sl in self.api.list("EndpointSlice"):
            if sl.meta.key not in wanted:
                self.api.delete("EndpointSlice", sl.meta.key)
        for sl in wanted.values():
            self.api.apply("EndpointSlice", sl)
        self.settle()

    def program(
        self,
        nodes: Iterable[str] | None = None,
        *,
        services: Iterable[Service] | None = None,
        slices: Iterable[EndpointSlice] | None = None,
    ) -> None:
        """Install kube-proxy's full-sync rules on ``nodes`` (default all) atomically."""
        svcs = list(self.api.list("Service") if services is None else services)
        sls = list(self.api.list("EndpointSlice") if slices is None else slices)
        for n in self.nodes if nodes is None else nodes:
            ctx = NodeContext.with_cluster_cidr(n, CLUSTER_CIDR, node_ips=(self.node_ips[n],))
            if self.mode == "nftables":
                table = compile_nftables(svcs, sls, ctx, (SERVICE_CIDR,))
                self.kernels[n].install_nft(table, parse_table(table), self.env.now)
            else:
                self.kernels[n].install(compile_iptables(svcs, sls, ctx), self.env.now)

    # --- time ---------------------------------------------------------------------------------

    def settle(self) -> None:
        """Deliver zero-delay watch events due now."""
        while self.env.peek() <= self.env.now:
            self.env.step()

    def run_to(self, t_s: float) -> None:
        """The main loop: traffic up to each event, then the event, until ``t_s``."""
        while True:
            t_next = min(self.env.peek(), t_s)
            for engine in self.engines:
                engine.advance_to(t_next)
            if t_next >= t_s:
                break
            while self.env.peek() == t_next:
                self.env.step()
        if self.env.now < t_s:
            self.env.run(until=t_s)

    def finish(self) -> Any:
        """Finish the engines and return the requests frame."""
        for engine in self.engines:
            engine.finish()
        return self.recorder.frames()["requests"]
