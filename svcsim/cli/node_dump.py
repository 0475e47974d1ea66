"""Reading a real node's ``iptables-save`` file for ``trace`` and ``diff``, and tracing through it.

Problems are printed ``FILE:LINE: message`` and exit 2. A rule holding an extension svcsim
does not know is an error only when the traced packet reaches it; otherwise one warning per
rule says that svcsim kept it but never evaluated it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from svcsim.cli.common import fail, note, warn

if TYPE_CHECKING:
    from svcsim.netfilter.branches import Branches
    from svcsim.netfilter.node_save import NodeDump
    from svcsim.netfilter.other_eval import NodeFacts

IptablesSaveOpt = Annotated[
    Path | None,
    typer.Option(
        "--iptables-save",
        help="A node's own rules: the output of 'iptables-save' (or 'iptables-save -c') run on it.",
    ),
]
IpsetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ipset",
        help="NAME=MEMBER,MEMBER,... : an ipset's members (IPs, CIDRs, 'ip,tcp:port'), as "
        "'ipset list NAME' prints them on the node; repeat per set. Sets not given are unknown.",
    ),
]
PodInterfaceOpt = Annotated[
    str,
    typer.Option(
        "--pod-interface", help="Interface a local Pod's packets arrive on (cali..., veth...)."
    ),
]
UplinkOpt = Annotated[
    str, typer.Option("--uplink-interface", help="The node's interface to the network.")
]


def read_dump(path: Path) -> NodeDump:
    """The node's rules from ``path``, or exit 2 with one ``FILE:LINE: message`` per problem."""
    from svcsim.netfilter.node_save import NodeDumpError, parse_node_save

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail([f"{path}: cannot read: {exc}"])
    try:
        dump = parse_node_save(text)
    except NodeDumpError as exc:
        fail(f"{path}:{line}: {problem}" for line, problem in exc.problems)
    warn(dump.notes)
    return dump


def parse_ipsets(given: Iterable[str]) -> NodeFacts:
    """``--ipset NAME=a,b`` options as :class:`~svcsim.netfilter.other_eval.NodeFacts`."""
    from svcsim.netfilter.other_eval import NodeFacts

    ipsets: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    for item in given:
        name, sep, members = item.partition("=")
        entries = tuple(m.strip() for m in members.split(",") if m.strip())
        if not sep or not name:
            problems.append(f"--ipset: {item!r} is not NAME=MEMBER,MEMBER,...")
            continue
        for entry in entries:
            first = entry.split(",")[0]
            try:
                ipaddress.ip_network(first, strict=False)
            except ValueError:
                problems.append(f"--ipset {name}: {entry!r} does not start with an IP or CIDR")
        ipsets[name] = ipsets.get(name, ()) + entries
    if problems:
        fail(problems)
    return NodeFacts(ipsets=ipsets)


def save_origin(
    src: str, node_ips: tuple[str, ...], cluster_cidr: str | None
) -> Literal["pod", "host", "external"]:
    """Where a packet from ``src`` enters when only the dump is known (``--from`` overrides)."""
    address = ipaddress.ip_address(src)
    if src in node_ips or address.is_loopback:
        return "host"
    if cluster_cidr is not None and address in ipaddress.ip_network(cluster_cidr, strict=False):
        return "pod"
    return "external"


def print_branches(path: Path, dump: NodeDump, branches: Branches, *, verbose: bool) -> None:
    """Print every branch of the walk; exit 2 if one reached a rule svcsim does not know."""
    from svcsim.netfilter.node_save import unknown_parts

    reached: set[tuple[str, str, int]] = set()
    problems: list[str] = []
    for branch in branches.branches:
        stop = branch.stopped
        if stop is not None and stop.unknown:
            key = (stop.table, stop.chain, stop.index)
            if key not in reached:
                reached.add(key)
                line = dump.line_of(stop.table, stop.chain, stop.index)
                problems.append(
                    f"{path}:{line}: *{stop.table} {stop.chain}: {stop.reason}, and the traced "
                    "packet reaches this rule"
                )
    if problems:
        fail(problems)
    for site, rule in dump.unknown_rules():
        warn(
            [
                f"{path}:{site.line}: *{site.table} {site.chain}: {', '.join(unknown_parts(rule))} "
                "is not known to svcsim; kept, never evaluated (the traced packet does not "
                "reach it)"
            ]
        )
    many = len(branches.branches) > 1
    if many:
        questions = {a.question for b in branches.branches for a in b.assumptions}
        typer.echo(
            f"the rules ask {len(questions)} thing(s) svcsim cannot know; "
            f"{len(branches.branches)} possible walks follow"
        )
    for number, branch in enumerate(branches.branches, start=1):
        if many:
            assumed = "; ".join(
                f"{a.question}: {'yes' if a.answer else 'no'}" for a in branch.assumptions
            )
            typer.echo(f"\n--- walk {number}: {assumed}")
        if branch.trace is not None:
            typer.echo(branch.trace.format(verbose=verbose))
            outcome = branch.trace.outcome
            if outcome.verdict == "ACCEPT" and outcome.dnat is None and not outcome.local:
                typer.echo("no rule translated the packet: it leaves the node unchanged")
        else:
            assert branch.stopped is not None
            stop = branch.stopped
            line = dump.line_of(stop.table, stop.chain, stop.index)
            typer.echo(f"{len(branch.steps)} step(s), then:")
            typer.echo(
                f"verdict: unknown - the walk stops at {path}:{line} "
                f"({stop.table} {stop.chain} rule {stop.index + 1}): {stop.reason}"
            )
    if not branches.complete:
        note(
            [
                f"only the first {len(branches.branches)} walks are shown; "
                "give --ipset to decide more"
            ]
        )


def dump_node_ips(node_ip: str | None, cluster_cidr: str | None) -> tuple[str, ...]:
    """``--node-ip`` (required: a dump does not say the node's IPs), checked with --cluster-cidr."""
    if not node_ip:
        fail(["--node-ip: the node's IPs (the dump does not say them), comma-separated"])
    node_ips = tuple(ip.strip() for ip in node_ip.split(",") if ip.strip())
    problems = []
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
    return node_ips


def trace_dump(
    path: Path,
    manifests_paths: list[Path],
    node: str | None,
    *,
    packet: tuple[str, str, int, str, int],
    node_ip: str | None,
    cluster_cidr: str | None,
    service_cidr: str,
    origin: Literal["pod", "host", "external"] | None,
    interfaces: tuple[str, str],
    ipsets: list[str],
    seed: int,
    verbose: bool,
) -> None:
    """``trace --iptables-save``: walk ``packet`` through the node's own rules, every branch."""
    from svcsim.cli.rules import ProxySwitches, _prepare_node, packet_origin
    from svcsim.netfilter.branches import trace_branches
    from svcsim.netfilter.packet import NodeNetwork, Packet

    src, dst_ip, dport, protocol, sport = packet
    dump = read_dump(path)
    facts = parse_ipsets(ipsets)
    if manifests_paths:
        if node is None:
            fail(["--node: which node the dump is from (manifests were given)"])
        manifests, context = _prepare_node(
            manifests_paths, node, node_ip, ProxySwitches(cluster_cidr=cluster_cidr), service_cidr
        )
        node_ips = context.node_ips
        entry = packet_origin(src, manifests, context, cluster_cidr, origin)
    else:
        node_ips = dump_node_ips(node_ip, cluster_cidr)
        entry = origin or save_origin(src, node_ips, cluster_cidr)
    network = NodeNetwork(
        node_ips=node_ips,
        pod_interface=interfaces[0],
        uplink_interface=interfaces[1],
        pod_cidr=cluster_cidr,
    )
    the_packet = Packet(
        src=src, dst=dst_ip, protocol=protocol, dport=dport, sport=sport, origin=entry
    )
    branches = trace_branches(dump.ruleset, the_packet, network, seed=seed, facts=facts)
    print_branches(path, dump, branches, verbose=verbose)
