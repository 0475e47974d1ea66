"""One node's kernel state: the installed ruleset, its dispatch index, conntrack and recent lists.

Only kube-proxy's sync (or a hand-made fault) changes the ruleset, in one atomic step, as
iptables-restore does. The data path reads the dispatch index built from whatever is installed
now, so traffic always meets the node's actual rules, stale or not.
"""

from __future__ import annotations

from svcsim.netfilter.conntrack import ConntrackTable
from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.index import DispatchIndex
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.packet import NodeNetwork
from svcsim.netfilter.recent import RecentTable


class Kernel:
    """The netfilter state of one node.

    ``generation`` counts installs, so consumers can cache per-ruleset derivations cheaply.
    """

    def __init__(
        self,
        node: str,
        network: NodeNetwork,
        conntrack_max: int,
        timeouts: ConntrackTimeouts,
    ) -> None:
        self.node = node
        self.network = network
        self.ruleset = Ruleset()
        self.index = DispatchIndex(self.ruleset, network)
        self.conntrack = ConntrackTable(conntrack_max, timeouts)
        self.recent = RecentTable()
        self.generation = 0
        self.installed_at_s = 0.0

    def reboot(self, now_s: float) -> None:
        """The node booted: no rules (until kube-proxy syncs), no conntrack entries, no lists."""
        self.install(Ruleset(), now_s)
        self.conntrack.delete_matching()
        self.recent = RecentTable()

    def install(self, ruleset: Ruleset, now_s: float) -> None:
        """Replace the ruleset atomically (what one iptables-restore commit does)."""
        self.ruleset = ruleset
        self.index = DispatchIndex(ruleset, self.network)
        self.generation += 1
        self.installed_at_s = now_s
