"""What a node's kube-proxy knows about itself: the inputs of a sync besides Services and slices.

:class:`NodeContext` gathers the flags and node facts that shape the iptables rules (kubernetes
``pkg/proxy/iptables/proxier.go`` @531be812, ``NewProxier`` and the ``Proxier`` fields). It is a
frozen value; the compiler reads it and never changes it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Final

from svcsim.netfilter.packet import NodeNetwork
from svcsim.proxy.flags import LOCAL_DETECTOR_MODES, LocalDetectorMode

TOPOLOGY_ZONE_LABEL: Final = "topology.kubernetes.io/zone"

NODE_PORT_ADDRESSES_PRIMARY: Final = "primary"
"""``--nodeport-addresses primary``: only the node's primary IP (``NodePortAddressesPrimary``)."""

INTERFACE_NAME_MAX: Final = 15
"""Longest interface name iptables takes for ``-i`` (``IFNAMSIZ`` 16 with the NUL), the ``+``
wildcard included (``xtables_parse_interface``: "must be shorter than IFNAMSIZ")."""

IPV4_LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")


def go_hex_mark(value: int) -> str:
    """Go's ``fmt.Sprintf("%#08x", value)``: ``0x`` then at least 8 zero-padded hex digits.

    Go's zero padding counts digits only, not the ``0x`` prefix (fmt ``fmtInteger``), so
    ``1 << 14`` is ``"0x00004000"``, which is what real kube-proxy logs and writes.
    """
    return f"0x{value:08x}"


def interface_name_problem(name: str, *, wildcard: bool = False) -> str | None:
    """Why ``name`` (``+`` appended if ``wildcard``) cannot be an iptables ``-i`` argument.

    Length as iptables checks it; characters as the kernel's ``dev_valid_name`` (no ``/``,
    ``:`` or white space, not ``.`` or ``..``). None if fine; the empty name means "not set".
    """
    if not name:
        return None
    if len(name) + wildcard > INTERFACE_NAME_MAX:
        limit = INTERFACE_NAME_MAX - wildcard
        return f"interface name {name!r} is longer than {limit} characters (iptables' limit)"
    if name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        return f"{name!r} is not a Linux interface name (no '/', ':' or spaces)"
    return None


def node_port_address_problems(values: tuple[str, ...]) -> list[tuple[int, str]]:
    """``(index, problem)`` of each bad ``--nodeport-addresses`` entry (validation.go's checks).

    An entry is an IPv4 CIDR (host bits allowed, as ``ParseCIDRSloppy``) or ``primary``, which
    must stand alone. IPv6 CIDRs are refused: only IPv4 is simulated.
    """
    found: list[tuple[int, str]] = []
    for index, value in enumerate(values):
        if value == NODE_PORT_ADDRESSES_PRIMARY:
            if len(values) > 1:
                found.append((index, "can't use both 'primary' and CIDRs"))
            continue
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            found.append(
                (
                    index,
                    f"must be a CIDR such as 192.168.0.0/24, or "
                    f"{NODE_PORT_ADDRESSES_PRIMARY!r}, got {value!r}",
                )
            )
            continue
        if network.version != 4:
            found.append((index, f"only IPv4 is simulated, got {value!r}"))
    return found


def resolve_node_port_addresses(values: tuple[str, ...], node_ip: str | None) -> tuple[str, ...]:
    """``--nodeport-addresses`` as kube-proxy's server hands it to the proxier.

    A lone ``primary`` becomes ``<node IP>/32`` (cmd/kube-proxy/app/server.go), or nothing
    (every address) when the node IP is unknown or loopback. Other values pass unchanged.
    """
    if values != (NODE_PORT_ADDRESSES_PRIMARY,):
        return values
    if node_ip is None or ipaddress.IPv4Address(node_ip).is_loopback:
        return ()
    return (f"{node_ip}/32",)


@dataclass(frozen=True, slots=True)
class NodeContext:
    """The node and flag facts one kube-proxy (iptables mode, IPv4) compiles rules with.

    Defaults are kube-proxy's defaults except where noted; see each field.
    """

    node_name: str
    """``--hostname-override`` / the Node's name: endpoints with this ``nodeName`` are local."""
    node_ips: tuple[str, ...] = ()
    """The node's IPv4 addresses; the first is kube-proxy's primary ``nodeIP``. With
    ``node_port_addresses`` set they also stand in for the host's interface addresses
    (``GetNodeIPs`` lists the addresses on the node's interfaces)."""
    local_detector: LocalDetectorMode | None = None
    """``--detect-local-mode``; None means no detector (``NewNoOpLocalDetector``)."""
    local_detector_value: str = ""
    """The CIDR (ClusterCIDR/NodeCIDR), bridge name, or interface-name prefix."""
    masquerade_bit: int = 14
    """``--iptables-masquerade-bit`` (default 14, range 0..31)."""
    masquerade_all: bool = False
    """``--masquerade-all``."""
    localhost_nodeports: bool = True
    """``--iptables-localhost-nodeports`` (default true); see
    :attr:`effective_localhost_nodeports`."""
    random_fully: bool = True
    """Whether the host's iptables supports ``--random-fully`` (``HasRandomFully``; iptables
    >= 1.6.2). Upstream's unit-test fake says false."""
    nfacct: bool = True
    """Whether the nfacct counters could be ensured (``nfAcctCounters``). True matches upstream's
    fake proxier and hence the expected outputs in proxier_test.go."""
    node_port_addresses: tuple[str, ...] = ()
    """``--nodeport-addresses`` CIDRs (only the IPv4 ones count here); empty means all."""
    tcp_be_liberal: bool = False
    """sysctl ``net.netfilter.nf_conntrack_tcp_be_liberal`` != 0: no INVALID DROP rule."""
    node_zone: str | None = None
    """The node's ``topology.kubernetes.io/zone`` label (kube-proxy's ``topologyLabels``)."""
    prefer_same_traffic_distribution: bool = True
    """Feature gate ``PreferSameTrafficDistribution`` (node hints). INFERRED: beta, on by
    default in v1.34 (KEP-3015; alpha in v1.33)."""

    def __post_init__(self) -> None:
        if not 0 <= self.masquerade_bit <= 31:
            raise ValueError(f"masquerade_bit {self.masquerade_bit!r} is outside [0, 31]")
        if self.local_detector is not None:
            if self.local_detector not in LOCAL_DETECTOR_MODES:
                raise ValueError(f"unknown local detector mode {self.local_detector!r}")
            if not self.local_detector_value:
                raise ValueError(f"local detector {self.local_detector} needs a value")
            if self.local_detector in ("BridgeInterface", "InterfaceNamePrefix"):
                wildcard = self.local_detector == "InterfaceNamePrefix"
                why = interface_name_problem(self.local_detector_value, wildcard=wildcard)
                if why is not None:
                    raise ValueError(why)
            if self.local_detector in ("ClusterCIDR", "NodeCIDR"):
                try:
                    ipaddress.ip_network(self.local_detector_value, strict=False)
                except ValueError as exc:
                    raise ValueError(
                        f"bad local detector CIDR {self.local_detector_value!r}"
                    ) from exc
        for ip in self.node_ips:
            try:
                ipaddress.IPv4Address(ip)
            except ValueError as exc:
                raise ValueError(f"node IP {ip!r} is not an IPv4 address") from exc
        for cidr in self.node_port_addresses:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"bad nodePortAddresses CIDR {cidr!r}") from exc

    @classmethod
    def with_cluster_cidr(cls, node_name: str, cluster_cidr: str, **kwargs: object) -> NodeContext:
        """A context whose local detector is ``ClusterCIDR`` with ``cluster_cidr``."""
        return cls(
            node_name=node_name,
            local_detector="ClusterCIDR",
            local_detector_value=cluster_cidr,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def cluster_cidr(self) -> str | None:
        """The ClusterCIDR detector's CIDR, or None for other modes."""
        return self.local_detector_value if self.local_detector == "ClusterCIDR" else None

    @property
    def node_ip(self) -> str | None:
        """kube-proxy's primary ``nodeIP`` (used for loadBalancerSourceRanges), or None."""
        return self.node_ips[0] if self.node_ips else None

    @property
    def mark_value(self) -> int:
        """The masquerade mark bit as a number: ``1 << masquerade_bit``."""
        return 1 << self.masquerade_bit

    @property
    def mark(self) -> str:
        """The mark as kube-proxy writes it: ``fmt.Sprintf("%#08x", 1<<bit)`` = ``"0x00004000"``.

        This is what the real binary writes into its iptables-restore input (``NewProxier``);
        upstream's unit-test fake proxier hard-codes ``"0x4000"`` instead. Either way the kernel
        stores the number and iptables-save prints ``0x4000``.
        """
        return go_hex_mark(self.mark_value)

    @property
    def local_detector_implemented(self) -> bool:
        """``LocalTrafficDetector.IsImplemented()``."""
        return self.local_detector is not None

    def if_local(self) -> tuple[str, ...]:
        """``IfLocal()`` words: match traffic from local pods (empty without a detector)."""
        if self.local_detector in ("ClusterCIDR", "NodeCIDR"):
            return ("-s", self.local_detector_value)
        if self.local_detector == "BridgeInterface":
            return ("-i", self.local_detector_value)
        if self.local_detector == "InterfaceNamePrefix":
            return ("-i", self.local_detector_value + "+")
        return ()

    def if_not_local(self) -> tuple[str, ...]:
        """``IfNotLocal()`` words: the negation of :meth:`if_local`."""
        words = self.if_local()
        return ("!", *words) if words else ()

    @property
    def topology_labels(self) -> dict[str, str]:
        """kube-proxy's ``topologyLabels`` (only the zone is modelled)."""
        return {TOPOLOGY_ZONE_LABEL: self.node_zone} if self.node_zone else {}

    def _ipv4_nodeport_cidrs(self) -> list[ipaddress.IPv4Network]:
        nets = (ipaddress.ip_network(c, strict=False) for c in self.node_port_addresses)
        return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]

    @property
    def nodeport_match_all(self) -> bool:
        """``NodePortAddresses.MatchAll()``: no IPv4 CIDR given, or one of them is 0.0.0.0/0."""
        cidrs = self._ipv4_nodeport_cidrs()
        return not cidrs or any(c.prefixlen == 0 for c in cidrs)

    @property
    def nodeport_contains_ipv4_loopback(self) -> bool:
        """``ContainsIPv4Loopback()``: match-all, or some CIDR holds 127.0.0.0 or is loopback."""
        if self.nodeport_match_all:
            return True
        probe = ipaddress.IPv4Address("127.0.0.0")
        return any(c.network_address.is_loopback or probe in c for c in self._ipv4_nodeport_cidrs())

    @property
    def effective_localhost_nodeports(self) -> bool:
        """``localhostNodePorts`` as ``NewProxier`` leaves it.

        It is turned off when ``--nodeport-addresses`` excludes 127.0.0.0/8.
        """
        return self.localhost_nodeports and self.nodeport_contains_ipv4_loopback

    def nodeport_ips(self) -> list[str]:
        """``GetNodeIPs``: node addresses (plus 127.0.0.1) inside some nodePortAddresses CIDR.

        Upstream collects them in a Go map, so its order is random; here they keep the order of
        :attr:`node_ips` with the loopback address first.
        """
        cidrs = self._ipv4_nodeport_cidrs()
        candidates = ["127.0.0.1", *self.node_ips]
        out: list[str] = []
        for ip in candidates:
            addr = ipaddress.IPv4Address(ip)
            if ip not in out and any(addr in c for c in cidrs):
                out.append(ip)
        return out


UPLINK_CANDIDATES: Final = ("eth0", "ens3", "uplink0")
"""Names for the node's uplink, first choice first: the first one the Pod detector does not
match is taken (no scenario or manifest names the real one)."""


def node_network(ctx: NodeContext, pod_cidr: str | None) -> NodeNetwork:
    """The node's network as ``ctx``'s detector needs it: Pods arrive where it looks for them.

    The interface detectors read only interface names, so local Pods' packets arrive on the
    bridge itself (BridgeInterface) or on a veth named with the prefix (InterfaceNamePrefix),
    and the uplink gets a name the detector does not match. With a CIDR detector (or none) the
    names do not matter and NodeNetwork's defaults stay.
    """
    network = NodeNetwork(node_ips=ctx.node_ips, pod_cidr=pod_cidr)
    mode, value = ctx.local_detector, ctx.local_detector_value
    if mode not in ("BridgeInterface", "InterfaceNamePrefix"):
        return network
    prefix = mode == "InterfaceNamePrefix"
    pods = f"{value}0" if prefix else value
    uplink = next(
        name
        for name in UPLINK_CANDIDATES
        if not (name.startswith(value) if prefix else name == value)
    )
    return dataclasses.replace(network, pod_interface=pods, uplink_interface=uplink)
