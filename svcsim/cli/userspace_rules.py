"""``svcsim rules`` and ``svcsim trace`` in userspace mode (kube-proxy <= v1.25).

``rules`` prints ``--format save``: the portal rules as iptables-save prints them, then the
proxy's port table as ``#`` comment lines (so the text still loads with iptables-restore), or
``--format json``: ``{"host_ip", "proxy_ports": [...]}``. ``trace`` walks the portal
REDIRECT/DNAT, then shows the endpoint kube-proxy dials (round robin, with affinity).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from svcsim.cli.common import fail

if TYPE_CHECKING:
    from svcsim.cli.rules import ProxySwitches
    from svcsim.proxy.userspace import UserspaceState


def userspace_state(
    manifests_paths: list[Path],
    node: str,
    node_ip: str | None,
    switches: ProxySwitches,
    service_cidr: str,
    port_range: tuple[int, int] | None,
    seed: int,
) -> UserspaceState:
    """The node's userspace-mode state (proxy ports drawn from ``seed``)."""
    import numpy as np

    from svcsim.cli.rules import _prepare_node
    from svcsim.k8s import effective_endpoint_slices
    from svcsim.proxy.userspace import compile_userspace

    manifests, context = _prepare_node(
        manifests_paths, node, node_ip, switches, service_cidr, mode="userspace"
    )
    rng = np.random.default_rng(seed)
    return compile_userspace(
        manifests.services, effective_endpoint_slices(manifests), context, rng, port_range
    )


def userspace_text(state: UserspaceState, output_format: str) -> str:
    """The state as ``--format save`` (rules + port table comments) or ``json`` prints it."""
    if output_format == "json":
        doc = {
            "host_ip": state.host_ip,
            "proxy_ports": [
                {
                    "service_port": p.service_port,
                    "protocol": p.protocol,
                    "proxy_port": p.proxy_port,
                    "portals": list(p.portals),
                    "node_port": p.node_port,
                    "endpoints": list(p.endpoints),
                    "session_affinity_s": p.session_affinity_s,
                }
                for p in state.ports
            ],
        }
        return json.dumps(doc, indent=2) + "\n"
    from svcsim.netfilter.text import render_save

    lines = ["# kube-proxy (userspace) proxy ports: service port, protocol, proxy port, portals"]
    for p in state.ports:
        portals = ",".join(p.portals) + (f",nodePort {p.node_port}" if p.node_port else "")
        endpoints = ",".join(p.endpoints) or "-"
        lines.append(f"# {p.service_port} {p.protocol} {p.proxy_port} {portals} -> {endpoints}")
    return render_save(state.ruleset) + "\n".join(lines) + "\n"


def trace_userspace_mode(
    manifests_paths: list[Path],
    switches: ProxySwitches,
    *,
    node: str,
    node_ip: str | None,
    service_cidr: str,
    port_range: tuple[int, int] | None,
    packet: tuple[str, str, int, str, int],
    origin: Literal["pod", "host", "external"] | None,
    seed: int,
    verbose: bool,
) -> None:
    """Walk the portal rules, then show the endpoint kube-proxy dials for the connection."""
    import numpy as np

    from svcsim.cli.rules import _prepare_node, packet_origin
    from svcsim.k8s import effective_endpoint_slices
    from svcsim.netfilter.interpreter import trace
    from svcsim.netfilter.packet import Packet
    from svcsim.proxy.context import node_network
    from svcsim.proxy.userspace import compile_userspace
    from svcsim.proxy.userspace_lb import RoundRobinBalancer

    src, dst, dport, protocol, sport = packet
    manifests, context = _prepare_node(
        manifests_paths, node, node_ip, switches, service_cidr, mode="userspace"
    )
    rng = np.random.default_rng(seed)
    state = compile_userspace(
        manifests.services, effective_endpoint_slices(manifests), context, rng, port_range
    )
    entry = packet_origin(src, manifests, context, switches.cluster_cidr, origin)
    first = Packet(src=src, dst=dst, protocol=protocol, dport=dport, sport=sport, origin=entry)
    walk = trace(state.ruleset, first, node_network(context, switches.cluster_cidr))
    typer.echo(walk.format(verbose=verbose))
    if walk.dnat is None:
        if walk.verdict == "ACCEPT" and not walk.outcome.local:
            typer.echo(
                f"no portal matched: the packet leaves {node} unchanged, towards {dst}:{dport}"
            )
        return
    row = next((p for p in state.ports if p.proxy_port == walk.dnat[1]), None)
    if row is None:  # pragma: no cover - every portal names a proxy port of the table
        fail([f"--mode userspace: no proxy listens on port {walk.dnat[1]}"])
    balancer = RoundRobinBalancer(affinity_s=row.session_affinity_s)
    balancer.set_endpoints(row.endpoints, rng)
    chosen = balancer.next_endpoint(src, 0.0, affinity_reset=False)
    typer.echo(
        f"kube-proxy ({row.service_port}, proxy port {row.proxy_port}) accepts the connection"
    )
    if chosen is None:
        typer.echo("kube-proxy: no endpoints: it closes the accepted connection")
        return
    order = ", ".join(balancer.endpoints)
    typer.echo(
        f"kube-proxy dials {chosen} (round robin over the shuffled endpoints [{order}]); "
        "if the dial fails it tries the next with timeouts 0.25/0.5/1/2 s"
    )
