"""``svcsim rules`` and ``svcsim trace`` in IPVS mode.

Both compile the node as :func:`svcsim.cli.rules._prepare_node` prepares it. ``rules`` prints
``--format json``: ``{"virtual_servers": [...], "ipsets": {...}}`` (real servers in the kernel's
list order, the order the schedulers walk) or ``--format ipvsadm``: what ``ipvsadm -Ln``,
``ipset list`` and ``iptables-save`` show on the node, in that order. ``trace`` walks one new
connection: the iptables hooks with their ip-set matches, the virtual server lookup and the
scheduler's choice, then POSTROUTING.
"""

from __future__ import annotations

from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from svcsim.cli.common import fail

if TYPE_CHECKING:
    from svcsim.cli.rules import ProxySwitches
    from svcsim.netfilter.ipvs import IpvsState, VirtualServer


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
    return _json_text(ordered, state.ipsets.as_dict())


def _json_text(ordered: list[VirtualServer], ipsets: Mapping[str, tuple[str, ...]]) -> str:
    """``--format json``: ``{"virtual_servers": [...], "ipsets": {...}}`` as json.dumps writes it.

    That is ``json.dumps(doc, indent=2)`` and a newline, written line by line: with
    ``indent`` the json module encodes in Python, value by value (~0.8 s for 10,000 Services
    x 10 endpoints); the shape here is fixed, so its lines are formatted directly. Strings
    are escaped by json's own encoder, numbers and null spelled as json spells them.
    """
    text = encode_basestring_ascii
    lines = ["{", '  "virtual_servers": [' if ordered else '  "virtual_servers": [],']
    for n, vs in enumerate(ordered, 1):
        timeout = "null" if vs.persistent_timeout_s is None else int(vs.persistent_timeout_s)
        lines += [
            "    {",
            f'      "address": {text(vs.address)},',
            f'      "port": {int(vs.port)},',
            f'      "protocol": {text(vs.protocol)},',
            f'      "scheduler": {text(vs.scheduler)},',
            f'      "persistent_timeout_s": {timeout},',
        ]
        if vs.real_servers:
            lines.append('      "real_servers": [')
            lines.append(
                "\n        },\n".join(
                    f'        {{\n          "address": {text(rs.address)},\n'
                    f'          "port": {int(rs.port)},\n'
                    f'          "weight": {int(rs.weight)}'
                    for rs in vs.real_servers
                )
                + "\n        }"
            )
            lines.append("      ]")
        else:
            lines.append('      "real_servers": []')
        lines.append("    }," if n < len(ordered) else "    }")
    if ordered:
        lines.append("  ],")
    lines.append('  "ipsets": {' if ipsets else '  "ipsets": {}')
    for n, (name, members) in enumerate(ipsets.items(), 1):
        end = "," if n < len(ipsets) else ""
        if members:
            lines.append(f"    {text(name)}: [")
            lines.append(",\n".join(f"      {text(m)}" for m in members))
            lines.append(f"    ]{end}")
        else:
            lines.append(f"    {text(name)}: []{end}")
    if ipsets:
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


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
