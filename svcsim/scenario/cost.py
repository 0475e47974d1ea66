"""What a run will cost, estimated before it starts, and the limits a scenario must stay under.

A run streams its records to its run folder while it simulates. At record level
``every-request`` it then reads them back whole to build the summary and the figures, so its
peak memory grows with its attempts (:data:`REQUEST_PEAK_BYTES` each). At
``failures-and-aggregates`` the counted attempts stay in their file: the summary, the windows
and the figures fold over it in batches (:mod:`svcsim.results.fold`,
:mod:`svcsim.plots.view`), and what grows with the run is what those outputs keep and the
control plane's records (:data:`COUNTED_REQUEST_PEAK_BYTES` per attempt covers both at the
day benchmark's shape; the failed attempts are kept whole, as at ``every-request``: a run in
which most attempts fail needs up to :data:`REQUEST_PEAK_BYTES` each, which the estimate does
not assume). Two kinds of record grow without bound: request attempts (the workloads'
expected arrivals, :func:`expected_requests`; failed attempts that are retried add more) and
conntrack samples (one per node per simulated second). Nodes cost too, whatever the duration
(each has a kube-proxy, a kernel and series in the figures). :class:`RunCost` turns these
counts into memory and wall time with the figures below, measured on whole ``svcsim run``
invocations by ``benchmarks/record_memory.py`` (``benchmarks/day.py`` for the counted level)
and rounded up. They are what a run needs beyond the ~350 MiB any run takes.

The limits are checked where the scenario is validated (:func:`limit_problems`, called by the
Scenario model), so ``svcsim validate`` and ``svcsim run`` refuse the same files:

* a workload's rate (``rate``, each ``rateSchedule`` step): at most :data:`MAX_RATE_PER_S`;
* the estimated memory: at most :data:`MEMORY_LIMIT_BYTES`;
* nodes: at most :data:`svcsim.scenario.cluster.MAX_NODES` (the cluster section's own check).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from svcsim.results.schema import RecordLevel
from svcsim.scenario.base import Loc
from svcsim.scenario.durations import format_duration

if TYPE_CHECKING:
    from svcsim.scenario.schema import Scenario
    from svcsim.scenario.workload import Workload

GIB: Final = 1 << 30

REQUEST_PEAK_BYTES: Final = 400
"""Peak memory per request attempt (measured: 367-402 bytes between 0.3, 1.2 and 6 million
requests; ~61 of them are the recorder's own arrays, the rest the DataFrames, summary and
Parquet writing that follow)."""
COUNTED_REQUEST_PEAK_BYTES: Final = 50
"""Peak memory per request attempt at record level ``failures-and-aggregates`` (measured with
``benchmarks/day.py``'s shape, 100 nodes x 20 Services: whole-run peaks of 473, 548 and 660 MiB
after 10, 30 and 60 simulated minutes, i.e. 65 bytes per added attempt, of which the
conntrack samples take 16 at :data:`NODE_SECOND_PEAK_BYTES`; of the rest, about two thirds
is the simulation's own growth, a third the control-plane records, per-node intervals and
folded views the analysis and figures keep; the counted attempts themselves are never held)."""
NODE_SECOND_PEAK_BYTES: Final = 160
"""Peak memory per node per simulated second: the conntrack sample every node records each
second (measured: 145-159 bytes per sample)."""
NODE_PEAK_BYTES: Final = 350_000
"""Peak memory per node (measured: ~290 KB per node between 250 and 1,000 nodes; 1.7 GiB at
5,000 nodes)."""
WALL_S_PER_REQUEST: Final = 15e-6
"""Wall time per request attempt: simulating (~1.3 microseconds), then the summary, the
figures and the run folder (measured: 14 microseconds per request between 1.2 and 6 million
requests, on a busy 2-core machine)."""
WALL_S_PER_NODE_SECOND: Final = 2e-6
"""Wall time per node per simulated second of control plane (measured: 1-2 microseconds)."""
WALL_S_PER_NODE: Final = 0.035
"""Wall time per node, mostly the figures' per-node series (measured: 22 ms per node between
250 and 1,000 nodes; 3 min of CPU for 5,000 nodes)."""

MAX_RATE_PER_S: Final = 10_000_000
"""Most requests per second one workload may send: at ~400 bytes each, two simulated seconds
of it reach the memory limit, and the simulation itself runs at about 1 million per second."""
MEMORY_LIMIT_BYTES: Final = 8 * GIB
"""Most memory a run may be estimated to need (about 21 million request attempts): larger
runs are refused before they start."""

PREVIEW_MEMORY_BYTES: Final = 1 * GIB
"""From this estimated memory on, ``svcsim run`` and ``validate`` print the estimate."""
PREVIEW_WALL_S: Final = 60.0
"""From this estimated wall time on, ``svcsim run`` and ``validate`` print the estimate."""


@dataclass(frozen=True, slots=True)
class RunCost:
    """The expected size of a run: request attempts, nodes, node-seconds, and their cost.

    ``requests`` counts first attempts only; ``retries`` says whether failed ones may add
    more (up to ``1 + retries.max`` rows per request while everything fails).
    """

    requests: float
    nodes: int
    duration_s: float
    retries: bool = False
    counted: bool = False
    """Record level ``failures-and-aggregates``: attempts are counted, not kept."""

    @property
    def request_bytes(self) -> int:
        """Peak memory per attempt at the run's record level."""
        return COUNTED_REQUEST_PEAK_BYTES if self.counted else REQUEST_PEAK_BYTES

    @property
    def node_seconds(self) -> float:
        """Nodes times simulated seconds: one conntrack sample each."""
        return self.nodes * self.duration_s

    @property
    def memory_bytes(self) -> float:
        """Estimated peak memory, beyond what any run takes."""
        return (
            self.requests * self.request_bytes
            + self.nodes * NODE_PEAK_BYTES
            + self.node_seconds * NODE_SECOND_PEAK_BYTES
        )

    @property
    def wall_s(self) -> float:
        """Estimated wall time of the whole run."""
        return (
            self.requests * WALL_S_PER_REQUEST
            + self.nodes * WALL_S_PER_NODE
            + self.node_seconds * WALL_S_PER_NODE_SECOND
        )

    @property
    def large(self) -> bool:
        """Whether the run is large enough that the user should see the estimate first."""
        return self.memory_bytes >= PREVIEW_MEMORY_BYTES or self.wall_s >= PREVIEW_WALL_S

    def describe(self) -> str:
        """``~6.0 million requests, 3 nodes, ~2.2 GiB of memory, ~2 min of wall time``."""
        plus = " (+ retries)" if self.retries else ""
        return (
            f"~{_count(self.requests)} requests{plus}, {self.nodes:,} nodes, "
            f"~{_bytes(self.memory_bytes)} of memory, ~{_wall(self.wall_s)} of wall time"
        )


def expected_requests(workload: Workload, duration_s: float) -> float:
    """Expected first attempts of ``workload`` over ``[0, duration_s)``: its rate integrated."""
    if workload.rate_per_s is not None:
        return workload.rate_per_s * duration_s
    steps = workload.rate_schedule or ()
    total = 0.0
    for i, step in enumerate(steps):
        end = steps[i + 1].at_s if i + 1 < len(steps) else duration_s
        total += step.rate_per_s * max(0.0, min(end, duration_s) - step.at_s)
    return total


def estimate(scenario: Scenario) -> RunCost:
    """What running ``scenario`` will cost (see :class:`RunCost`)."""
    return _cost_at(scenario, scenario.duration_s)


def _cost_at(scenario: Scenario, duration_s: float) -> RunCost:
    return RunCost(
        requests=sum(expected_requests(w, duration_s) for w in scenario.workloads),
        nodes=len(scenario.cluster.nodes),
        duration_s=duration_s,
        retries=any(w.retries.max > 0 for w in scenario.workloads),
        counted=scenario.records is RecordLevel.FAILURES_AND_AGGREGATES,
    )


def limit_problems(scenario: Scenario) -> list[tuple[Loc, str]]:
    """The problem of a scenario whose run would exceed the memory limit (none if it fits).

    Blamed on ``duration`` when the file sets it (or has no workload), else on the rate of
    the workload that sends the most; the message gives the longest duration that fits and
    the highest total rate that would.
    """
    cost = estimate(scenario)
    if cost.memory_bytes <= MEMORY_LIMIT_BYTES:
        return []
    duration = scenario.duration_s
    parts = [f"~{_count(cost.requests)} requests"] if cost.requests else []
    parts.append(f"{cost.nodes} nodes x {format_duration(duration)} of conntrack samples")
    fixes = [f"set duration to at most {format_duration(_longest_fitting(scenario))}"]
    other = cost.memory_bytes - cost.requests * cost.request_bytes
    if cost.requests and other < MEMORY_LIMIT_BYTES:
        scale = (MEMORY_LIMIT_BYTES - other) / (cost.requests * cost.request_bytes)
        fixes.append(
            f"lower the rates to at most ~{_count(cost.requests * scale / duration)} "
            f"requests/s in all"
        )
    message = (
        f"the run would need ~{_bytes(cost.memory_bytes)} of memory "
        f"({', '.join(parts)}), over the limit of {_bytes(MEMORY_LIMIT_BYTES)}; "
        f"{' or '.join(fixes)}"
    )
    return [(_blamed(scenario), message)]


def _blamed(scenario: Scenario) -> Loc:
    workloads: Sequence[Workload] = scenario.workloads
    if "duration_s" in scenario.model_fields_set or not workloads:
        return ("duration",)
    counts = [expected_requests(w, scenario.duration_s) for w in workloads]
    i = counts.index(max(counts))
    return ("workloads", i, "rate" if workloads[i].rate_per_s is not None else "rateSchedule")


def _longest_fitting(scenario: Scenario) -> float:
    """The longest duration whose records fit the limit, to 3 significant digits, rounded down."""
    low, high = 0.0, scenario.duration_s  # the cost grows with the duration: bisect
    for _ in range(100):
        middle = (low + high) / 2
        if _cost_at(scenario, middle).memory_bytes <= MEMORY_LIMIT_BYTES:
            low = middle
        else:
            high = middle
    if low <= 0:
        return 0.0
    scale = 10.0 ** (2 - math.floor(math.log10(low)))
    return math.floor(low * scale) / scale


def _count(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} billion"
    if n >= 1e6:
        return f"{n / 1e6:.1f} million"
    return f"{n:,.0f}"


def _bytes(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", GIB), ("MiB", 1 << 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"


def _wall(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
