"""One new connection through an IPVS-mode node: iptables hooks, then IPVS, then POSTROUTING.

The order is the kernel's for a packet addressed to a service address (bound to ``kube-ipvs0``,
so routed as local): PREROUTING (nat KUBE-SERVICES marks for masquerade and ACCEPTs), INPUT
(filter KUBE-IPVS-FILTER, KUBE-PROXY-FIREWALL, KUBE-NODE-PORT), then IPVS's LOCAL_IN hook
(``ip_vs_remote_request4``, priority ``NF_IP_PRI_NAT_SRC - 2``, after filter) looks the virtual
server up and schedules; the rewritten packet leaves through POSTROUTING, where KUBE-POSTROUTING
masquerades it if it carries the mark (or KUBE-LOOP-BACK matches a hairpin). A host-network
client's packet meets IPVS at LOCAL_OUT (after nat OUTPUT, before filter OUTPUT) and then
leaves through POSTROUTING (never through ``lo``); the model walks the OUTPUT hook whole before
IPVS, which only matters for KUBE-IPVS-OUT-FILTER, whose ``-m ipvs`` match is evaluated on the
packet's destination (see :mod:`svcsim.netfilter.ipvs_matches`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from svcsim.netfilter.interpreter import Trace, trace
from svcsim.netfilter.ipvs import IpvsState
from svcsim.netfilter.ipvs_kernel import Decision, IpvsKernel, Verdict
from svcsim.netfilter.packet import NodeNetwork, Outcome, Packet
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.walk import KernelDecider, walk_output, walk_postrouting


@dataclass(frozen=True, slots=True)
class IpvsTrace:
    """The walk before IPVS, IPVS's decision, and the walk after it (if forwarded)."""

    before: Trace
    decision: Decision | None
    """None when IPVS never saw the packet (dropped earlier, or not addressed to a service)."""
    after: Trace | None
    """POSTROUTING of the packet IPVS forwarded (to the real server)."""

    def format(self, *, verbose: bool = False) -> str:
        """The iptables walk, the IPVS lines and the final verdict, for the CLI."""
        text = self.before.format(verbose=verbose)
        lines = [text]
        if self.decision is not None:
            d = self.decision
            target = f" -> {d.real_server[0]}:{d.real_server[1]}" if d.real_server else ""
            lines.append(f"ipvs: {d.verdict.value}{target} ({d.reason})")
        if self.after is not None:
            lines.append(self.after.format(verbose=verbose))
        return "\n".join(lines)


def ipvs_network(state: IpvsState, network: NodeNetwork) -> NodeNetwork:
    """``network`` with the ``kube-ipvs0`` addresses local (the node routes them to itself)."""
    local = tuple(dict.fromkeys((*network.node_ips, *state.dummy_addresses)))
    return dataclasses.replace(network, node_ips=local)


def walk_before(state: IpvsState, packet: Packet, node: NodeNetwork, now_s: float = 0.0) -> Trace:
    """The iptables hooks a new connection's first packet meets before IPVS's hook.

    ``node`` is :func:`ipvs_network`'s. The helper rules hold no time-dependent match (IPVS
    mode has no xt_recent: persistence is IPVS's), so the walk depends on the packet alone.
    """
    if packet.origin == "host" and state.lookup(packet.protocol, packet.dst, packet.dport):
        # IPVS's LOCAL_OUT hook takes the connection right after OUTPUT (whose nat table, in
        # IPVS mode, never rewrites the destination).
        decider = KernelDecider(None, RecentTable(), now_s)
        out, steps = walk_output(state.ruleset, packet, node, decider, ipsets=state.ipsets)
        return Trace(packet, tuple(steps), out)
    return trace(state.ruleset, packet, node, ipsets=state.ipsets, now_s=now_s)


def walk_after(state: IpvsState, forwarded: Packet, node: NodeNetwork, now_s: float = 0.0) -> Trace:
    """POSTROUTING of the packet IPVS rewrote to its real server (masquerade or not)."""
    decider = KernelDecider(None, RecentTable(), now_s)
    after, steps = walk_postrouting(state.ruleset, forwarded, node, decider, ipsets=state.ipsets)
    return Trace(forwarded, tuple(steps), after)


def trace_ipvs(
    state: IpvsState,
    kernel: IpvsKernel,
    packet: Packet,
    network: NodeNetwork,
    *,
    now_s: float = 0.0,
) -> IpvsTrace:
    """Walk ``packet`` (a new connection's first packet) through an IPVS-mode node.

    ``network`` is the node's; the ``kube-ipvs0`` addresses are added to its local addresses
    here. ``kernel`` must hold ``state.virtual_servers`` (:meth:`IpvsKernel.install`) and is
    updated (the new connection entry, rr's pointer).
    """
    node = ipvs_network(state, network)
    before = walk_before(state, packet, node, now_s)
    decision, forwarded = ipvs_hook(state, kernel, packet, before.outcome, now_s)
    if forwarded is None:
        return IpvsTrace(before, decision, None)
    return IpvsTrace(before, decision, walk_after(state, forwarded, node, now_s))


def ipvs_hook(
    state: IpvsState, kernel: IpvsKernel, packet: Packet, before: Outcome, now_s: float
) -> tuple[Decision | None, Packet | None]:
    """IPVS's hook for a packet the iptables hooks left as ``before``.

    The decision (None: IPVS never saw it) and, if forwarded, the rewritten packet.
    """
    if before.verdict != "ACCEPT":
        return None, None
    dst, dport = before.destination
    if state.lookup(packet.protocol, dst, dport) is None:
        return None, None
    decision = kernel.connect(packet.protocol, packet.src, packet.sport, dst, dport, now_s)
    if decision.verdict is not Verdict.FORWARDED or decision.real_server is None:
        return decision, None
    rip, rport = decision.real_server
    return decision, dataclasses.replace(packet, dst=rip, dport=rport, mark=before.mark)
