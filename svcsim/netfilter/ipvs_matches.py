"""The two match extensions only IPVS mode's rules use besides ``-m set``: physdev and ipvs.

* ``-m physdev ! --physdev-is-in`` (net/netfilter/xt_physdev.c): the packet did not enter
  through a bridge port. kube-proxy uses it to accept externalIP traffic "that does not come
  from a bridge (i.e. not from a container)" (pkg/proxy/ipvs/proxier.go, ``externalIPRules``).
  The model: a packet from a Pod on this node came in through a bridge port (the CNI's bridge);
  host and uplink traffic did not. A CNI without a bridge (routed veths) would make every
  packet "not from a bridge": that is the imperfection kube-proxy's own comment admits.
* ``-m ipvs --vaddr A --vproto P --vport N`` (net/netfilter/xt_ipvs.c): the packet belongs to
  an IPVS connection to virtual server A:N/P. kube-proxy uses it in filter OUTPUT
  (KUBE-IPVS-OUT-FILTER) to stop the node itself reaching a LoadBalancer IP whose
  loadBalancerSourceRanges leave the node out. IPVS's LOCAL_OUT hook runs before filter OUTPUT,
  so when the rule is reached the connection exists exactly when the packet was addressed to
  that virtual server: the model compares the packet's (pre-IPVS) destination.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PhysdevMatch:
    """``-m physdev [!] --physdev-is-in``."""

    is_in: bool = True
    negated: bool = False

    def matches(self, from_bridge: bool) -> bool:
        """True if the packet (entered through a bridge port or not) satisfies the match."""
        return from_bridge != self.negated

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints."""
        return ["-m", "physdev", *(["!"] if self.negated else []), "--physdev-is-in"]


@dataclass(frozen=True, slots=True)
class IpvsMatch:
    """``-m ipvs --vaddr ADDR[/MASK] --vproto PROTO --vport PORT`` (only these options)."""

    vaddr: str
    vproto: str
    vport: int

    def matches(self, dst: str, protocol: str, dport: int) -> bool:
        """True if a packet to ``dst:dport/protocol`` is on a connection to this virtual server."""
        return (dst, protocol, dport) == (self.vaddr, self.vproto, self.vport)

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints (libxt_ipvs prints the address with its /32 mask)."""
        return [
            "-m", "ipvs", "--vaddr", f"{self.vaddr}/32",
            "--vproto", self.vproto, "--vport", str(self.vport),
        ]  # fmt: skip
