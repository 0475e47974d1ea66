"""``svcsim diff``: does a node hold what kube-proxy should have written there? Per Service.

Exit codes as diff(1): 0 the node agrees, 1 it does not, 2 bad input.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from svcsim.cli.common import fail, note, warn
from svcsim.cli.node_dump import IpsetOpt, PodInterfaceOpt, UplinkOpt
from svcsim.cli.rules import (
    AtOpt,
    BridgeOpt,
    ClusterCidrOpt,
    DetectLocalModeOpt,
    LocalhostNodePortsOpt,
    ManifestArgs,
    MasqAllOpt,
    MasqBitOpt,
    NfacctOpt,
    NodeIpOpt,
    NodeOpt,
    NodePortAddressesOpt,
    PrefixOpt,
    ProxySwitches,
    RandomFullyOpt,
    ServiceCidrOpt,
    _compile_node,
    _run_folder,
)
from svcsim.k8s.allocate import DEFAULT_SERVICE_CIDR

if TYPE_CHECKING:
    from svcsim.k8s import Manifests
    from svcsim.proxy.context import NodeContext
    from svcsim.proxy.node_diff import NodeDiff

DIFFER = 1
"""Exit code when the node does not hold what kube-proxy should have written."""


def diff(
    ctx: typer.Context,
    manifests: ManifestArgs,
    node: NodeOpt,
    iptables_save: Annotated[
        Path | None,
        typer.Option(
            "--iptables-save", help="The node's rules: output of 'iptables-save [-c]' run on it."
        ),
    ] = None,
    node_ip: NodeIpOpt = None,
    cluster_cidr: ClusterCidrOpt = None,
    masquerade_bit: MasqBitOpt = 14,
    masquerade_all: MasqAllOpt = False,
    detect_local_mode: DetectLocalModeOpt = "ClusterCIDR",
    pod_bridge_interface: BridgeOpt = None,
    pod_interface_name_prefix: PrefixOpt = None,
    nodeport_addresses: NodePortAddressesOpt = None,
    localhost_nodeports: LocalhostNodePortsOpt = True,
    random_fully: RandomFullyOpt = True,
    nfacct: NfacctOpt = True,
    service_cidr: ServiceCidrOpt = DEFAULT_SERVICE_CIDR,
    ipset: IpsetOpt = None,
    pod_interface: PodInterfaceOpt = "veth0",
    uplink_interface: UplinkOpt = "eth0",
    output_format: Annotated[
        Literal["text", "json"],
        typer.Option("--format", help="text (per Service, readable) or json."),
    ] = "text",
    at: AtOpt = None,
    nft_list: Annotated[
        Path | None,
        typer.Option(
            "--nft-list",
            help="A nftables-mode node's rules: output of 'nft list ruleset' run on it.",
        ),
    ] = None,
) -> None:
    """Compare a node's iptables-save with what kube-proxy should have written, per Service.

    Both are walked, not diffed as text: for each Service port, its cluster IP (from a local
    Pod and from the node), NodePort, external and load-balancer IPs (from outside) go through
    both rulesets, and what differs is said per Service: stale or missing endpoints, Services
    without rules, probability, masquerade, affinity, other software's rules on the path, chains
    nobody references. Give kube-proxy's flags as on the node (as for 'svcsim rules').
    With a RUN_FOLDER and --at T instead: the rules --node held at that instant of the run
    against what kube-proxy should have written for the cluster state then.
    Exit 0 when the node agrees, 1 when it does not, 2 on bad input.
    """
    from svcsim.cli.node_dump import parse_ipsets, read_dump

    if _run_folder(manifests, at):
        from svcsim.cli.instant import diff_at

        if iptables_save is not None:
            fail(["--iptables-save: with a run folder, the node's rules are the run's at --at"])
        result, label = diff_at(manifests[0], node, at)
        _print(result, label, node, output_format)
        return
    if nft_list is not None:
        if iptables_save is not None:
            fail(["--nft-list: give one of --iptables-save and --nft-list"])
        result = _diff_nft_list(ctx, manifests, node, node_ip, cluster_cidr, service_cidr, nft_list)
        note(result.notes)
        _print(result, nft_list, node, output_format)
        return
    if iptables_save is None:
        fail(["--iptables-save FILE or --nft-list FILE: the node's rules (or a run folder, --at)"])
    from svcsim.proxy.context import node_network
    from svcsim.proxy.node_diff import diff_node

    dump = read_dump(iptables_save)
    facts = parse_ipsets(ipset or [])
    switches = ProxySwitches(
        cluster_cidr=cluster_cidr,
        masquerade_bit=masquerade_bit,
        masquerade_all=masquerade_all,
        detect_local_mode=detect_local_mode,
        pod_bridge_interface=pod_bridge_interface,
        pod_interface_name_prefix=pod_interface_name_prefix,
        nodeport_addresses=nodeport_addresses,
        localhost_nodeports=localhost_nodeports,
        random_fully=random_fully,
        nfacct=nfacct,
    )
    compiled = _compile_node(manifests, node, node_ip, switches, service_cidr)
    # The interfaces kube-proxy's detector looks at (bridge or prefix modes), unless given.
    network = node_network(compiled.context, cluster_cidr)
    if _given(ctx, "pod_interface"):
        network = dataclasses.replace(network, pod_interface=pod_interface)
    if _given(ctx, "uplink_interface"):
        network = dataclasses.replace(network, uplink_interface=uplink_interface)
    pod_source = _pod_source(compiled.manifests, compiled.context, cluster_cidr)
    result = diff_node(
        compiled.manifests.services,
        compiled.ruleset,
        dump,
        network,
        pod_source=pod_source,
        facts=facts,
    )
    reached = result.reached_unknown()
    if reached:
        fail(
            f"{iptables_save}:{f.line}: {f.message}, and Service traffic reaches this rule"
            for f in reached
        )
    from svcsim.netfilter.node_save import unknown_parts

    warn(
        f"{iptables_save}:{site.line}: *{site.table} {site.chain}: "
        f"{', '.join(unknown_parts(rule))} is not known to svcsim; kept, never evaluated "
        "(no Service probe reaches it)"
        for site, rule in dump.unknown_rules()
    )
    note(result.notes)
    _print(result, iptables_save, node, output_format)


def _diff_nft_list(
    ctx: typer.Context,
    manifests: list[Path],
    node: str,
    node_ip: str | None,
    cluster_cidr: str | None,
    service_cidr: str,
    path: Path,
) -> NodeDiff:
    """A nftables-mode node's listing against the table kube-proxy should have written."""
    from svcsim.cli.rules import _prepare_node, service_cidrs
    from svcsim.k8s import effective_endpoint_slices
    from svcsim.netfilter.nft_list_read import NftListError, read_listing
    from svcsim.netfilter.nft_parse import NftParseError, parse_table
    from svcsim.proxy.context import node_network
    from svcsim.proxy.nft_node_diff import diff_nft_node
    from svcsim.proxy.nftables import compile_nftables

    try:
        listing = read_listing(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        fail([f"{path}: cannot read: {exc}"])
    except NftListError as exc:
        fail([f"{path}:{exc.line}: {exc}"])
    if listing.kube_proxy is None:
        fail([f"{path}: no 'table ip kube-proxy' in it (is the node in nftables mode?)"])
    if listing.others:
        warn([f"{path}: tables {', '.join(listing.others)} are not compared (only kube-proxy's)"])
    manifests_read, context = _prepare_node(
        manifests, node, node_ip, ProxySwitches(cluster_cidr=cluster_cidr), service_cidr,
        mode="nftables",
    )  # fmt: skip
    cidrs = service_cidrs(manifests_read, service_cidr, given=_given(ctx, "service_cidr"))
    wanted = compile_nftables(
        manifests_read.services, effective_endpoint_slices(manifests_read), context, cidrs
    )
    try:
        have = parse_table(listing.kube_proxy)
    except NftParseError as exc:
        fail([f"{path}: {exc}"])
    network = node_network(context, cluster_cidr)
    return diff_nft_node(
        manifests_read.services,
        parse_table(wanted),
        have,
        network,
        pod_source=_pod_source(manifests_read, context, cluster_cidr),
    )


def _print(result: NodeDiff, path: Path, node: str, output_format: str) -> None:
    """The diff as text or JSON; exit 1 when the node differs."""
    if output_format == "json":
        typer.echo(json.dumps(_as_json(result, path), indent=2))
    else:
        typer.echo(_as_text(result, path, node))
    if not result.agrees:
        raise typer.Exit(DIFFER)


def _given(ctx: typer.Context, name: str) -> bool:
    """True if the user gave option ``name`` (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def _pod_source(manifests: Manifests, context: NodeContext, cluster_cidr: str | None) -> str | None:
    """A local Pod's address for Pod probes: inside the Node's podCIDR, else the cluster CIDR.

    The last usable address of the range: not a Service endpoint in any usual cluster, so a
    probe is not hairpin traffic by accident.
    """
    cidrs = [c for n in manifests.nodes if n.meta.name == context.node_name for c in n.pod_cidrs]
    for cidr in [*cidrs, *([cluster_cidr] if cluster_cidr else [])]:
        network = ipaddress.ip_network(cidr, strict=False)
        if network.version == 4 and network.num_addresses >= 4:
            return str(network.network_address + network.num_addresses - 2)
    return None


def _as_text(result: NodeDiff, path: Path, node: str) -> str:
    lines = []
    for service in result.services:
        state = "agrees" if service.agrees else "DIFFERS"
        lines.append(f"{service.service}  ({', '.join(service.frontends)})  {state}")
        for finding in service.findings:
            mark = "  ?" if finding.condition else "  !" if finding.differs else "  -"
            at = f"  [{path}:{finding.line}]" if finding.line else ""
            when = f" - only if {finding.condition}" if finding.condition else ""
            lines.append(f"{mark} {finding.message}{when}{at}")
    if result.elsewhere:
        lines.append("not tied to a Service of the cluster:")
        for finding in result.elsewhere:
            mark = "  !" if finding.differs else "  -"
            lines.append(f"{mark} {finding.message}")
    verdict = "agrees with" if result.agrees else "differs from"
    lines.append(f"{node} {verdict} what kube-proxy should have written")
    if any(f.condition for s in result.services for f in s.findings):
        lines.append(
            "(? = holds only for some answers to what the rules alone cannot tell; "
            "give --ipset NAME=MEMBERS to decide ipsets)"
        )
    return "\n".join(lines)


def _as_json(result: NodeDiff, path: Path) -> dict[str, object]:
    def finding(f: object) -> dict[str, object]:
        from svcsim.proxy.node_findings import Finding

        assert isinstance(f, Finding)
        return {
            "kind": f.kind,
            "message": f.message,
            "line": f.line,
            "differs": f.differs,
            "only_if": f.condition or None,
        }

    return {
        "file": str(path),
        "agrees": result.agrees,
        "services": [
            {
                "service": s.service,
                "frontends": list(s.frontends),
                "agrees": s.agrees,
                "findings": [finding(f) for f in s.findings],
            }
            for s in result.services
        ],
        "elsewhere": [finding(f) for f in result.elsewhere],
        "notes": list(result.notes),
    }
