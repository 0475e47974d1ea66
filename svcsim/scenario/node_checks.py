"""The node faults of a timeline, in order: each must find its node in a state it applies to.

``fail-node`` and ``partition-node`` need a node that is up; ``recover-node`` one that has
failed or is partitioned without an end (a ``partition-node`` with ``for`` heals by itself). A
node that has failed runs nothing, so kube-proxy and conntrack actions on it are problems too.
An action on a node at the very instant its partition heals is refused, since which comes
first would be arbitrary. Workloads whose clients are the host or enter through a node that
fails get a warning: they send nothing while it is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
class NodeFaultFindings:
    """Problems and warnings, each at a field path."""

    problems: list[tuple[Loc, str]] = field(default_factory=list)
    warnings: list[tuple[Loc, str]] = field(default_factory=list)


def check_node_faults(scenario: Scenario) -> NodeFaultFindings:
    """Walk the timeline's node faults in order (see the module docstring)."""
    found = NodeFaultFindings()
    state: dict[str, str] = {}
    heals: dict[str, float] = {}
    failed_at: dict[str, tuple[float, int]] = {}
    for index, action in timeline_order(scenario):
        node = getattr(action, "node", None)
        if not isinstance(node, str):
            continue
        path: Loc = ("timeline", index)
        at = action.at_s
        heal = heals.get(node)
        if heal is not None and at > heal + _EPS:
            state.pop(node, None)
            del heals[node]
        elif heal is not None and abs(at - heal) <= _EPS:
            found.problems.append(
                (
                    (*path, "at"),
                    f"node {node}'s partition heals at {format_duration(heal)}, the same "
                    "instant: move this action before or after it",
                )
            )
            continue
        now = state.get(node, "up")
        when = format_duration(at)
        if isinstance(action, tl.FailNode | tl.PartitionNode):
            if now != "up":
                found.problems.append(
                    ((*path, "node"), f"node {node} is already {now} at {when}: recover it first")
                )
                continue
            if isinstance(action, tl.FailNode):
                state[node] = "failed"
                failed_at.setdefault(node, (at, index))
            else:
                state[node] = "partitioned"
                if action.for_s is not None:
                    heals[node] = at + action.for_s
        elif isinstance(action, tl.RecoverNode):
            if now == "up":
                found.problems.append(
                    ((*path, "node"), f"node {node} is up at {when}: nothing to recover from")
                )
            elif node in heals:
                found.problems.append(
                    (
                        (*path, "node"),
                        f"node {node}'s partition heals by itself at "
                        f"{format_duration(heals[node])} (its partition-node has for)",
                    )
                )
            else:
                state.pop(node, None)
        elif isinstance(action, _NEEDS_RUNNING) and now == "failed":
            found.problems.append(
                ((*path, "node"), f"node {node} has failed by {when}: nothing runs there")
            )
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
    return found
