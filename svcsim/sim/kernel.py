"""One node's kernel state: the installed rules, conntrack, and the rules' dynamic state.

The node's kube-proxy mode decides what the rules are: an iptables :class:`Ruleset` (with its
dispatch index and the xt_recent lists), nf_tables' table ``ip kube-proxy``
(:class:`~svcsim.netfilter.nftables.NftTable`, its parsed form, and the dynamic sets'
elements), or IPVS mode's state (:class:`~svcsim.netfilter.ipvs.IpvsState`: helper iptables
rules, ip sets, virtual servers) with the node's live IPVS
(:class:`~svcsim.netfilter.ipvs_kernel.IpvsKernel`: its connection table, counts and
schedulers' state outlive syncs; only a reboot empties it). In userspace mode the Ruleset holds
the portal rules and :attr:`Kernel.sockets` the proxy sockets they redirect to
(:mod:`svcsim.sim.proxy_sockets`). Only kube-proxy's sync (or a hand-made fault) changes the
rules, in one atomic step, as iptables-restore or one ``nft -f`` transaction does. The data
path reads whatever is
installed now, so traffic always meets the node's actual rules, stale or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from svcsim.netfilter.conntrack import ConntrackTable
from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.icmp_limit import IcmpRateLimit, IcmpSysctls
from svcsim.netfilter.index import MAX_PATHS, DispatchIndex
from svcsim.netfilter.ipset import IpsetTable
from svcsim.netfilter.ipvs import IpvsState
from svcsim.netfilter.ipvs_kernel import IpvsKernel, IpvsSysctls
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.nft_eval import DynamicSets
from svcsim.netfilter.nft_index import dynamic_sets
from svcsim.netfilter.nft_parse import parse_table
from svcsim.netfilter.nft_statements import ParsedTable
from svcsim.netfilter.nftables import NftTable
from svcsim.netfilter.packet import NodeNetwork
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.tcp_syn import TcpSynSysctls
from svcsim.sim.proxy_sockets import SocketTable

KernelMode = Literal["iptables", "nftables", "ipvs", "userspace"]
"""The kube-proxy data planes a node's kernel can hold."""


@dataclass(frozen=True, slots=True, eq=False)
class NftRules:
    """One installed nf_tables table: as written, parsed, and its dynamic sets.

    Compared by identity: each install is a new object (what the traffic layer keys on).
    """

    table: NftTable
    parsed: ParsedTable
    dynamic: frozenset[str]
    """The sets whose elements the walk may add (:func:`dynamic_sets`)."""

    @classmethod
    def of(cls, table: NftTable, parsed: ParsedTable | None = None) -> NftRules:
        """``table`` with its parse (done here if not given) and dynamic sets."""
        parsed = parsed if parsed is not None else parse_table(table)
        return cls(table, parsed, dynamic_sets(parsed))


class Kernel:
    """The netfilter state of one node.

    ``generation`` counts installs, so consumers can cache per-ruleset derivations cheaply.
    In ``nftables`` mode ``ruleset`` stays empty and ``nft`` holds the table; in ``iptables``
    mode ``nft`` is None. In ``ipvs`` mode ``ipvs`` holds the installed state and
    ``ipvs_table`` the live IPVS (``ipvs_sysctls`` are kube-proxy's IPVS settings).
    """

    def __init__(
        self,
        node: str,
        network: NodeNetwork,
        conntrack_max: int,
        timeouts: ConntrackTimeouts,
        mode: KernelMode = "iptables",
        ipvs_sysctls: IpvsSysctls | None = None,
        icmp_sysctls: IcmpSysctls | None = None,
        tcp_syn: TcpSynSysctls | None = None,
    ) -> None:
        self.node = node
        self.network = network
        self.mode: KernelMode = mode
        self.ruleset = Ruleset()
        self.max_paths = MAX_PATHS
        """The most ways through the rules one key may have to be indexed (walked otherwise)."""
        self.index = DispatchIndex(self.ruleset, network)
        self.nft: NftRules | None = None
        """The installed nf_tables table (nftables mode: an empty table at first)."""
        if mode == "nftables":
            self.nft = NftRules.of(NftTable("ip", "kube-proxy"))
        # --- ipvs mode (start) ---
        self.ipvs_sysctls = ipvs_sysctls if ipvs_sysctls is not None else IpvsSysctls()
        self.ipvs: IpvsState | None = None
        """The installed IPVS state (ipvs mode: nothing programmed at first)."""
        self.ipvs_table: IpvsKernel | None = None
        """The node's live IPVS: virtual and real servers, connection table (ipvs mode)."""
        if mode == "ipvs":
            self.ipvs = empty_ipvs()
            self.ipvs_table = IpvsKernel(self.ipvs_sysctls)
        # --- ipvs mode (end) ---
        self.conntrack = ConntrackTable(conntrack_max, timeouts)
        self.recent = RecentTable()
        self.sets = DynamicSets()
        """Elements ``update @set`` added (nftables mode's affinity sets)."""
        self.sockets = SocketTable()
        """Listening proxy sockets (userspace mode; empty otherwise)."""
        self.icmp = IcmpRateLimit(icmp_sysctls if icmp_sysctls is not None else IcmpSysctls())
        """The node's ICMP error rate limits (what its REJECTs' port-unreachables meet)."""
        self.tcp_syn = tcp_syn if tcp_syn is not None else TcpSynSysctls()
        """How the node's connecting sockets retransmit their SYNs."""
        self.generation = 0
        self.installed_at_s = 0.0

    def reboot(self, now_s: float) -> None:
        """The node booted: no rules (until kube-proxy syncs), no conntrack entries, no lists."""
        if self.mode == "nftables":
            table = NftTable("ip", "kube-proxy")
            self.install_nft(table, parse_table(table), now_s)
            self.sets = DynamicSets()
        elif self.mode == "ipvs":
            self.ipvs_table = IpvsKernel(self.ipvs_sysctls)
            self.install_ipvs(empty_ipvs(), now_s)
        else:
            self.install(Ruleset(), now_s)
        self.conntrack.delete_matching()
        self.icmp.reset()
        self.recent = RecentTable()

    @property
    def rules(self) -> Ruleset | NftRules | IpvsState:
        """What the data path evaluates now: the iptables ruleset, nf_tables table or IPVS."""
        if self.ipvs is not None:
            return self.ipvs
        return self.nft if self.nft is not None else self.ruleset

    def install(self, ruleset: Ruleset, now_s: float) -> None:
        """Replace the ruleset atomically (what one iptables-restore commit does).

        Userspace mode's portal rules are a Ruleset too (edited rule by rule upstream; each
        sync's edits land here at once).
        """
        if self.mode == "nftables":
            raise ValueError(f"node {self.node}: an iptables ruleset on a {self.mode} kernel")
        self.ruleset = ruleset
        self.index = DispatchIndex(ruleset, self.network, max_paths=self.max_paths)
        self.generation += 1
        self.installed_at_s = now_s

    def install_nft(
        self,
        table: NftTable,
        parsed: ParsedTable,
        now_s: float,
        dynamic: frozenset[str] | None = None,
    ) -> None:
        """Replace the table atomically (what one ``nft -f`` transaction does).

        Elements of sets the new table no longer has go with their sets (kube-proxy deletes
        stale affinity sets in the same transaction); the others keep their elements.
        ``dynamic``: the parse's :func:`dynamic_sets` when the caller knows them already.
        """
        if self.mode != "nftables":
            raise ValueError(f"node {self.node}: an nf_tables table on a {self.mode} kernel")
        if dynamic is None:
            self.nft = NftRules.of(table, parsed)
        else:
            self.nft = NftRules(table, parsed, dynamic)
        for name in [n for n in self.sets.expiry if n not in parsed.timeouts]:
            del self.sets.expiry[name]
        self.generation += 1
        self.installed_at_s = now_s

    def install_ipvs(self, state: IpvsState, now_s: float) -> None:
        """Record the IPVS state a sync left (its servers are already in :attr:`ipvs_table`).

        kube-proxy changes the kernel's virtual and real servers and ip sets one call at a
        time during its sync, and restores the helper iptables rules at its end; the model
        applies all of it at the sync's end (:mod:`svcsim.sim.ipvs_sync`).
        """
        if self.mode != "ipvs":
            raise ValueError(f"node {self.node}: IPVS state on a {self.mode} kernel")
        self.ipvs = state
        self.generation += 1
        self.installed_at_s = now_s


def empty_ipvs() -> IpvsState:
    """A node's IPVS state before kube-proxy's first sync: no addresses, servers, sets, rules."""
    return IpvsState((), (), IpsetTable.of(()), Ruleset())
