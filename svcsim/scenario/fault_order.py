"""Faults that change state must find their target in a state they apply to, in timeline order.

Nodes: ``fail-node`` and ``partition-node`` need a node that is up; ``recover-node`` one that
has failed or is partitioned without an end (a ``partition-node`` with ``for`` heals by itself).
A node that has failed runs nothing, so kube-proxy and conntrack actions on it are problems too.
Hand-made endpoints outside the Pod network: ``fail-endpoint`` needs one that answers,
``recover-endpoint`` one that is down without an end. An action at the very instant a timed
fault ends is refused, since which comes first would be arbitrary. Workloads whose clients are
a host or enter through a node that fails get a warning: they send nothing while it is down.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from svcsim.k8s.load import Manifests
from svcsim.scenario import timeline as tl
from svcsim.scenario.base import Loc
from svcsim.scenario.durations import format_duration
from svcsim.scenario.schema import Scenario
from svcsim.scenario.service_plan import timeline_order

_NEEDS_RUNNING = (
    tl.CrashProxy,
    tl.RestartProxy,
    tl.BlockSync,
    tl.InjectStaleRule,
    tl.FlushConntrack,
)
"""Actions on a node's own processes or kernel: impossible while the node is down."""
_EPS = 1e-9


@dataclass(slots=True)
class FaultFindings:
    """Problems and warnings, each at a field path."""

    problems: list[tuple[Loc, str]] = field(default_factory=list)
    warnings: list[tuple[Loc, str]] = field(default_factory=list)


@dataclass(slots=True)
class _States:
    """What each target (``node X`` / ``endpoint IP``) is, and when timed faults end."""

    state: dict[str, str] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)

    def at(self, target: str, t_s: float) -> str | float:
        """The target's state at ``t_s`` ("up" unless faulted), or the end time it falls on."""
        end = self.ends.get(target)
        if end is not None and abs(t_s - end) <= _EPS:
            return end
        if end is not None and t_s > end:
            self.state.pop(target, None)
            del self.ends[target]
        return self.state.get(target, "up")


def check_fault_order(scenario: Scenario, outside: frozenset[str] | None = None) -> FaultFindings:
    """Walk the timeline's faults in order (see the module docstring).

    ``outside``: the hand-made endpoint IPs outside the Pod network (None: not known, so
    ``fail-endpoint`` addresses are not checked against them).
    """
    found = FaultFindings()
    states = _States()
    failed_at: dict[str, tuple[float, int]] = {}
    for index, action in timeline_order(scenario):
        path: Loc = ("timeline", index)
        if isinstance(action, tl.FailEndpoint | tl.RecoverEndpoint):
            _endpoint(found, states, path, action, outside)
            continue
        node = getattr(action, "node", None)
        if not isinstance(node, str):
            continue
        target = f"node {node}"
        now = states.at(target, action.at_s)
        if isinstance(now, float):
            _same_instant(found, path, f"node {node}'s partition heals", now)
            continue
        when = format_duration(action.at_s)
        where: Loc = (*path, "node")
        if isinstance(action, tl.FailNode | tl.PartitionNode):
            if now != "up":
                found.problems.append(
                    (where, f"node {node} is already {now} at {when}: recover it first")
                )
            elif isinstance(action, tl.FailNode):
                states.state[target] = "failed"
                failed_at.setdefault(node, (action.at_s, index))
            else:
                states.state[target] = "partitioned"
                if action.for_s is not None:
                    states.ends[target] = action.at_s + action.for_s
        elif isinstance(action, tl.RecoverNode):
            if now == "up":
                found.problems.append(
                    (where, f"node {node} is up at {when}: nothing to recover from")
                )
            elif target in states.ends:
                heal = format_duration(states.ends[target])
                found.problems.append(
                    (
                        where,
                        f"node {node}'s partition heals by itself at {heal} "
                        "(its partition-node has for)",
                    )
                )
            else:
                states.state.pop(target, None)
        elif isinstance(action, tl.TaintNode | tl.UntaintNode):
            key = f"taint {node}"
            tainted = states.state.get(key) == "tainted"
            if isinstance(action, tl.TaintNode) == tainted:
                have = "already has" if tainted else "does not have"
                found.problems.append(
                    (
                        where,
                        f"node {node} {have} the ToBeDeletedByClusterAutoscaler taint at {when}",
                    )
                )
            elif tainted:
                states.state.pop(key, None)
            else:
                states.state[key] = "tainted"
        elif isinstance(action, _NEEDS_RUNNING) and now == "failed":
            found.problems.append((where, f"node {node} has failed by {when}: nothing runs there"))
    _warn_clients(scenario, failed_at, found)
    return found


def outside_addresses(sets: Iterable[Manifests], cluster_cidr: str) -> list[str]:
    """Hand-made endpoint addresses outside the Pod network (``cluster_cidr``), first seen first."""
    pods = ipaddress.ip_network(cluster_cidr)
    out: dict[str, None] = {}
    for m in sets:
        for ip in m.manual_endpoint_ips():
            if ipaddress.ip_address(ip) not in pods:
                out[ip] = None
    return list(out)


def _endpoint(
    found: FaultFindings,
    states: _States,
    path: Loc,
    action: tl.FailEndpoint | tl.RecoverEndpoint,
    outside: frozenset[str] | None,
) -> None:
    ip = action.address
    where: Loc = (*path, "address")
    if outside is not None and ip not in outside:
        known = ", ".join(sorted(outside)) or "none"
        found.problems.append(
            (
                where,
                f"{ip} is not a hand-made endpoint outside the Pod network (those: {known}); "
                "Pods fail with delete-pod, crash-pod or fail-node",
            )
        )
        return
    target = f"endpoint {ip}"
    now = states.at(target, action.at_s)
    if isinstance(now, float):
        _same_instant(found, path, f"endpoint {ip} comes back", now)
        return
    when = format_duration(action.at_s)
    if isinstance(action, tl.FailEndpoint):
        if now != "up":
            found.problems.append((where, f"endpoint {ip} is already down at {when}"))
            return
        states.state[target] = "down"
        if action.for_s is not None:
            states.ends[target] = action.at_s + action.for_s
    elif now == "up":
        found.problems.append((where, f"endpoint {ip} answers at {when}: nothing to recover from"))
    elif target in states.ends:
        back = format_duration(states.ends[target])
        found.problems.append(
            (where, f"endpoint {ip} comes back by itself at {back} (its fail-endpoint has for)")
        )
    else:
        states.state.pop(target, None)


def _same_instant(found: FaultFindings, path: Loc, what: str, end_s: float) -> None:
    """An action at the very instant a timed fault ends: which comes first would be arbitrary."""
    message = (
        f"{what} at {format_duration(end_s)}, the same instant: move this action before or after it"
    )
    found.problems.append(((*path, "at"), message))


def _warn_clients(
    scenario: Scenario, failed_at: dict[str, tuple[float, int]], found: FaultFindings
) -> None:
    for i, workload in enumerate(scenario.workloads):
        source = workload.source
        node = source.node()
        hit = failed_at.get(node) if node is not None else None
        if hit is not None:
            who = "host process sends" if source.host is not None else "external clients send"
            found.warnings.append(
                (
                    ("workloads", i, "from"),
                    f"its {who} nothing through node {node} while that node is down "
                    f"(it fails at {format_duration(hit[0])}, timeline[{hit[1]}])",
                )
            )
