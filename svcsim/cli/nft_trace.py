"""``svcsim trace --mode nftables``: one packet through the node's ``ip kube-proxy`` table.

Compiles the table as ``svcsim rules --mode nftables`` does, parses it for the evaluator and
prints the walk (:mod:`svcsim.netfilter.nft_eval`) the way the iptables trace prints its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from svcsim.cli.common import fail

if TYPE_CHECKING:
    from svcsim.cli.rules import ProxySwitches


def trace_nftables(
    manifests_paths: list[Path],
    switches: ProxySwitches,
    *,
    node: str,
    node_ip: str | None,
    service_cidr: str,
    service_cidr_given: bool = True,
    packet: tuple[str, str, int, str, int],
    origin: Literal["pod", "host", "external"] | None,
    seed: int,
    verbose: bool,
) -> None:
    """Compile, walk ``packet`` = (src, dst, dport, protocol, sport) and print the trace."""
    import numpy as np

    from svcsim.cli.rules import _prepare_node, packet_origin, service_cidrs
    from svcsim.k8s import effective_endpoint_slices
    from svcsim.netfilter.nft_eval import NftWalkError, trace_nft
    from svcsim.netfilter.nft_parse import NftParseError, parse_table
    from svcsim.netfilter.numgen import u32_draws_from
    from svcsim.netfilter.packet import Packet
    from svcsim.proxy.context import node_network
    from svcsim.proxy.nftables import compile_nftables

    src, dst, dport, protocol, sport = packet
    manifests, context = _prepare_node(
        manifests_paths, node, node_ip, switches, service_cidr, mode="nftables"
    )
    cidrs = service_cidrs(manifests, service_cidr, given=service_cidr_given)
    table = compile_nftables(
        manifests.services, effective_endpoint_slices(manifests), context, cidrs
    )
    entry = packet_origin(src, manifests, context, switches.cluster_cidr, origin)
    first = Packet(src=src, dst=dst, protocol=protocol, dport=dport, sport=sport, origin=entry)
    network = node_network(context, switches.cluster_cidr)
    try:
        walk = trace_nft(
            parse_table(table), first, network, draw=u32_draws_from(np.random.default_rng(seed))
        )
    except (NftParseError, NftWalkError) as exc:
        # A table svcsim compiled but cannot evaluate is a defect in svcsim, named here.
        fail([f"--mode nftables: {exc}"])
    typer.echo(walk.format(verbose=verbose))
    if walk.verdict == "ACCEPT" and walk.dnat is None and not walk.outcome.local:
        typer.echo(
            f"no Service rule matched: the packet leaves {node} unchanged, towards {dst}:{dport}"
        )
