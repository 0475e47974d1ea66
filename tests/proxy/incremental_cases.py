"""Random endpoint changes on a small cluster, for the incremental-compile property tests.

A cluster of a few Services (ClusterIP, one NodePort with ``externalTrafficPolicy: Local``);
each step replaces one Service's EndpointSlice with a random set of endpoints (possibly none,
possibly local to the compiling node, possibly not ready), the way a run's informers hand a
node new slice objects for the Services that changed and the same objects for the others.
"""

from __future__ import annotations

from hypothesis import strategies as st

from svcsim.k8s.objects import EndpointSlice, Service, ServicePort, ServiceType, TrafficPolicy
from svcsim.proxy.context import NodeContext
from tests.proxy.test_iptables_support import ep, fake_context, make_service, make_slice, port

NODE = "node-a"
"""The compiling node (some endpoints run on it)."""
SERVICES = 4
"""Services in the cluster; Service 0 is a NodePort with externalTrafficPolicy Local."""


def services() -> list[Service]:
    """The cluster's Services."""
    out = []
    for s in range(SERVICES):
        spec: dict[str, object] = {"cluster_ip": f"172.30.0.{s + 1}"}
        if s == 0:
            spec |= {
                "type": ServiceType.NODE_PORT,
                "external_traffic_policy": TrafficPolicy.LOCAL,
                "ports": (ServicePort(80, name="p", target_port=8080, node_port=30080),),
            }
        else:
            spec["ports"] = (ServicePort(80, name="p", target_port=8080),)
        out.append(make_service("ns", f"svc{s}", **spec))
    return out


def endpoint_slice(service: int, endpoints: tuple[tuple[int, bool, bool], ...]) -> EndpointSlice:
    """Service ``service``'s slice: ``(host, local, ready)`` per endpoint."""
    return make_slice(
        "ns",
        f"svc{service}",
        tuple(
            ep(f"10.1.{service}.{host}", NODE if local else "node-b", ready=ready)
            for host, local, ready in endpoints
        ),
        (port(8080, "p"),),
    )


ENDPOINTS = st.lists(
    st.tuples(st.integers(1, 12), st.booleans(), st.booleans()),
    max_size=4,
    unique_by=lambda e: e[0],
).map(tuple)
"""One Service's endpoints: distinct hosts, each local or not, ready or not."""

STEPS = st.lists(st.tuples(st.integers(0, SERVICES - 1), ENDPOINTS), min_size=1, max_size=6)
"""A sequence of changes: which Service gets which endpoints."""


def context() -> NodeContext:
    """The compiling node's context."""
    return fake_context(node_name=NODE)
