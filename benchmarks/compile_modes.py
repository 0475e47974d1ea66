"""Compile time of kube-proxy's two modes side by side: iptables vs nftables.

``--services`` ClusterIP Services (default 10,000) of ``--endpoints`` endpoints each (default
10), endpoints spread over 100 nodes; one node compiles. For each mode it times the full build
on a clean process (rules as data, then the text kube-proxy hands to the kernel:
iptables-restore input, or ``nft -f`` input) and a rebuild after one endpoint of one Service
changed. The iptables compiler memoises per service port; the nftables compiler does not yet,
so its rebuild is a full build. Prints one line per figure. Not a test: nothing asserted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from svcsim.k8s.objects import (
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    ObjectMeta,
    Service,
    ServicePort,
)
from svcsim.netfilter.nftables import dump
from svcsim.proxy.context import NodeContext
from svcsim.proxy.iptables import compile_iptables_sync
from svcsim.proxy.nftables import compile_nftables

NODES = 100


def _pod_ip(n: int) -> str:
    """The n-th Pod address in 10.0.0.0/8."""
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def _slice(s: int, endpoints: int, generation: int = 0) -> EndpointSlice:
    """Service ``s``'s slice; ``generation`` 1 moves its last endpoint to a new address."""
    first = s * endpoints
    ips = [_pod_ip(first + e) for e in range(endpoints)]
    if generation:
        ips[-1] = _pod_ip(16_000_000 + s)
    eps = tuple(
        Endpoint(
            addresses=(ip,),
            node_name=f"node-{(first + e) % NODES + 1}",
            conditions=EndpointConditions(ready=True),
        )
        for e, ip in enumerate(ips)
    )
    return EndpointSlice(
        meta=ObjectMeta(
            name=f"svc{s}-1", namespace="default", labels=((SERVICE_NAME_LABEL, f"svc{s}"),)
        ),
        address_type="IPv4",
        endpoints=eps,
        ports=(EndpointPort(port=8080, name="http"),),
    )


def _inputs(services: int, endpoints: int) -> tuple[list[Service], list[EndpointSlice]]:
    svcs = [
        Service(
            meta=ObjectMeta(name=f"svc{s}", namespace="default"),
            cluster_ip=f"10.96.{s // 250}.{s % 250 + 1}",
            ports=(ServicePort(80, name="http", target_port=8080),),
        )
        for s in range(services)
    ]
    return svcs, [_slice(s, endpoints) for s in range(services)]


def _timed(label: str, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    print(f"{label}: {elapsed:.2f} s")
    return elapsed


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=10)
    args = parser.parse_args()
    services, slices = _inputs(args.services, args.endpoints)
    changed = [*slices[:-1], _slice(args.services - 1, args.endpoints, generation=1)]
    ctx = NodeContext.with_cluster_cidr(
        "node-1", "10.0.0.0/8", node_ips=("192.168.0.1",), node_port_addresses=("192.168.0.1/32",)
    )
    print(f"{args.services} Services x {args.endpoints} endpoints, node-1 of {NODES}")
    _timed(
        "iptables full build (ruleset + restore text)",
        lambda: compile_iptables_sync(services, slices, ctx),
    )
    _timed(
        "iptables after one endpoint changed", lambda: compile_iptables_sync(services, changed, ctx)
    )
    cidrs = ("10.96.0.0/12",)
    _timed("nftables full build (table)", lambda: compile_nftables(services, slices, ctx, cidrs))
    table = compile_nftables(services, slices, ctx, cidrs)
    _timed("nftables nft -f text of it", lambda: dump(table))
    _timed(
        "nftables after one endpoint changed (full rebuild)",
        lambda: compile_nftables(services, changed, ctx, cidrs),
    )


if __name__ == "__main__":
    main()
