"""The Services of a scenario as the API server would store them, over the whole timeline.

Services at the start are admitted in file order, then every ``add-service`` and
``remove-service`` in the order the timeline applies them (by ``at``, ties in file order):
each admission fills in the cluster IP and NodePorts a manifest leaves unset
(:class:`~svcsim.k8s.allocate.ServiceAllocator`), a removal frees them, and an
``add-service`` of a Service that exists is an update that keeps its values. The plan depends
on the scenario only, never on the run's seed, so checking and running see the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from svcsim.k8s.allocate import Allocation, ServiceAllocator
from svcsim.k8s.objects import Service
from svcsim.scenario import timeline as tl
from svcsim.scenario.refs import parse_object_ref
from svcsim.scenario.schema import Scenario


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """Every Service with its allocated values, and what the replay found.

    ``initial`` are the Services at the start; ``added`` maps the index of each
    ``add-service`` action to its Services; ``allocations`` lists every value filled in;
    ``problems`` are problem lines (a given IP or port already in use, a range full).
    ``removed`` maps the index of each ``remove-service`` action to whether a Service of
    that name existed when it ran.
    """

    initial: tuple[Service, ...] = ()
    added: Mapping[int, tuple[Service, ...]] = field(default_factory=dict)
    allocations: tuple[Allocation, ...] = ()
    problems: tuple[str, ...] = ()
    removed: Mapping[int, bool] = field(default_factory=dict)


def timeline_order(scenario: Scenario) -> list[tuple[int, tl.Action]]:
    """The timeline's actions with their indexes, in the order they are applied."""
    return sorted(enumerate(scenario.timeline), key=lambda ia: (ia[1].at_s, ia[0]))


def plan_services(
    scenario: Scenario,
    initial: Sequence[Service],
    added: Mapping[int, Sequence[Service]],
) -> ServicePlan:
    """Admit ``initial`` then replay the timeline's Service actions; see the module docstring.

    ``added`` maps each ``add-service`` index to the Services of its manifest.
    """
    allocator = ServiceAllocator(scenario.cluster.service_cidr)
    current: dict[str, Service] = {}
    allocations: list[Allocation] = []
    problems: list[str] = []

    def admit(svc: Service) -> Service:
        previous = current.pop(svc.meta.key, None)
        if previous is not None:
            allocator.release(previous)
        result = allocator.admit(svc, previous)
        allocations.extend(result.allocations)
        problems.extend(result.problems)
        current[svc.meta.key] = result.service
        return result.service

    start = tuple(admit(svc) for svc in initial)
    admitted: dict[int, tuple[Service, ...]] = {}
    removed: dict[int, bool] = {}
    for index, action in timeline_order(scenario):
        if isinstance(action, tl.AddService):
            admitted[index] = tuple(admit(svc) for svc in added.get(index, ()))
        elif isinstance(action, tl.RemoveService):
            namespace, name = parse_object_ref(action.service, service=True)
            gone = current.pop(f"{namespace}/{name}", None)
            removed[index] = gone is not None
            if gone is not None:
                allocator.release(gone)
    return ServicePlan(start, admitted, tuple(allocations), tuple(problems), removed)
