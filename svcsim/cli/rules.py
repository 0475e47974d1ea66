"""``svcsim rules`` and ``svcsim trace``: one node's kube-proxy rules, and one packet through them.

Both read real manifests, derive the EndpointSlices kube-proxy would see, and compile the node's
ruleset as kube-proxy's first full sync leaves it. ``rules`` prints it; ``trace`` walks the first
packet of a new connection through it the way the kernel does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from svcsim.cli.common import fail, warn

if TYPE_CHECKING:
    from svcsim.k8s import Manifests
    from svcsim.netfilter.model import Ruleset
    from svcsim.proxy.context import NodeContext

# numpy, the manifest loaders, the compiler and the interpreter are imported inside the
# functions, so that ``svcsim --help`` and the other commands start fast.

ManifestArgs = Annotated[
    list[Path],
    typer.Argument(help="Manifest files or folders (multi-doc YAML, kind: List, kubectl -o yaml)."),
]
NodeOpt = Annotated[str, typer.Option("--node", help="Node whose kube-proxy writes the rules.")]
NodeIpOpt = Annotated[
    str | None,
    typer.Option("--node-ip", help="Node IPs, comma-separated (default: the Node's InternalIPs)."),
]
ClusterCidrOpt = Annotated[
    str | None,
    typer.Option("--cluster-cidr", help="Pod CIDR for kube-proxy's ClusterCIDR local detector."),
]
MasqBitOpt = Annotated[
    int, typer.Option("--masquerade-bit", min=0, max=31, help="--iptables-masquerade-bit.")
]
MasqAllOpt = Annotated[bool, typer.Option("--masquerade-all", help="--masquerade-all.")]


@dataclass(frozen=True, slots=True)
class NodeRules:
    """A node's compiled rules and what was needed to compile them."""

    manifests: Manifests
    context: NodeContext
    ruleset: Ruleset
    restore_text: str


def _compile_node(
    manifests_paths: list[Path],
    node: str,
    node_ip: str | None,
    cluster_cidr: str | None,
    masquerade_bit: int,
    masquerade_all: bool,
) -> NodeRules:
    from svcsim.k8s import ManifestErrors, effective_endpoint_slices, load_manifests
    from svcsim.proxy.context import NodeContext
    from svcsim.proxy.iptables import compile_iptables_sync

    try:
        manifests = load_manifests(manifests_paths)
    except ManifestErrors as exc:
        fail(exc.problems)
    warn(manifests.warnings)
    node_ips = _node_ips(manifests, node, node_ip)
    problems: list[str] = []
    for ip in node_ips:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            problems.append(f"--node-ip: {ip!r} is not an IPv4 address")
    if cluster_cidr is not None:
        try:
            ipaddress.ip_network(cluster_cidr, strict=False)
        except ValueError:
            problems.append(f"--cluster-cidr: {cluster_cidr!r} is not a CIDR")
    if problems:
        fail(problems)
    if cluster_cidr is None:
        warn(["no --cluster-cidr: like kube-proxy without a local detector, no rule masquerades "
              "off-cluster traffic to cluster IPs"])
    common = {
        "node_ips": tuple(node_ips),
        "masquerade_bit": masquerade_bit,
        "masquerade_all": masquerade_all,
        "node_zone": next((n.zone for n in manifests.nodes if n.meta.name == node), None),
    }
    context = (
        NodeContext.with_cluster_cidr(node, cluster_cidr, **common)
        if cluster_cidr is not None
        else NodeContext(node_name=node, **common)  # type: ignore[arg-type]
    )
    sync = compile_iptables_sync(manifests.services, effective_endpoint_slices(manifests), context)
    return NodeRules(manifests, context, sync.ruleset, sync.restore_text)


def _node_ips(manifests: Manifests, node: str, given: str | None) -> list[str]:
    if given:
        return [ip.strip() for ip in given.split(",") if ip.strip()]
    for n in manifests.nodes:
        if n.meta.name == node and n.internal_ips:
            return list(n.internal_ips)
    known = ", ".join(n.meta.name for n in manifests.nodes) or "none"
    fail([f"--node-ip: node {node!r} has no InternalIP in the manifests (nodes: {known}); "
          "give --node-ip"])


def rules(
    manifests: ManifestArgs,
    node: NodeOpt,
    node_ip: NodeIpOpt = None,
    cluster_cidr: ClusterCidrOpt = None,
    masquerade_bit: MasqBitOpt = 14,
    masquerade_all: MasqAllOpt = False,
    output_format: Annotated[
        Literal["save", "restore"],
        typer.Option("--format", help="save: as iptables-save prints it; restore: as kube-proxy "
                     "writes it to iptables-restore."),
    ] = "save",
) -> None:
    """Print the iptables rules kube-proxy (iptables mode) programs on one node."""
    compiled = _compile_node(manifests, node, node_ip, cluster_cidr, masquerade_bit, masquerade_all)
    if output_format == "restore":
        typer.echo(compiled.restore_text, nl=False)
    else:
        from svcsim.netfilter.text import render_save

        typer.echo(render_save(compiled.ruleset), nl=False)


def _parse_endpoints(src: str, dst: str) -> tuple[str, int, str]:
    """Check ``--src`` and ``--dst``; returns (dst ip, port, protocol) or exits listing problems."""
    address, _, protocol = dst.partition("/")
    protocol = (protocol or "tcp").lower()
    host, sep, port = address.rpartition(":")
    problems = []
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        problems.append(f"--dst: {dst!r} is not IP:PORT[/tcp|udp|sctp]")
    if protocol not in ("tcp", "udp", "sctp"):
        problems.append(f"--dst: protocol {protocol!r} is not tcp, udp or sctp")
    for flag, ip in (("--src", src), ("--dst", host if sep else address)):
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            problems.append(f"{flag}: {ip!r} is not an IPv4 address")
    if problems:
        fail(problems)
    return host, int(port), protocol


def _origin(src: str, compiled: NodeRules) -> Literal["pod", "host", "external"]:
    address = ipaddress.ip_address(src)
    if src in compiled.context.node_ips or address.is_loopback:
        return "host"
    cidr = compiled.context.cluster_cidr
    if cidr is not None and address in ipaddress.ip_network(cidr, strict=False):
        return "pod"
    for pod in compiled.manifests.pods:
        if pod.pod_ip == src:
            return "pod"
    return "external"


def trace_command(
    manifests: ManifestArgs,
    node: NodeOpt,
    src: Annotated[str, typer.Option("--src", help="Source IP of the connection.")],
    dst: Annotated[str, typer.Option("--dst", help="Destination IP:PORT[/tcp|udp|sctp].")],
    node_ip: NodeIpOpt = None,
    cluster_cidr: ClusterCidrOpt = None,
    masquerade_bit: MasqBitOpt = 14,
    masquerade_all: MasqAllOpt = False,
    origin: Annotated[
        Literal["pod", "host", "external"] | None,
        typer.Option("--from", help="Where the packet enters: a Pod on this node, a host-network "
                     "process, or the node's uplink (default: guessed from --src)."),
    ] = None,
    sport: Annotated[int, typer.Option("--sport", min=1, max=65535, help="Source port.")] = 40000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed for the statistic matches' random draws.")
    ] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every rule.")] = False,
) -> None:
    """Trace the first packet of a new connection through a node's rules, as the kernel does."""
    import numpy as np

    from svcsim.netfilter.interpreter import draws_from, trace
    from svcsim.netfilter.packet import NodeNetwork, Packet

    dst_ip, dport, protocol = _parse_endpoints(src, dst)
    compiled = _compile_node(manifests, node, node_ip, cluster_cidr, masquerade_bit, masquerade_all)
    entry = origin or _origin(src, compiled)
    if entry == "pod":
        owner = next((p for p in compiled.manifests.pods if p.pod_ip == src), None)
        if owner is not None and owner.node_name not in (None, node):
            warn([f"{src} is Pod {owner.meta.key} on node {owner.node_name}: its connections "
                  f"are processed by that node's rules, not {node}'s"])
    packet = Packet(src=src, dst=dst_ip, protocol=protocol, dport=dport, sport=sport, origin=entry)
    context = compiled.context
    network = NodeNetwork(node_ips=context.node_ips, pod_cidr=context.cluster_cidr)
    walk = trace(compiled.ruleset, packet, network, draw=draws_from(np.random.default_rng(seed)))
    typer.echo(walk.format(verbose=verbose))
    if walk.verdict == "ACCEPT" and walk.dnat is None and not walk.outcome.local:
        typer.echo(f"no Service rule matched: the packet leaves {node} unchanged, towards "
                   f"{dst_ip}:{dport}")
