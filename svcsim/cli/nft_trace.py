"""``svcsim trace --mode nftables``: one packet through the node's ``ip kube-proxy`` table.

Compiles the table as ``svcsim rules --mode nftables`` does (or reads a node's own with
``--nft-list FILE``), parses it for the evaluator and prints the walk
(:mod:`svcsim.netfilter.nft_eval`) the way the iptables trace prints its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from svcsim.cli.common import fail, warn

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


def trace_nft_list(
    path: Path,
    *,
    packet: tuple[str, str, int, str, int],
    node_ip: str | None,
    cluster_cidr: str | None,
    origin: Literal["pod", "host", "external"] | None,
    seed: int,
    verbose: bool,
) -> None:
    """``trace --nft-list FILE``: walk ``packet`` through a node's own ``ip kube-proxy`` table.

    FILE is ``nft list ruleset`` (or ``nft list table ip kube-proxy``) output from the node.
    Other tables in it are named and not evaluated (a warning says so).
    """
    import numpy as np

    from svcsim.cli.node_dump import dump_node_ips, save_origin
    from svcsim.netfilter.nft_eval import NftWalkError, trace_nft
    from svcsim.netfilter.nft_list_read import NftListError, read_listing
    from svcsim.netfilter.nft_parse import NftParseError, parse_table
    from svcsim.netfilter.numgen import u32_draws_from
    from svcsim.netfilter.packet import NodeNetwork, Packet

    src, dst, dport, protocol, sport = packet
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail([f"{path}: cannot read: {exc}"])
    try:
        listing = read_listing(text)
    except NftListError as exc:
        fail([f"{path}:{exc.line}: {exc}"])
    if listing.kube_proxy is None:
        fail([f"{path}: no 'table ip kube-proxy' in it (is the node in nftables mode?)"])
    if listing.others:
        warn([f"{path}: tables {', '.join(listing.others)} are not evaluated: only "
              "kube-proxy's table is walked; their chains on the same hooks may change the "
              "verdict"])  # fmt: skip
    node_ips = dump_node_ips(node_ip, cluster_cidr)
    entry = origin or save_origin(src, node_ips, cluster_cidr)
    network = NodeNetwork(node_ips=node_ips, pod_cidr=cluster_cidr)
    first = Packet(src=src, dst=dst, protocol=protocol, dport=dport, sport=sport, origin=entry)
    try:
        parsed = parse_table(listing.kube_proxy)
        walk = trace_nft(parsed, first, network, draw=u32_draws_from(np.random.default_rng(seed)))
    except (NftParseError, NftWalkError) as exc:
        fail([f"{path}: {exc}"])
    typer.echo(walk.format(verbose=verbose))
