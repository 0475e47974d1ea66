"""``svcsim rules`` and ``svcsim trace``: one node's kube-proxy rules, and one packet through them.

Both read real manifests, derive the EndpointSlices kube-proxy would see, and compile the node's
ruleset as kube-proxy's first full sync leaves it. ``rules`` prints it; ``trace`` walks the first
packet of a new connection through it the way the kernel does.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Literal

import typer

from svcsim.cli.common import fail, warn
from svcsim.cli.node_dump import IpsetOpt, IptablesSaveOpt, PodInterfaceOpt, UplinkOpt
from svcsim.k8s import ManifestErrors, Manifests, effective_endpoint_slices, load_manifests
from svcsim.k8s.allocate import DEFAULT_SERVICE_CIDR, ServiceAllocator
from svcsim.k8s.objects import Service
from svcsim.proxy.flags import IPTABLES_ONLY_REASONS, LocalDetectorMode

if TYPE_CHECKING:
    from svcsim.netfilter.model import Ruleset
    from svcsim.proxy.context import NodeContext
    from svcsim.proxy.iptables import IptablesSync

# numpy, the compiler and the interpreter are imported inside the functions, so that
# ``svcsim --help`` and the other commands start fast.

ManifestArgs = Annotated[
    list[Path],
    typer.Argument(help="Manifest files or folders (multi-doc YAML, kind: List, kubectl -o yaml)."),
]
NodeOpt = Annotated[str, typer.Option("--node", help="Node whose kube-proxy writes the rules.")]
AtOpt = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="With a run folder instead of manifests: the instant of the run (e.g. 23.5s) "
        "whose installed rules to use (the run's control plane is re-simulated to it).",
    ),
]
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
DetectLocalModeOpt = Annotated[
    LocalDetectorMode,
    typer.Option(
        "--detect-local-mode",
        help="How kube-proxy tells Pod traffic apart (--detect-local-mode): ClusterCIDR "
        "(! -s --cluster-cidr), NodeCIDR (! -s the Node's spec.podCIDR), BridgeInterface "
        "(! -i --pod-bridge-interface), InterfaceNamePrefix (! -i --pod-interface-name-prefix+).",
    ),
]
BridgeOpt = Annotated[
    str | None,
    typer.Option("--pod-bridge-interface", help="The Pods' bridge, for BridgeInterface mode."),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--pod-interface-name-prefix",
        help="Prefix of the Pods' host interfaces, for InterfaceNamePrefix mode.",
    ),
]
NodePortAddressesOpt = Annotated[
    str | None,
    typer.Option(
        "--nodeport-addresses",
        help="Comma-separated CIDRs whose node addresses accept NodePorts, or 'primary' (the "
        "node IP); default: every local address (--nodeport-addresses).",
    ),
]
LocalhostNodePortsOpt = Annotated[
    bool,
    typer.Option(
        "--localhost-nodeports/--no-localhost-nodeports",
        help="NodePorts on 127.0.0.1 (--iptables-localhost-nodeports).",
    ),
]
RandomFullyOpt = Annotated[
    bool,
    typer.Option(
        "--random-fully/--no-random-fully",
        help="The node's iptables supports MASQUERADE --random-fully (iptables >= 1.6.2).",
    ),
]
ServiceCidrOpt = Annotated[
    str,
    typer.Option(
        "--service-cidr",
        help="kube-apiserver --service-cluster-ip-range: Services "
        "without a clusterIP get one from it, as the API server would allocate. nftables "
        "mode: also the drop-unallocated-ClusterIPs range, overriding the manifests' "
        "ServiceCIDR objects (default: theirs, else 10.96.0.0/12).",
    ),
]
RulesMode = Literal["iptables", "nftables", "ipvs", "userspace"]
"""The kube-proxy modes ``rules`` compiles."""

NFTABLES_DEFAULT_NODEPORT_ADDRESSES: Final = "primary"
"""``--nodeport-addresses`` when not given in nftables mode (server_linux.go
``platformApplyDefaults``): only the node's primary IP accepts NodePorts."""

ModeOpt = Annotated[
    RulesMode,
    typer.Option(
        "--mode",
        help="kube-proxy's --proxy-mode: iptables, nftables (its table ip kube-proxy; "
        "NodePorts default to the primary node IP, never localhost), ipvs (virtual servers, "
        "ip sets and their iptables rules) or userspace (kube-proxy <= v1.25: portal rules "
        "and the proxy's port table).",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--ipvs-scheduler",
        help="IPVS mode: the scheduler of every virtual server (rr, wrr, lc, wlc, sh, dh, mh; "
        "default rr).",
    ),
]
PortRangeOpt = Annotated[
    str | None,
    typer.Option(
        "--proxy-port-range",
        help="userspace mode: FIRST-LAST proxy ports (default: any free ephemeral port).",
    ),
]
NfacctOpt = Annotated[
    bool,
    typer.Option(
        "--nfacct/--no-nfacct",
        help="The kernel has nfacct: kube-proxy adds its counter matches to two rules.",
    ),
]


@dataclass(frozen=True, slots=True)
class ProxySwitches:
    """kube-proxy's flags and the node's facts that change its rules, as given as options."""

    cluster_cidr: str | None = None
    masquerade_bit: int = 14
    masquerade_all: bool = False
    detect_local_mode: LocalDetectorMode = "ClusterCIDR"
    pod_bridge_interface: str | None = None
    pod_interface_name_prefix: str | None = None
    nodeport_addresses: str | None = None
    localhost_nodeports: bool = True
    random_fully: bool = True
    nfacct: bool = True


@dataclass(frozen=True, slots=True)
class NodeRules:
    """A node's compiled rules and what was needed to compile them."""

    manifests: Manifests
    context: NodeContext
    sync: IptablesSync
    """The full sync: its restore text is written only if read (:attr:`restore_text`)."""

    @property
    def ruleset(self) -> Ruleset:
        """The kernel state the node holds after the sync."""
        return self.sync.ruleset

    @property
    def restore_text(self) -> str:
        """The iptables-restore input kube-proxy sends (written when first read)."""
        return self.sync.restore_text


def _prepare_node(
    manifests_paths: list[Path],
    node: str,
    node_ip: str | None,
    switches: ProxySwitches,
    service_cidr: str = DEFAULT_SERVICE_CIDR,
    mode: RulesMode = "iptables",
) -> tuple[Manifests, NodeContext]:
    """Load the manifests (cluster IPs allocated) and build the node's kube-proxy context."""
    from svcsim.proxy.context import NodeContext, resolve_node_port_addresses

    try:
        manifests = load_manifests(manifests_paths)
    except ManifestErrors as exc:
        fail(exc.problems)
    warn(manifests.warnings)
    manifests = _allocated(manifests, service_cidr)
    node_ips = _node_ips(manifests, node, node_ip)
    problems: list[str] = []
    for ip in node_ips:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            problems.append(f"--node-ip: {ip!r} is not an IPv4 address")
    if switches.cluster_cidr is not None:
        try:
            ipaddress.ip_network(switches.cluster_cidr, strict=False)
        except ValueError:
            problems.append(f"--cluster-cidr: {switches.cluster_cidr!r} is not a CIDR")
    # userspace mode has no local-traffic detector (nothing masquerades).
    detector = None if mode == "userspace" else _detector(manifests, node, switches, problems)
    nodeport_addresses = switches.nodeport_addresses
    if nodeport_addresses is None and mode == "nftables":
        # nftables mode's default (server_linux.go platformApplyDefaults).
        nodeport_addresses = NFTABLES_DEFAULT_NODEPORT_ADDRESSES
    addresses = _nodeport_addresses(nodeport_addresses, problems)
    if (
        mode == "nftables"
        and detector is not None
        and detector[0]
        in (
            "BridgeInterface",
            "InterfaceNamePrefix",
        )
    ):
        problems.append(
            f"--detect-local-mode {detector[0]}: not modelled in nftables mode yet "
            "(use ClusterCIDR or NodeCIDR)"
        )
    if problems:
        fail(problems)
    context = NodeContext(
        node_name=node,
        node_ips=tuple(node_ips),
        local_detector=detector[0] if detector else None,
        local_detector_value=detector[1] if detector else "",
        masquerade_bit=switches.masquerade_bit,
        masquerade_all=switches.masquerade_all,
        localhost_nodeports=switches.localhost_nodeports,
        random_fully=switches.random_fully,
        nfacct=switches.nfacct,
        node_port_addresses=resolve_node_port_addresses(addresses, next(iter(node_ips), None)),
        node_zone=next((n.zone for n in manifests.nodes if n.meta.name == node), None),
    )
    if (
        mode == "iptables"
        and switches.localhost_nodeports
        and not context.effective_localhost_nodeports
    ):
        warn(
            [
                "localhost NodePorts are off: --nodeport-addresses leaves out 127.0.0.0/8, and "
                "kube-proxy then turns --iptables-localhost-nodeports off"
            ]
        )
    if not context.nodeport_match_all and not context.nodeport_ips():
        leads_to = "KUBE-NODEPORTS" if mode == "iptables" else "@service-nodeports"
        warn(
            [
                f"no node address is inside --nodeport-addresses {nodeport_addresses}: "
                f"kube-proxy writes no rule that leads to {leads_to}, so no NodePort answers"
            ]
        )
    return manifests, context


def _compile_node(
    manifests_paths: list[Path],
    node: str,
    node_ip: str | None,
    switches: ProxySwitches,
    service_cidr: str = DEFAULT_SERVICE_CIDR,
) -> NodeRules:
    from svcsim.proxy.caches import CompileCaches
    from svcsim.proxy.iptables import compile_iptables_sync

    manifests, context = _prepare_node(manifests_paths, node, node_ip, switches, service_cidr)
    slices = effective_endpoint_slices(manifests)
    # The command's own memos: one compile, no World (DESIGN.md decision 8).
    sync = compile_iptables_sync(manifests.services, slices, context, CompileCaches())
    return NodeRules(manifests, context, sync)


_DETECTOR_INPUTS: Final = {
    "ClusterCIDR": "--cluster-cidr",
    "BridgeInterface": "--pod-bridge-interface",
    "InterfaceNamePrefix": "--pod-interface-name-prefix",
}
"""The option each detector mode reads (NodeCIDR reads the Node's spec.podCIDRs)."""


def _detector(
    manifests: Manifests, node: str, switches: ProxySwitches, problems: list[str]
) -> tuple[LocalDetectorMode, str] | None:
    """The local-traffic detector (mode, value) kube-proxy builds, or None (no detector).

    Checks as kube-proxy's validation.go (an interface mode needs its interface) and warns
    about options the chosen mode does not read.
    """
    mode = switches.detect_local_mode
    given = {
        "--cluster-cidr": switches.cluster_cidr,
        "--pod-bridge-interface": switches.pod_bridge_interface,
        "--pod-interface-name-prefix": switches.pod_interface_name_prefix,
    }
    used = _DETECTOR_INPUTS.get(mode)
    unused = [flag for flag, value in given.items() if value is not None and flag != used]
    # --cluster-cidr still tells trace which sources are Pods; say only what the rules ignore.
    if unused:
        warn([f"{', '.join(unused)} not used by the rules: --detect-local-mode is {mode}"])
    if mode == "NodeCIDR":
        found = next((n for n in manifests.nodes if n.meta.name == node), None)
        cidrs = [c for c in (found.pod_cidrs if found else ()) if "." in c]
        if not cidrs:
            problems.append(
                f"--detect-local-mode NodeCIDR: node {node!r} has no IPv4 "
                "spec.podCIDRs in the manifests"
            )
            return None
        return mode, cidrs[0]
    assert used is not None
    value = given[used]
    if mode == "ClusterCIDR":
        if value is None:
            warn(
                [
                    "no --cluster-cidr: like kube-proxy without a local detector, no rule "
                    "masquerades off-cluster traffic to cluster IPs"
                ]
            )
            return None
        return mode, value
    if not value:
        problems.append(f"--detect-local-mode {mode} needs {used}")
        return None
    from svcsim.proxy.context import interface_name_problem

    why = interface_name_problem(value, wildcard=mode == "InterfaceNamePrefix")
    if why is not None:
        problems.append(f"{used}: {why}")
        return None
    return mode, value


def _nodeport_addresses(given: str | None, problems: list[str]) -> tuple[str, ...]:
    """The ``--nodeport-addresses`` entries, checked as kube-proxy's validation.go does."""
    if given is None:
        return ()
    values = tuple(v.strip() for v in given.split(",") if v.strip())
    if not values:
        problems.append("--nodeport-addresses: give CIDRs or 'primary', or leave it out")
    from svcsim.proxy.context import node_port_address_problems

    problems += [f"--nodeport-addresses: {why}" for _, why in node_port_address_problems(values)]
    return values


def _allocated(manifests: Manifests, service_cidr: str) -> Manifests:
    """``manifests`` with the cluster IPs and NodePorts the API server would have filled in."""
    try:
        network = ipaddress.IPv4Network(service_cidr)
    except ValueError:
        fail([f"--service-cidr: {service_cidr!r} is not an IPv4 CIDR such as 10.96.0.0/12"])
    allocator = ServiceAllocator(str(network))
    services: list[Service] = []
    problems: list[str] = []
    for svc in manifests.services:
        admitted = allocator.admit(svc)
        warn(str(a) for a in admitted.allocations)
        problems.extend(admitted.problems)
        services.append(admitted.service)
    if problems:
        fail(problems)
    return dataclasses.replace(manifests, services=tuple(services))


def _node_ips(manifests: Manifests, node: str, given: str | None) -> list[str]:
    if given:
        return [ip.strip() for ip in given.split(",") if ip.strip()]
    for n in manifests.nodes:
        if n.meta.name == node and n.internal_ips:
            return list(n.internal_ips)
    known = ", ".join(n.meta.name for n in manifests.nodes) or "none"
    fail(
        [
            f"--node-ip: node {node!r} has no InternalIP in the manifests (nodes: {known}); "
            "give --node-ip"
        ]
    )


IPTABLES_ONLY_SWITCHES: Final = {
    "localhost_nodeports": (
        "--localhost-nodeports/--no-localhost-nodeports: an iptables-mode setting "
        f"(--iptables-localhost-nodeports); {IPTABLES_ONLY_REASONS['localhost_nodeports']}"
    ),
    "random_fully": (
        "--random-fully/--no-random-fully: an iptables-mode fact; "
        + IPTABLES_ONLY_REASONS["random_fully"]
    ),
    "nfacct": f"--nfacct/--no-nfacct: {IPTABLES_ONLY_REASONS['nfacct']}",
}
"""Switches ``rules`` ignores in nftables mode, and the warning it prints when one is given."""

FORMATS_BY_MODE: Final = {
    "iptables": ("save", "restore"),
    "nftables": ("nft", "list"),
    "ipvs": ("json", "ipvsadm"),
    "userspace": ("save", "json"),
}
"""The ``--format`` values each mode prints; the first is its default."""


def rules(
    ctx: typer.Context,
    manifests: ManifestArgs,
    node: NodeOpt,
    node_ip: NodeIpOpt = None,
    cluster_cidr: ClusterCidrOpt = None,
    masquerade_bit: MasqBitOpt = 14,
    masquerade_all: MasqAllOpt = False,
    detect_local_mode: DetectLocalModeOpt = "ClusterCIDR",
    pod_bridge_interface: BridgeOpt = None,
    pod_interface_name_prefix: PrefixOpt = None,
    nodeport_addresses: NodePortAddressesOpt = None,
    localhost_nodeports: Annotated[
        bool | None,
        typer.Option(
            "--localhost-nodeports/--no-localhost-nodeports",
            help="NodePorts on 127.0.0.1 (--iptables-localhost-nodeports; default on). "
            "iptables mode only.",
        ),
    ] = None,
    random_fully: Annotated[
        bool | None,
        typer.Option(
            "--random-fully/--no-random-fully",
            help="The node's iptables supports MASQUERADE --random-fully (iptables >= 1.6.2; "
            "default yes). iptables mode only.",
        ),
    ] = None,
    nfacct: Annotated[
        bool | None,
        typer.Option(
            "--nfacct/--no-nfacct",
            help="The kernel has nfacct: kube-proxy adds its counter matches to two rules "
            "(default yes). iptables mode only.",
        ),
    ] = None,
    service_cidr: ServiceCidrOpt = DEFAULT_SERVICE_CIDR,
    mode: ModeOpt = "iptables",
    output_format: Annotated[
        Literal["save", "restore", "nft", "list", "json", "ipvsadm"] | None,
        typer.Option(
            "--format",
            help="iptables mode: save (as iptables-save prints it, the default) or restore "
            "(as kube-proxy writes it to iptables-restore). nftables mode: nft (nft -f input "
            "as knftables' fake Dump() writes it, the default) or list (as 'nft list table ip "
            "kube-proxy' prints it). ipvs mode: json (the default) or ipvsadm (ipvsadm -Ln, "
            "ipset list, iptables-save). userspace mode: save (the default; the port table as "
            "comments) or json.",
        ),
    ] = None,
    ipvs_scheduler: SchedulerOpt = None,
    proxy_port_range: PortRangeOpt = None,
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, help="userspace mode: seed for the proxy ports drawn."),
    ] = 0,
    at: AtOpt = None,
) -> None:
    """Print the rules kube-proxy programs on one node (iptables or nftables mode).

    The options after --node-ip are kube-proxy's flags that change the rules, plus facts
    about the node's iptables and kernel (--no-random-fully, --no-nfacct): set them as on
    the node to compare with its iptables-save or nft list. Save format: tables in
    iptables-save's order; the "Generated"/"Completed" lines carry a fixed time (the Unix
    epoch), not the clock. nftables mode follows kube-proxy's proxier.go @b0f823e6; the
    "Drop traffic to unallocated ClusterIPs" rule uses the manifests' ServiceCIDR objects, or
    --service-cidr when given (it overrides them).
    """
    from svcsim.cli.mode_options import IGNORED_BY_MODE, check_mode_options
    from svcsim.proxy.gcpause import collector_paused

    if _run_folder(manifests, at):
        from svcsim.cli.instant import rules_at

        rules_at(manifests[0], node, at, output_format)
        return
    formats = FORMATS_BY_MODE[mode]
    chosen = output_format or formats[0]
    if chosen not in formats:
        fail([f"--format {chosen}: --mode {mode} prints {' or '.join(formats)}"])
    scheduler, port_range = check_mode_options(mode, ipvs_scheduler, proxy_port_range)
    given = {
        "localhost_nodeports": localhost_nodeports,
        "random_fully": random_fully,
        "nfacct": nfacct,
    }
    if mode == "nftables":
        warn(
            IPTABLES_ONLY_SWITCHES[name] + ": ignored" for name, v in given.items() if v is not None
        )
    ignored = IGNORED_BY_MODE.get(mode, {})
    warn(
        ignored[name] + ": ignored"
        for name, v in given.items()
        if v is not None and name in ignored
    )
    switches = ProxySwitches(
        cluster_cidr=cluster_cidr,
        masquerade_bit=masquerade_bit,
        masquerade_all=masquerade_all,
        detect_local_mode=detect_local_mode,
        pod_bridge_interface=pod_bridge_interface,
        pod_interface_name_prefix=pod_interface_name_prefix,
        nodeport_addresses=nodeport_addresses,
        localhost_nodeports=True if localhost_nodeports is None else localhost_nodeports,
        random_fully=True if random_fully is None else random_fully,
        nfacct=True if nfacct is None else nfacct,
    )
    # One short-lived process building millions of acyclic objects: the cyclic collector
    # would only walk them again and again (seconds on a 10,000-Service cluster).
    with collector_paused():
        if mode == "nftables":
            explicit = _given(ctx, "service_cidr")
            text = _nftables_text(
                manifests, node, node_ip, switches, service_cidr, chosen, explicit
            )
            typer.echo(text, nl=False)
            return
        if mode == "ipvs":
            from svcsim.cli.ipvs_rules import ipvs_state, ipvs_text

            state, _ = ipvs_state(manifests, node, node_ip, switches, service_cidr, scheduler)
            typer.echo(ipvs_text(state, chosen), nl=False)
            return
        if mode == "userspace":
            from svcsim.cli.userspace_rules import userspace_state, userspace_text

            us = userspace_state(manifests, node, node_ip, switches, service_cidr, port_range, seed)
            typer.echo(userspace_text(us, chosen), nl=False)
            return
        compiled = _compile_node(manifests, node, node_ip, switches, service_cidr)
        if chosen == "restore":
            typer.echo(compiled.restore_text, nl=False)
        else:
            from svcsim.netfilter.text import render_save

            ruleset = compiled.ruleset
            # The manifests' objects and the sync's fragments are not needed for the save
            # text: freed before it is built (and the restore text is never written).
            del compiled
            typer.echo(render_save(ruleset), nl=False)


def _given(ctx: typer.Context, name: str) -> bool:
    """True if option ``name`` was given on the command line (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def service_cidrs(manifests: Manifests, service_cidr: str, *, given: bool) -> tuple[str, ...]:
    """The Service CIDRs nftables mode's kube-proxy knows.

    ``--service-cidr`` when given; else the IPv4 CIDRs of the manifests' ServiceCIDR objects
    (``OnServiceCIDRsChanged``, as a real kube-proxy learns them); else the default range.
    """
    if given:
        return (service_cidr,)
    return manifests.ipv4_service_cidrs or (service_cidr,)


def _nftables_text(
    manifests_paths: list[Path],
    node: str,
    node_ip: str | None,
    switches: ProxySwitches,
    service_cidr: str,
    output_format: str,
    service_cidr_given: bool = True,
) -> str:
    """The node's ``ip kube-proxy`` table after a full sync, as nft input or as nft lists it."""
    from svcsim.netfilter.nftables import dump
    from svcsim.netfilter.nftables_list import list_table
    from svcsim.proxy.nftables import compile_nftables

    manifests, context = _prepare_node(
        manifests_paths, node, node_ip, switches, service_cidr, mode="nftables"
    )
    cidrs = service_cidrs(manifests, service_cidr, given=service_cidr_given)
    table = compile_nftables(
        manifests.services, effective_endpoint_slices(manifests), context, cidrs
    )
    if output_format == "nft":
        return dump(table)
    from svcsim.netfilter.nftables_list import unreproduced_merges

    warn(
        f"--format list: nft would print the address set in this rule with neighbouring "
        f"ranges joined (a-b), which svcsim does not reproduce: {rule}"
        for rule in unreproduced_merges(table)
    )
    return list_table(table)


def _run_folder(paths: list[Path] | None, at: str | None) -> bool:
    """True if the one path given is a run folder (then ``--at`` is needed); checks ``--at``."""
    if paths and len(paths) == 1 and paths[0].is_dir():
        # svcsim.instant imports the whole World (~2 s): only a folder can be a run folder.
        from svcsim.instant import is_run_folder

        if is_run_folder(paths[0]):
            return True
    if at is not None:
        fail(["--at: give one run folder (not manifests): the instant is one of its run"])
    return False


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


def _origin(
    src: str, manifests: Manifests, context: NodeContext, cluster_cidr: str | None
) -> Literal["pod", "host", "external"]:
    address = ipaddress.ip_address(src)
    if src in context.node_ips or address.is_loopback:
        return "host"
    node_cidr = context.local_detector_value if context.local_detector == "NodeCIDR" else None
    for cidr in (cluster_cidr, node_cidr):
        if cidr is not None and address in ipaddress.ip_network(cidr, strict=False):
            return "pod"
    for pod in manifests.pods:
        if pod.pod_ip == src:
            return "pod"
    return "external"


def packet_origin(
    src: str,
    manifests: Manifests,
    context: NodeContext,
    cluster_cidr: str | None,
    given: Literal["pod", "host", "external"] | None,
) -> Literal["pod", "host", "external"]:
    """Where the traced packet enters (``--from``, else guessed); warns about another node's Pod."""
    entry = given or _origin(src, manifests, context, cluster_cidr)
    if entry == "pod":
        owner = next((p for p in manifests.pods if p.pod_ip == src), None)
        if owner is not None and owner.node_name not in (None, context.node_name):
            warn(
                [
                    f"{src} is Pod {owner.meta.key} on node {owner.node_name}: its connections "
                    f"are processed by that node's rules, not {context.node_name}'s"
                ]
            )
    return entry


def trace_command(
    ctx: typer.Context,
    src: Annotated[str, typer.Option("--src", help="Source IP of the connection.")],
    dst: Annotated[str, typer.Option("--dst", help="Destination IP:PORT[/tcp|udp|sctp].")],
    manifests: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Manifest files or folders (multi-doc YAML, kind: List, kubectl -o yaml); "
            "not needed with --iptables-save."
        ),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option("--node", help="Node whose kube-proxy writes the rules (with manifests)."),
    ] = None,
    iptables_save: IptablesSaveOpt = None,
    ipset: IpsetOpt = None,
    pod_interface: PodInterfaceOpt = "veth0",
    uplink_interface: UplinkOpt = "eth0",
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
    origin: Annotated[
        Literal["pod", "host", "external"] | None,
        typer.Option(
            "--from",
            help="Where the packet enters: a Pod on this node, a host-network "
            "process, or the node's uplink (default: guessed from --src).",
        ),
    ] = None,
    sport: Annotated[int, typer.Option("--sport", min=1, max=65535, help="Source port.")] = 40000,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", min=0, help="Seed for the random draws (statistic matches, numgen)."
        ),
    ] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every rule.")] = False,
    mode: Annotated[
        RulesMode,
        typer.Option(
            "--mode",
            help="kube-proxy's --proxy-mode: iptables, nftables (the packet walks the "
            "table ip kube-proxy's base chains by hook and priority), ipvs (iptables hooks "
            "with ip-set matches, then the IPVS virtual server and its scheduler's choice) or "
            "userspace (the portal REDIRECT, then kube-proxy's round-robin choice).",
        ),
    ] = "iptables",
    ipvs_scheduler: SchedulerOpt = None,
    proxy_port_range: PortRangeOpt = None,
    at: AtOpt = None,
    nft_list: Annotated[
        Path | None,
        typer.Option(
            "--nft-list",
            help="A nftables-mode node's own table: output of 'nft list ruleset' (or 'nft list "
            "table ip kube-proxy') run on it; needs --node-ip.",
        ),
    ] = None,
) -> None:
    """Trace the first packet of a new connection through a node's rules, as the kernel does.

    Either the rules svcsim compiles from MANIFESTS for --node, or a node's own rules with
    --iptables-save FILE (every table, every piece of software's chains; what the rules alone
    cannot decide - an ipset's members, a socket lookup - is shown as one walk per answer
    unless given with --ipset), or the rules --node held at --at in a RUN_FOLDER.
    """
    import numpy as np

    from svcsim.cli.mode_options import IGNORED_BY_MODE, check_mode_options
    from svcsim.netfilter.interpreter import draws_from, trace
    from svcsim.netfilter.packet import Packet
    from svcsim.proxy.context import node_network

    dst_ip, dport, protocol = _parse_endpoints(src, dst)
    if nft_list is not None:
        from svcsim.cli.nft_trace import trace_nft_list

        if iptables_save is not None or manifests:
            fail(
                ["--nft-list: give the node's nft listing alone (no manifests, no --iptables-save)"]
            )
        first = (src, dst_ip, dport, protocol, sport)
        trace_nft_list(nft_list, packet=first, node_ip=node_ip, cluster_cidr=cluster_cidr,
                       origin=origin, seed=seed, verbose=verbose)  # fmt: skip
        return
    if iptables_save is None and _run_folder(manifests, at):
        from svcsim.cli.instant import trace_at

        if node is None:
            fail(["--node: which node's rules to trace"])
        assert manifests is not None
        first = (src, dst_ip, dport, protocol, sport)
        trace_at(manifests[0], node, at, first, origin, seed, verbose)
        return
    if iptables_save is not None:
        from svcsim.cli.node_dump import trace_dump

        mode_source = ctx.get_parameter_source("mode")
        if mode_source is not None and mode_source.name != "DEFAULT" and mode != "iptables":
            fail([f"--mode {mode}: --iptables-save traces the node's own iptables rules"])

        trace_dump(
            iptables_save,
            manifests or [],
            node,
            packet=(src, dst_ip, dport, protocol, sport),
            node_ip=node_ip,
            cluster_cidr=cluster_cidr,
            service_cidr=service_cidr,
            origin=origin,
            interfaces=(pod_interface, uplink_interface),
            ipsets=ipset or [],
            seed=seed,
            verbose=verbose,
        )
        return
    problems = [] if manifests else ["give MANIFEST files or folders, or --iptables-save FILE"]
    if node is None:
        problems.append("--node: which node's rules to trace (or give --iptables-save FILE)")
    for name in ("ipset", "pod_interface", "uplink_interface"):
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT":
            problems.append(f"--{name.replace('_', '-')}: only used with --iptables-save")
    if problems:
        fail(problems)
    assert manifests is not None and node is not None
    scheduler, port_range = check_mode_options(mode, ipvs_scheduler, proxy_port_range)
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
    if mode == "nftables":
        from svcsim.cli.nft_trace import trace_nftables

        # Their defaults are booleans here, so ask where each value came from (typer's click).
        sources = {name: ctx.get_parameter_source(name) for name in IPTABLES_ONLY_SWITCHES}
        warn(
            IPTABLES_ONLY_SWITCHES[name] + ": ignored"
            for name, source in sources.items()
            if source is not None and source.name != "DEFAULT"
        )
        trace_nftables(
            manifests,
            switches,
            node=node,
            node_ip=node_ip,
            service_cidr=service_cidr,
            service_cidr_given=_given(ctx, "service_cidr"),
            packet=(src, dst_ip, dport, protocol, sport),
            origin=origin,
            seed=seed,
            verbose=verbose,
        )
        return
    if mode in IGNORED_BY_MODE:
        sources = {name: ctx.get_parameter_source(name) for name in IGNORED_BY_MODE[mode]}
        warn(
            IGNORED_BY_MODE[mode][name] + ": ignored"
            for name, source in sources.items()
            if source is not None and source.name != "DEFAULT"
        )
    packet_args = (src, dst_ip, dport, protocol, sport)
    if mode == "ipvs":
        from svcsim.cli.ipvs_rules import trace_ipvs_mode

        trace_ipvs_mode(
            manifests,
            switches,
            node=node,
            node_ip=node_ip,
            service_cidr=service_cidr,
            scheduler=scheduler,
            packet=packet_args,
            origin=origin,
            verbose=verbose,
        )
        return
    if mode == "userspace":
        from svcsim.cli.userspace_rules import trace_userspace_mode

        trace_userspace_mode(
            manifests,
            switches,
            node=node,
            node_ip=node_ip,
            service_cidr=service_cidr,
            port_range=port_range,
            packet=packet_args,
            origin=origin,
            seed=seed,
            verbose=verbose,
        )
        return
    compiled = _compile_node(manifests, node, node_ip, switches, service_cidr)
    entry = packet_origin(src, compiled.manifests, compiled.context, cluster_cidr, origin)
    packet = Packet(src=src, dst=dst_ip, protocol=protocol, dport=dport, sport=sport, origin=entry)
    context = compiled.context
    network = node_network(context, cluster_cidr)
    walk = trace(compiled.ruleset, packet, network, draw=draws_from(np.random.default_rng(seed)))
    typer.echo(walk.format(verbose=verbose))
    if walk.verdict == "ACCEPT" and walk.dnat is None and not walk.outcome.local:
        typer.echo(
            f"no Service rule matched: the packet leaves {node} unchanged, towards {dst_ip}:{dport}"
        )
