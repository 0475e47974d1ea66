"""The Services of a scenario as the API server would store them, over the whole timeline.

Services at the start are admitted in file order, then every ``add-service`` and
``remove-service`` in the order the timeline applies them (by ``at``, ties in file order):
each admission fills in the cluster IP and NodePorts a manifest leaves unset
(:class:`~svcsim.k8s.allocate.ServiceAllocator`), a removal frees them, and an
``add-service`` of a Service that exists is an update that keeps its values. The plan depends
on the scenario only, never on the run's seed, so checking and running see the same values.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from svcsim.k8s.allocate import Allocation, ServiceAllocator
from svcsim.k8s.objects import LoadBalancerIngress, Service, ServiceType
from svcsim.scenario import timeline as tl
from svcsim.scenario.refs import ServiceTarget as ServiceTargetRef
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
    balanced = _load_balanced(scenario)
    pool = _ingress_pool(scenario.cluster.load_balancer.ingress_cidr)
    ingress: dict[str, str] = {}

    def admit(svc: Service) -> Service:
        previous = current.pop(svc.meta.key, None)
        if previous is not None:
            allocator.release(previous)
        result = allocator.admit(svc, previous)
        allocations.extend(result.allocations)
        problems.extend(result.problems)
        admitted = result.service
        if admitted.meta.key in balanced and _needs_ingress(admitted):
            ip = ingress.get(admitted.meta.key) or next(pool, None)
            if ip is None:
                cidr = scenario.cluster.load_balancer.ingress_cidr
                problems.append(
                    f"{admitted.meta.source}: Service/{admitted.meta.key}: "
                    f"status.loadBalancer.ingress: no address left in ingressCIDR {cidr}"
                )
                current[svc.meta.key] = admitted
                return admitted
            if admitted.meta.key not in ingress:
                ingress[admitted.meta.key] = ip
                allocations.append(
                    Allocation(
                        admitted.meta.source,
                        admitted.meta.key,
                        "status.loadBalancer.ingress[0].ip",
                        ip,
                        "the cloud's load-balancer controller sets it; svcsim takes the next "
                        "address of cluster.loadBalancer.ingressCIDR",
                    )
                )
            admitted = dataclasses.replace(
                admitted, load_balancer_ingress=(LoadBalancerIngress(ip=ip),)
            )
        current[svc.meta.key] = admitted
        return admitted

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


def _load_balanced(scenario: Scenario) -> set[str]:
    """``namespace/name`` of the Services that workloads reach through their load balancer."""
    keys: set[str] = set()
    for w in scenario.workloads:
        target = w.target
        if w.source.load_balancer is not None and isinstance(target, ServiceTargetRef):
            keys.add(f"{target.namespace}/{target.name}")
    return keys


def _needs_ingress(svc: Service) -> bool:
    """A LoadBalancer Service whose status has no load-balancer IP yet."""
    has_ip = any(i.ip for i in svc.load_balancer_ingress)
    return svc.type is ServiceType.LOAD_BALANCER and not has_ip


def _ingress_pool(cidr: str) -> Iterator[str]:
    """Addresses of ``cidr`` in order (network and broadcast excluded)."""
    for address in ipaddress.ip_network(cidr).hosts():
        yield str(address)
