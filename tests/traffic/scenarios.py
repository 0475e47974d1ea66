"""Small scripted scenarios, each a function of a fresh :class:`World` and an engine class.

Each returns the world after running; the same script on two worlds with the same seed must
give the same records whichever engine resolves the traffic.
"""

from __future__ import annotations

from collections.abc import Callable

from svcsim.k8s.objects import LoadBalancerIngress, ServiceType
from svcsim.sim.kernel import KernelMode
from svcsim.sim.network import BackendState
from svcsim.traffic.core import EngineCore
from svcsim.traffic.spec import (
    ExponentialTime,
    ExternalSource,
    HostSource,
    KeepAlive,
    PodSource,
    Retries,
    ServiceTarget,
    Udp,
    WorkloadSpec,
)
from tests.traffic.world import World

EngineClass = Callable[..., EngineCore]
CLIENTS = {"app": "client"}


def _clients(w: World, n: int = 2) -> None:
    for i in range(n):
        w.add_pod(f"client-{i}", w.nodes[i % len(w.nodes)], CLIENTS, app="client", port=9)


def _web(w: World, n: int, *, affinity: bool = False, node_port: int = 0) -> None:
    for i in range(n):
        w.add_pod(f"web-{i}", w.nodes[i % len(w.nodes)], {"app": "web"})
    w.add_service("web", "10.96.0.10", {"app": "web"}, affinity=affinity, node_port=node_port)
    w.update_slices()
    w.program()


def _start(w: World, engine: EngineClass, *specs: WorkloadSpec) -> None:
    w.engines.append(engine(list(specs), w))


def cluster_ip_churn(engine: EngineClass, mode: KernelMode = "iptables") -> World:
    """Per-request TCP; a Pod terminates, node-2's rules stay stale, its IP is reused."""
    w = World(mode=mode, pod_prefix=29)
    _clients(w)
    _web(w, 3)
    spec = WorkloadSpec(
        "get",
        PodSource(CLIENTS),
        ServiceTarget("default/web"),
        ((0.0, 300.0),),
        retries=Retries(2, 0.05),
        connect_timeout_s=0.5,
    )
    _start(w, engine, spec)
    w.run_to(2.0)
    victim = w.backend("web-1")
    w.set_pod("web-1", terminating=True, ready=False)
    w.network.set_state(victim, BackendState.DRAINING, w.env.now)
    w.update_slices()
    w.program(["node-1"])  # node-2's kube-proxy is slow: stale rules there
    w.run_to(3.0)
    w.network.set_state(victim, BackendState.EXITED, w.env.now)
    w.delete_pod("web-1")
    w.update_slices()
    w.run_to(4.0)
    w.network.release(victim.ip)
    w.view.bump()
    w.run_to(5.0)
    for i in range(3):
        w.add_pod(f"filler-{i}", "node-2", {"app": "filler"})
    other = w.add_pod("other", "node-2", {"app": "other"}, app="web")
    assert other.ip == victim.ip  # the stale rules on node-2 now reach another Pod
    w.run_to(6.0)
    w.program()
    w.run_to(7.0)
    return w


def no_endpoints(engine: EngineClass, mode: KernelMode = "iptables") -> World:
    """Every Pod not ready: REJECT (refused / no-endpoints), retried; then one becomes ready."""
    w = World(mode=mode)
    _clients(w, 1)
    w.add_pod("web-0", "node-2", {"app": "web"}, ready=False)
    w.add_service("web", "10.96.0.10", {"app": "web"})
    w.update_slices()
    w.program()
    spec = WorkloadSpec(
        "get",
        PodSource(CLIENTS),
        ServiceTarget("default/web"),
        ((0.0, 100.0),),
        retries=Retries(3, 0.1),
    )
    _start(w, engine, spec)
    w.run_to(2.0)
    w.set_pod("web-0", ready=True)
    w.update_slices()
    w.program()
    w.run_to(4.0)
    return w


def affinity(engine: EngineClass, mode: KernelMode = "iptables") -> World:
    """ClientIP affinity: each client sticks to one endpoint until it goes away."""
    w = World(mode=mode)
    _clients(w, 3)
    _web(w, 3, affinity=True)
    spec = WorkloadSpec("sticky", PodSource(CLIENTS), ServiceTarget("default/web"), ((0.0, 100.0),))
    _start(w, engine, spec)
    w.run_to(2.0)
    w.set_pod("web-0", ready=False)
    w.update_slices()
    w.program()
    w.run_to(4.0)
    return w


def udp_fixed_port(engine: EngineClass, mode: KernelMode = "iptables") -> World:
    """A DNS-style client black-holed by a stale UDP entry until the entry is deleted."""
    w = World(mode=mode, nodes=("node-1", "node-2"))
    _clients(w, 1)
    dns = w.add_pod("dns-0", "node-2", {"app": "dns"}, port=53, protocol="udp")
    w.add_service(
        "dns",
        "10.96.0.53",
        {"app": "dns"},
        port=53,
        target_port=53,
        protocol="UDP",
        port_name="dns",
    )
    w.update_slices()
    w.program()
    specs = [
        WorkloadSpec(
            "dns",
            PodSource(CLIENTS),
            ServiceTarget("default/dns"),
            ((0.0, 20.0),),
            connection=Udp(fixed_source_port=True),
            request_timeout_s=2.0,
        ),
        WorkloadSpec(
            "dns-eph",
            PodSource(CLIENTS),
            ServiceTarget("default/dns"),
            ((0.0, 20.0),),
            connection=Udp(),
            request_timeout_s=2.0,
        ),
    ]
    _start(w, engine, *specs)
    w.run_to(2.0)
    # The DNS Pod is replaced: old one exits and its IP is released, a new one serves.
    w.network.set_state(dns, BackendState.EXITED, w.env.now)
    w.delete_pod("dns-0")
    w.network.release(dns.ip)
    w.view.bump()
    w.add_pod("dns-1", "node-1", {"app": "dns"}, port=53, protocol="udp")
    w.update_slices()
    w.program()
    w.run_to(6.0)
    for kernel in w.kernels.values():  # kube-proxy's UDP clean-up
        kernel.conntrack.delete_matching(proto="udp", dst_nat=dns.ip)
    w.run_to(8.0)
    return w


def keepalive(engine: EngineClass, mode: KernelMode = "iptables") -> World:
    """Keep-alive pools: scale-up gets no traffic; a crash resets and breaks connections."""
    w = World(mode=mode)
    _clients(w, 2)
    _web(w, 2)
    spec = WorkloadSpec(
        "ka",
        PodSource(CLIENTS),
        ServiceTarget("default/web"),
        ((0.0, 200.0),),
        connection=KeepAlive(2),
        retries=Retries(1, 0.05),
    )
    w.apps["web"] = ExponentialTime(0.05)
    _start(w, engine, spec)
    w.run_to(1.0)
    w.add_pod("web-2", "node-1", {"app": "web"})
    w.update_slices()
    w.program()
    w.run_to(2.0)
    crashed = w.backend("web-0")
    w.network.set_state(crashed, BackendState.CRASHED, w.env.now)
    w.run_to(2.5)
    w.set_pod("web-0", ready=False)
    w.update_slices()
    w.program()
    w.run_to(3.0)
    draining = w.backend("web-1")
    w.network.set_state(draining, BackendState.DRAINING, w.env.now)
    w.run_to(4.0)
    return w


def conntrack_full(engine: EngineClass, mode: KernelMode = "iptables") -> World:
    """A tiny conntrack table: new flows are dropped once it is full."""
    w = World(mode=mode, conntrack_max=150)
    _clients(w, 1)
    _web(w, 2)
    spec = WorkloadSpec("flood", PodSource(CLIENTS), ServiceTarget("default/web"), ((0.0, 100.0),))
    _start(w, engine, spec)
    w.run_to(4.0)
    return w


def external_and_host(engine: EngineClass, mode: KernelMode = "iptables") -> World:
    """NodePort traffic from outside and from a host process; the service loses its rules."""
    w = World(mode=mode)
    _web(w, 2, node_port=30080)
    specs = [
        WorkloadSpec(
            "ext", ExternalSource("node-1"), ServiceTarget("default/web", "http"), ((0.0, 100.0),)
        ),
        WorkloadSpec(
            "host", HostSource("node-2"), ServiceTarget("default/web", 80), ((0.0, 100.0),)
        ),
    ]
    _start(w, engine, *specs)
    w.run_to(1.0)
    w.program(["node-1"], services=[], slices=[])  # node-1's rules flushed
    w.run_to(2.0)
    return w


def slow_backend(engine: EngineClass, mode: KernelMode = "iptables") -> World:
    """A backend often slower than the client's requestTimeout: those attempts time out."""
    w = World(mode=mode)
    _clients(w, 1)
    _web(w, 2)
    w.apps["web"] = ExponentialTime(0.2)
    spec = WorkloadSpec(
        "impatient",
        PodSource(CLIENTS),
        ServiceTarget("default/web"),
        ((0.0, 100.0),),
        request_timeout_s=0.25,
    )
    _start(w, engine, spec)
    w.run_to(2.0)
    return w


LB_IP = "198.51.100.7"
"""The load-balancer IP of :func:`source_ranges`' Service."""


def source_ranges(engine: EngineClass, mode: KernelMode = "iptables") -> World:
    """A LoadBalancer Service open to 203.0.113.0/24 only: a client outside is dropped."""
    w = World(mode=mode)
    for i in range(2):
        w.add_pod(f"web-{i}", w.nodes[i], {"app": "web"})
    w.add_service(
        "web",
        "10.96.0.10",
        {"app": "web"},
        node_port=30080,
        service_type=ServiceType.LOAD_BALANCER,
        load_balancer_ingress=(LoadBalancerIngress(LB_IP),),
        load_balancer_source_ranges=("203.0.113.0/24",),
    )
    w.update_slices()
    w.program()
    specs = [
        WorkloadSpec(
            "allowed",
            ExternalSource("node-1", "203.0.113.10"),
            ServiceTarget("default/web", "http"),
            ((0.0, 50.0),),
        ),
        WorkloadSpec(
            "outsider",
            ExternalSource("node-1", "192.0.2.99"),
            ServiceTarget("default/web", "http"),
            ((0.0, 50.0),),
        ),
    ]
    _start(w, engine, *specs)
    w.run_to(2.0)
    return w


Scenario = Callable[[EngineClass, KernelMode], World]

SCENARIOS: dict[str, Scenario] = {
    f.__name__: f
    for f in (
        cluster_ip_churn,
        no_endpoints,
        affinity,
        udp_fixed_port,
        keepalive,
        conntrack_full,
        external_and_host,
        slow_backend,
        source_ranges,
    )
}
