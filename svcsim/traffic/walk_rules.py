"""A new connection walked through a node's installed rules one rule at a time.

What the per-request reference does for every attempt, and what the batched engine does for a
key whose rules branch beyond the dispatch index's bound
(:class:`~svcsim.netfilter.index.DispatchTooLargeError`):
:func:`~svcsim.netfilter.interpreter.trace` for iptables,
:func:`~svcsim.netfilter.nft_eval.walk_nft` for nf_tables, fed the attempt's own draws and the
node's live xt_recent lists or dynamic sets. A dispatch resolves exactly as this walk does
(same draws consumed, same lists touched), so either way gives the same records.
"""

from __future__ import annotations

from svcsim.netfilter.interpreter import trace
from svcsim.netfilter.nft_eval import walk_nft
from svcsim.netfilter.packet import Origin, Packet
from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.sim.kernel import Kernel
from svcsim.traffic.draws import SeedDraws, SeedDraws32
from svcsim.traffic.targets import Dial


def walk_installed(
    kernel: Kernel, src: str, origin: Origin, dial: Dial, seed: int, t: float
) -> NfOutcome:
    """Where the node's rules send a new connection from ``src`` to ``dial`` at ``t``."""
    packet = Packet(src, dial.ip, dial.protocol, dial.port, origin=origin)
    if kernel.nft is not None:
        outcome, _ = walk_nft(
            kernel.nft.parsed,
            packet,
            kernel.network,
            draw=SeedDraws32(seed),
            sets=kernel.sets,
            now_s=t,
        )
        return outcome
    walked = trace(
        kernel.ruleset, packet, kernel.network, draw=SeedDraws(seed), recent=kernel.recent, now_s=t
    )
    return walked.outcome
