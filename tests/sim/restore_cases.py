"""Shared inputs of the restore-planning tests: two small Services, their slices, a compile."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from svcsim.k8s.objects import (
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    ObjectMeta,
    Protocol,
    Service,
    ServicePort,
    ServiceType,
)
from svcsim.netfilter.model import Ruleset
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
from svcsim.proxy.iptables import IptablesSync, sync_from_maps
from svcsim.sim import restore
from svcsim.sim.caches import RunCaches
from svcsim.sim.restore import SyncPlan, service_chains

CTX = NodeContext.with_cluster_cidr("n1", "10.244.0.0/16", node_ips=("10.0.0.1",))


def svc(name: str, ip: str, protocol: Protocol = Protocol.TCP, node_port: int = 0) -> Service:
    """A Service ``name`` selecting ``app=name``, port ``p`` 80 (a NodePort one if given)."""
    return Service(
        meta=ObjectMeta(name),
        type=ServiceType.NODE_PORT if node_port else ServiceType.CLUSTER_IP,
        cluster_ip=ip,
        selector=(("app", name),),
        ports=(ServicePort(80, protocol=protocol, name="p", node_port=node_port),),
    )


def eps(
    name: str, ips: list[str], protocol: Protocol = Protocol.TCP, serving: bool = True
) -> EndpointSlice:
    """Service ``name``'s slice: endpoints at ``ips`` on node n2 (ready if serving), port 8080."""
    cond = EndpointConditions(serving, serving, False)
    return EndpointSlice(
        meta=ObjectMeta(f"{name}-a", labels=((SERVICE_NAME_LABEL, name),)),
        endpoints=tuple(Endpoint((ip,), cond, node_name="n2") for ip in ips),
        ports=(EndpointPort(8080, protocol=protocol, name="p"),),
    )


SERVICES = [svc("a", "10.96.0.1"), svc("b", "10.96.0.2")]
SLICES = [eps("a", ["10.244.1.1", "10.244.1.2"]), eps("b", ["10.244.2.1", "10.244.2.2"])]


def compile_(
    services: list[Service], slices: list[EndpointSlice]
) -> tuple[IptablesSync, Callable[..., frozenset[str]]]:
    """The full sync on n1, and ``service_chains`` bound to its maps."""
    ports = build_service_port_map(services)
    endpoints = build_endpoints_map(slices, "n1")
    return sync_from_maps(ports, endpoints, CTX), partial(service_chains, ports, endpoints)


def nat_chains(ruleset: Ruleset) -> list[str]:
    """The nat table's chain names, in order."""
    nat = ruleset.table("nat")
    assert nat is not None
    return [c.name for c in nat.chains]


def text_plan(
    compiled: IptablesSync,
    changed: frozenset[str],
    *,
    full: bool,
    existing_nat_chains: list[str],
    delete_stale: bool = True,
) -> SyncPlan:
    """The plan worked out from the compiled restore text's lines (the reference path)."""
    caches = RunCaches()
    return restore._plan(
        *restore._sections(compiled, caches),
        compiled.ruleset,
        changed,
        full=full,
        existing=tuple(existing_nat_chains),
        delete_stale=delete_stale,
    )


def same_plan(got: SyncPlan, want: SyncPlan) -> None:
    """Assert two plans agree in every field, the text included."""
    assert got == want
    assert got.restore_text == want.restore_text
