"""The scenario file: one typed, fully defaulted, frozen :class:`Scenario`.

The models are pydantic v2 (unknown keys refused, camelCase keys as in Kubernetes and
kube-proxy). ``Scenario.model_dump(by_alias=True, mode="json")`` is the fully defaulted
scenario a run manifest stores; validating that dump again gives an equal Scenario.

Kubernetes objects stay raw here (``manifests`` is a list of paths or inline texts);
reading them is the k8s layer's job (see :mod:`svcsim.scenario.load`).

Checks that compare sections (``at`` <= ``duration``, node names that must exist) run once
the sections they compare are valid on their own, so a scenario with a broken ``cluster``
reports that first.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field, StrictInt, StrictStr, ValidationInfo, field_validator, model_validator

from svcsim.results.schema import RecordLevel
from svcsim.scenario.base import Loc, ObjectName, OptionalName, SchemaModel, problems_at
from svcsim.scenario.cluster import Cluster, unknown_node_message
from svcsim.scenario.cost import limit_problems
from svcsim.scenario.durations import PositiveDuration, format_duration
from svcsim.scenario.refs import ManifestRef
from svcsim.scenario.timeline import ACTIONS, Action
from svcsim.scenario.workload import App, Workload

API_VERSION: Final = "svcsim/v1"
KIND: Final = "Scenario"
DEFAULT_DURATION_S: Final = 60.0

UNION_TAGS: Final = frozenset(
    {*ACTIONS, "fixed", "exponential", "lognormal", "per-request", "keepalive", "udp"}
)
"""Tags pydantic puts in error locations of tagged unions (they are not keys of the file)."""

SCHEMA_URI: Final = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID: Final = "urn:svcsim:schema:scenario:v1"
SCHEMA_TITLE: Final = "svcsim scenario (svcsim/v1)"


class Metadata(SchemaModel):
    """Name and description of a scenario."""

    name: OptionalName = ""
    """Scenario name (RFC 1123 subdomain); the loader defaults it to the file name."""
    description: StrictStr = ""
    """Free text."""


class Scenario(SchemaModel):
    """A scenario: a cluster, its Kubernetes objects, its traffic and its timeline."""

    api_version: Literal["svcsim/v1"]
    """Always ``svcsim/v1``."""
    kind: Literal["Scenario"]
    """Always ``Scenario``."""
    metadata: Metadata = Field(default_factory=lambda: Metadata())
    """Name and description."""
    seed: StrictInt | None = Field(default=None, ge=0, lt=2**128)
    """Random seed; when absent the runner draws one and records it in the run manifest."""
    duration_s: PositiveDuration = DEFAULT_DURATION_S
    """Simulated time span."""
    records: RecordLevel = RecordLevel.EVERY_REQUEST
    """What the run folder keeps of the traffic: ``every-request`` (every attempt), or
    ``failures-and-aggregates`` (every failed attempt, and counts of all of them: same
    summary, windows and figures, a much smaller run; docs/results.md)."""
    cluster: Cluster = Field(default_factory=Cluster)
    """Nodes, address ranges, kube-proxy configuration, delays."""
    manifests: tuple[ManifestRef, ...] = ()
    """Kubernetes objects at the start: files (relative to this file) or inline text."""
    apps: dict[ObjectName, App] = Field(default_factory=dict)
    """How each Deployment's process behaves, keyed by Deployment name."""
    workloads: tuple[Workload, ...] = ()
    """Client traffic."""
    timeline: tuple[Action, ...] = ()
    """Events and faults, each at a simulated time."""

    @field_validator("workloads")
    @classmethod
    def _check_workloads(
        cls, workloads: tuple[Workload, ...], info: ValidationInfo
    ) -> tuple[Workload, ...]:
        found: list[tuple[Loc, str]] = []
        nodes = _node_names(info)
        duration = info.data.get("duration_s")
        seen: dict[str, int] = {}
        for i, w in enumerate(workloads):
            if w.name in seen:
                found.append(
                    (
                        (i, "name"),
                        f"duplicate workload name {w.name!r} (also workloads[{seen[w.name]}])",
                    )
                )
            seen.setdefault(w.name, i)
            node = w.source.node()
            if nodes is not None and node is not None and node not in nodes:
                where = ("external", "node") if w.source.external is not None else ("host",)
                found.append(((i, "from", *where), unknown_node_message(node, nodes)))
            for j, step in enumerate(w.rate_schedule or ()):
                if duration is not None and step.at_s > duration:
                    found.append(((i, "rateSchedule", j, "at"), _after_end(step.at_s, duration)))
        if found:
            raise problems_at("workloads", found)
        return workloads

    @field_validator("timeline")
    @classmethod
    def _check_timeline(cls, timeline: tuple[Any, ...], info: ValidationInfo) -> tuple[Any, ...]:
        found: list[tuple[Loc, str]] = []
        nodes = _node_names(info)
        duration = info.data.get("duration_s")
        for i, action in enumerate(timeline):
            if duration is not None and action.at_s > duration:
                found.append(((i, "at"), _after_end(action.at_s, duration)))
            node = getattr(action, "node", None)
            if nodes is not None and node is not None and node not in nodes:
                found.append(((i, "node"), unknown_node_message(node, nodes)))
        if found:
            raise problems_at("timeline", found)
        return timeline

    @model_validator(mode="after")
    def _check_cost(self) -> Scenario:
        # Last: what the run would cost is only known once every section is valid.
        found = limit_problems(self)
        if found:
            raise problems_at("scenario", found)
        return self


def _node_names(info: ValidationInfo) -> tuple[str, ...] | None:
    cluster = info.data.get("cluster")
    return cluster.node_names if isinstance(cluster, Cluster) else None


def _after_end(at_s: float, duration_s: float) -> str:
    return f"must be <= duration ({format_duration(duration_s)}), got {format_duration(at_s)}"


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file, ready for editors (yaml-language-server)."""
    body = Scenario.model_json_schema(by_alias=True)
    return {"$schema": SCHEMA_URI, "$id": SCHEMA_ID, **body, "title": SCHEMA_TITLE}
