"""``svcsim rules`` and ``svcsim trace`` in IPVS mode.

Both compile the node as :func:`svcsim.cli.rules._prepare_node` prepares it. ``rules`` prints
``--format json``: ``{"virtual_servers": [...], "ipsets": {...}}`` (real servers in the kernel's
list order, the order the schedulers walk) or ``--format ipvsadm``: what ``ipvsadm -Ln``,
``ipset list`` and ``iptables-save`` show on the node, in that order. ``trace`` walks one new
connection: the iptables hooks with their ip-set matches, the virtual server lookup and the
scheduler's choice, then POSTROUTING.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from svcsim.cli.common import fail

if TYPE_CHECKING:
    from svcsim.cli.rules import ProxySwitches
    from svcsim.netfilter.ipvs import IpvsState


def ipvs_state(
    manifests_paths: list[Path],
    node: str,
    node_ip: str | None,
    switches: ProxySwitches,
    service_cidr: str,
    scheduler: str,
) -> tuple[IpvsState, tuple[str, ...]]:
    """The node's IPVS state and the node's own IPs."""
    from svcsim.cli.rules import _prepare_node
    from svcsim.k8s import effective_endpoint_slices
    from svcsim.proxy.ipvs import compile_ipvs

    manifests, context = _prepare_node(
        manifests_paths, node, node_ip, switches, service_cidr, mode="ipvs"
    )
    state = compile_ipvs(
        manifests.services, effective_endpoint_slices(manifests), context, scheduler
    )
    return state, context.node_ips


def ipvs_text(state: IpvsState, output_format: str) -> str:
    """The state as ``--format json`` or ``--format ipvsadm`` prints it."""
    from svcsim.netfilter.ipset import render_ipset_list
    from svcsim.netfilter.ipvs import PROTOCOL_NUMBERS, render_ipvsadm
    from svcsim.netfilter.text import render_save

    if output_format == "ipvsadm":
        return "\n".join(
            [
                render_ipvsadm(state.virtual_servers, {}),
                render_ipset_list(state.ipsets),
                render_save(state.ruleset),
            ]
        )
    ordered = sorted(
        state.virtual_servers,
        key=lambda vs: (PROTOCOL_NUMBERS[vs.protocol], _ip_key(vs.address), vs.port),
    )
    doc = {
        "virtual_servers": [
            {
                "address": vs.address,
                "port": vs.port,
                "protocol": vs.protocol,
                "scheduler": vs.scheduler,
                "persistent_timeout_s": vs.persistent_timeout_s,
                "real_servers": [
                    {"address": rs.address, "port": rs.port, "weight": rs.weight}
                    for rs in vs.real_servers
                ],
            }
            for vs in ordered
        ],
        "ipsets": {name: list(members) for name, members in state.ipsets.as_dict().items()},
    }
    return json.dumps(doc, indent=2) + "\n"


def _ip_key(address: str) -> tuple[int, ...]:
    return tuple(int(x) for x in address.split("."))


def trace_ipvs_mode(
    manifests_paths: list[Path],
    switches: ProxySwitches,
    *,
    node: str,
    node_ip: str | None,
    service_cidr: str,
    scheduler: str,
    packet: tuple[str, str, int, str, int],
    origin: Literal["pod", "host", "external"] | None,
    verbose: bool,
) -> None:
    """Compile, walk ``packet`` = (src, dst, dport, protocol, sport) and print the trace."""
    from svcsim.cli.rules import _prepare_node, packet_origin
    from svcsim.k8s import effective_endpoint_slices
    from svcsim.netfilter.ipvs_kernel import IpvsKernel
    from svcsim.netfilter.ipvs_trace import trace_ipvs
    from svcsim.netfilter.packet import Packet
    from svcsim.netfilter.walk import TraceError
    from svcsim.proxy.context import node_network
    from svcsim.proxy.ipvs import compile_ipvs

    src, dst, dport, protocol, sport = packet
    manifests, context = _prepare_node(
        manifests_paths, node, node_ip, switches, service_cidr, mode="ipvs"
    )
    state = compile_ipvs(
        manifests.services, effective_endpoint_slices(manifests), context, scheduler
    )
    kernel = IpvsKernel()
    kernel.install(state.virtual_servers)
    entry = packet_origin(src, manifests, context, switches.cluster_cidr, origin)
    first = Packet(src=src, dst=dst, protocol=protocol, dport=dport, sport=sport, origin=entry)
    try:
        walk = trace_ipvs(state, kernel, first, node_network(context, switches.cluster_cidr))
    except TraceError as exc:
        # Rules svcsim compiled but cannot walk: a defect in svcsim, named here.
        fail([f"--mode ipvs: {exc}"])
    typer.echo(walk.format(verbose=verbose))
    if walk.decision is None and walk.before.verdict == "ACCEPT" and not walk.before.outcome.local:
        typer.echo(
            f"no Service address matched: the packet leaves {node} unchanged, towards {dst}:{dport}"
        )
