"""The two extensions only the userspace proxier's portal rules use: REDIRECT and ``-m state``.

* ``-j REDIRECT --to-ports P`` (net/netfilter/nf_nat_redirect.c ``nf_nat_redirect_ipv4``): DNAT
  to a local address and port P: ``127.0.0.1`` for locally generated packets (OUTPUT), else the
  primary address of the interface the packet came in on. The model has no per-interface
  addresses: it uses the node's primary IP (a bridge CNI's gateway address in reality, which
  kube-proxy's listener on 0.0.0.0 answers just the same).
* ``-m state --state S1,S2`` (the older spelling of ``-m conntrack --ctstate``, xt_state.c).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedirectTarget:
    """``-j REDIRECT --to-ports PORT``."""

    port: int

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints."""
        return ["-j", "REDIRECT", "--to-ports", str(self.port)]


@dataclass(frozen=True, slots=True)
class StateMatch:
    """``-m state [!] --state S1,S2``."""

    states: frozenset[str]
    negated: bool = False

    def matches(self, packet_states: frozenset[str]) -> bool:
        """True if any of ``packet_states`` is listed (taking negation into account)."""
        return bool(self.states & packet_states) != self.negated

    def save_args(self) -> list[str]:
        """Tokens iptables-save prints (libxt_state prints in the conntrack order)."""
        # Imported here: extensions imports this module for its Match union.
        from svcsim.netfilter.extensions import CONNTRACK_STATE_ORDER

        listed = ",".join(s for s in CONNTRACK_STATE_ORDER if s in self.states)
        return ["-m", "state", *(["!"] if self.negated else []), "--state", listed]
