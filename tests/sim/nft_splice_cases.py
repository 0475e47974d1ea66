"""A small nftables cluster whose endpoints change at random, for the splice property tests.

Five Services cover what a port's objects can hold: a plain ClusterIP, ClientIP affinity
(affinity sets and ``update`` rules), a NodePort with ``externalTrafficPolicy: Local`` (external
and local chains, NodePort map elements), a two-port Service (both ports add the same
``cluster-ips`` element) and a LoadBalancer with source ranges (firewall chain and map).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from svcsim.k8s.objects import (
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    LoadBalancerIngress,
    ObjectMeta,
    Service,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.netfilter.nftables import NftTable
from svcsim.proxy.nftables import TableLayout
from svcsim.sim.caches import RunCaches
from svcsim.sim.nft_splice import Spliced, splice_sync
from svcsim.sim.nft_sync import NftSyncPlan, plan_nft_sync

NODES = ("node-a", "node-b", "node-c")
"""The node compiling is ``node-a`` (local endpoints are the ones there)."""


def services() -> list[Service]:
    """The five Services (see the module docstring)."""
    return [
        Service(
            meta=ObjectMeta("plain"), cluster_ip="10.96.0.10", ports=(ServicePort(80, name="p"),)
        ),
        Service(
            meta=ObjectMeta("sticky"),
            cluster_ip="10.96.0.11",
            ports=(ServicePort(80, name="p"),),
            session_affinity=SessionAffinity.CLIENT_IP,
            session_affinity_timeout_s=60,
        ),
        Service(
            meta=ObjectMeta("local"),
            type=ServiceType.NODE_PORT,
            cluster_ip="10.96.0.12",
            ports=(ServicePort(80, name="p", node_port=30080),),
            external_traffic_policy=TrafficPolicy.LOCAL,
        ),
        Service(
            meta=ObjectMeta("two"),
            cluster_ip="10.96.0.13",
            ports=(ServicePort(80, name="p"), ServicePort(443, name="q", target_port=8443)),
        ),
        Service(
            meta=ObjectMeta("lb"),
            type=ServiceType.LOAD_BALANCER,
            cluster_ip="10.96.0.14",
            ports=(ServicePort(80, name="p", node_port=30081),),
            load_balancer_source_ranges=("192.0.2.0/24",),
            load_balancer_ingress=(LoadBalancerIngress(ip="203.0.113.7"),),
        ),
    ]


def endpoint_slice(service: Service, ips: list[tuple[str, str, bool]]) -> EndpointSlice:
    """``service``'s slice: (IP, node, terminating) endpoints on every port the Service has."""
    name = service.meta.name
    ports = tuple(
        EndpointPort(port=p.target_port if p.target_port else 8080, name=p.name)
        for p in service.ports
    )
    return EndpointSlice(
        meta=ObjectMeta(f"{name}-1", labels=((SERVICE_NAME_LABEL, name),)),
        endpoints=tuple(
            Endpoint(
                (ip,),
                EndpointConditions(ready=not term, serving=True, terminating=term),
                node_name=node,
            )
            for ip, node, term in ips
        ),
        ports=ports,
    )


def random_endpoints(rng: np.random.Generator, service: int) -> list[tuple[str, str, bool]]:
    """0-4 endpoints of ``service`` from a small pool, on random nodes, some terminating."""
    count = int(rng.integers(0, 5))
    picks = sorted({int(x) for x in rng.integers(1, 9, size=count)})
    return [
        (f"10.1.{service}.{i}", NODES[int(rng.integers(0, 3))], bool(rng.random() < 0.15))
        for i in picks
    ]


SHARED_EXTERNAL_IP = "198.51.100.1"
"""An external IP ``plain`` and ``two`` may both take on port 80 (the API allows it): then two
ports write the same ``service-ips`` key."""


def changed_service(rng: np.random.Generator, service: Service) -> Service:
    """``service`` with one of its specs changed at random (what each Service may change)."""
    name = service.meta.name
    if name in ("plain", "two"):
        if rng.random() < 0.5 and name == "plain":
            sticky = service.session_affinity is SessionAffinity.NONE
            return replace(
                service,
                session_affinity=SessionAffinity.CLIENT_IP if sticky else SessionAffinity.NONE,
            )
        return replace(service, external_ips=() if service.external_ips else (SHARED_EXTERNAL_IP,))
    if name == "sticky":
        timeout = 120 if service.session_affinity_timeout_s == 60 else 60
        return replace(service, session_affinity_timeout_s=timeout)
    if name == "local":
        local = service.external_traffic_policy is TrafficPolicy.LOCAL
        policy = TrafficPolicy.CLUSTER if local else TrafficPolicy.LOCAL
        return replace(service, external_traffic_policy=policy)
    ranges = ("192.0.2.0/24",)
    if service.load_balancer_source_ranges == ranges:
        ranges = ("192.0.2.0/24", "198.51.100.0/24")
    return replace(service, load_balancer_source_ranges=ranges)


def both_plans(
    last: Spliced | None,
    installed: NftTable,
    compiled: NftTable,
    layout: TableLayout | None,
    names: list[str],
    *,
    full: bool,
    now_s: float,
    stale: Mapping[str, float],
    caches: RunCaches,
) -> tuple[NftSyncPlan, tuple[NftSyncPlan, Spliced] | None]:
    """The sync planned both ways: the general path's plan, and the splice from ``last``'s
    install (None without a last install, or where the splice declines); ``layout`` is
    ``compiled``'s (``caches.nft_names.layout``)."""
    general = plan_nft_sync(installed, compiled, names, full=full, now_s=now_s, stale_chains=stale)
    if last is None:
        return general, None
    fast = splice_sync(
        last,
        installed,
        compiled,
        layout,
        names,
        full=full,
        now_s=now_s,
        stale_chains=stale,
        memo=caches.nft_chains,
    )
    return general, fast
