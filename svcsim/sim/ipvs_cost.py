"""What one IPVS-mode kube-proxy sync costs: :class:`IpvsSyncCostModel`.

kube-proxy's IPVS proxier (kubernetes ``pkg/proxy/ipvs/proxier.go``, the v1.33+ line) has no
partial sync: every ``syncProxyRules`` walks every Service port, lists the kernel's virtual
and real servers over netlink and compares them with what it wants, writes its helper
iptables rules with one ``iptables-restore`` (a constant handful of rules, one per ip set),
and changes the kernel only where it differs: one netlink call per virtual or real server
added, updated or deleted, and one ``ipset add``/``ipset del`` *per entry* that changed
(``syncIPSetEntries`` -> ``AddEntry``/``DelEntry``, each a process exec; kubernetes #133773
"kube-proxy IPVS mode syncing rules performance problem", 2025, names that linear,
exec-per-entry path as the slow part of a first sync). So::

    duration_s = base_s + per_object_s x objects + per_change_s x changes

* ``objects``: virtual servers + real servers + ip-set entries of the wanted state (the walk
  and the netlink listing, done on every sync whatever changed);
* ``changes``: virtual and real servers added, re-weighted or deleted, plus ip-set entries
  added or deleted (the kernel calls and ``ipset`` execs).

Defaults (:data:`IPVS_PUBLISHED_POINTS`):

* ``base_s`` = iptables mode's calibrated fixed cost (:data:`~svcsim.sim.synccost.DEFAULT_BASE_S`,
  0.16 s): every IPVS sync also runs one ``iptables-restore`` of its helper rules and the same
  Service/endpoint bookkeeping. Transferred, not measured on IPVS: UNVERIFIED.
* ``per_object_s``: kubernetes #84906 "performance enhance for kube-proxy/ipvs syncProxyRules"
  (2019): with about 1,500 Services with an external IP, a sync took 730 ms after the fix the
  issue proposes. Counted here as 1,500 x (ClusterIP and external-IP virtual servers, one real
  server each = 4 objects, plus 2 ip-set entries) = 9,000 objects: ``(0.730 - base_s) / 9000``
  = 63.4 us. The endpoint count per Service is not given in the issue: UNVERIFIED.
* ``per_change_s`` = 2 ms: one ``ipset`` process exec per changed entry. No published figure
  was found with the search tool: UNVERIFIED (an order of magnitude for fork+exec of a small
  binary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from svcsim.sim.synccost import DEFAULT_BASE_S

IPVS_84906_OBJECTS: Final = 1_500 * (4 + 2)
"""The object count this model gives the cluster of kubernetes #84906 (see the docstring)."""
IPVS_84906_DURATION_S: Final = 0.730
"""kubernetes #84906: syncProxyRules with ~1,500 external-IP Services after the fix."""
DEFAULT_IPVS_BASE_S: Final = DEFAULT_BASE_S
DEFAULT_IPVS_PER_OBJECT_S: Final = (
    IPVS_84906_DURATION_S - DEFAULT_IPVS_BASE_S
) / IPVS_84906_OBJECTS
DEFAULT_IPVS_PER_CHANGE_S: Final = 0.002
"""UNVERIFIED: one ``ipset add``/``del`` exec or one netlink call that changes the kernel."""


@dataclass(frozen=True, slots=True)
class IpvsSyncCostModel:
    """``duration_s = base_s + per_object_s x objects + per_change_s x changes``."""

    base_s: float = DEFAULT_IPVS_BASE_S
    per_object_s: float = DEFAULT_IPVS_PER_OBJECT_S
    per_change_s: float = DEFAULT_IPVS_PER_CHANGE_S

    def __post_init__(self) -> None:
        for name in ("base_s", "per_object_s", "per_change_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"negative {name} {getattr(self, name)!r}")

    def duration_s(self, objects: int, changes: int) -> float:
        """How long a sync over ``objects`` that makes ``changes`` kernel changes takes."""
        if objects < 0 or changes < 0:
            raise ValueError(f"negative counts: objects={objects!r}, changes={changes!r}")
        return self.base_s + self.per_object_s * objects + self.per_change_s * changes
