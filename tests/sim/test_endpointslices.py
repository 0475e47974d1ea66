"""EndpointSlice controller (svcsim.sim.endpointslices): contents, trigger times, batching."""

from dataclasses import dataclass, field, replace

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from svcsim.k8s.controllers import ENDPOINTSLICE_CONTROLLER, MANAGED_BY_LABEL, MIRRORING_CONTROLLER
from svcsim.k8s.objects import (
    SERVICE_NAME_LABEL,
    Container,
    ContainerPort,
    Endpoint,
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSlice,
    EndpointSubset,
    ObjectMeta,
    PodTemplate,
    Probe,
    Service,
    ServicePort,
    ServiceType,
)
from svcsim.sim.api import ApiServer, WatchEvent
from svcsim.sim.config import AppProfile, ControlPlaneDelays
from svcsim.sim.endpointslices import (
    EndpointSliceController,
    TriggerTimeMode,
    format_trigger_time,
    parse_trigger_time,
    trigger_time_s,
)
from svcsim.sim.fleet import PodFleet
from svcsim.sim.network import PodNetwork
from svcsim.sim.pods import PodRunner, PodSpec

SERVICE = Service(
    ObjectMeta("web"),
    cluster_ip="10.96.0.10",
    selector=(("app", "web"),),
    ports=(ServicePort(80, target_port=8080),),
)


@dataclass
class World:
    env: simpy.Environment
    api: ApiServer
    fleet: PodFleet
    esc: EndpointSliceController
    writes: list[tuple[float, str, EndpointSlice | None]] = field(default_factory=list)
    events: list[tuple[float, str, str, str, str]] = field(default_factory=list)

    def at(self, t_s: float, action: object) -> None:
        def run() -> simpy.events.ProcessGenerator:
            yield self.env.timeout(t_s - self.env.now)
            action()  # type: ignore[operator]

        self.env.process(run())

    def slices(self) -> list[EndpointSlice]:
        return list(self.api.list("EndpointSlice"))

    def endpoints(self) -> list[Endpoint]:
        return [e for s in self.slices() for e in s.endpoints]

    def pod(self, name: str, **app: float) -> PodRunner:
        container = Container("web", (ContainerPort(8080),), Probe(period_s=1, failure_threshold=2))
        template = PodTemplate((("app", "web"),), (), (container,))
        meta = ObjectMeta(name, labels=(("app", "web"),))
        return self.fleet.start(PodSpec(meta, template, AppProfile("web", **app)), "n1")


def make_world(
    *,
    services: tuple[Service, ...] = (SERVICE,),
    objects: tuple[tuple[str, object], ...] = (),
    mode: TriggerTimeMode = TriggerTimeMode.UPSTREAM,
    max_per_slice: int = 100,
    **delays: float,
) -> World:
    env = simpy.Environment()
    api = ApiServer(env)
    cfg = ControlPlaneDelays(**delays)
    events: list[tuple[float, str, str, str, str]] = []
    fleet = PodFleet(env, api, PodNetwork({"n1": "10.244.1.0/24"}), cfg, lambda *e: None)
    for svc in services:
        api.apply("Service", svc)
    for kind, obj in objects:
        api.apply(kind, obj)  # type: ignore[arg-type]
    esc = EndpointSliceController(
        env,
        api,
        cfg,
        lambda *e: events.append(e),
        max_endpoints_per_slice=max_per_slice,
        trigger_time=mode,
    )
    w = World(env, api, fleet, esc, events=events)

    def on_slice(event: WatchEvent) -> None:
        w.writes.append((event.t_s, event.type.value, event.new))

    api.watch(["EndpointSlice"], on_slice)
    esc.start()
    return w


@pytest.mark.parametrize(
    ("t_s", "text"),
    [
        (0.0, "1970-01-01T00:00:00Z"),
        (12.5, "1970-01-01T00:00:12.5Z"),
        (0.1, "1970-01-01T00:00:00.1Z"),
        (3725.25, "1970-01-01T01:02:05.25Z"),
        (86400.000000001, "1970-01-02T00:00:00.000000001Z"),
    ],
)
def test_trigger_time_text(t_s: float, text: str) -> None:
    assert format_trigger_time(t_s) == text
    assert parse_trigger_time(text) == t_s


@given(st.integers(0, 10**10))
def test_trigger_time_round_trip_to_the_millisecond(ms: int) -> None:
    t_s = ms / 1000
    assert parse_trigger_time(format_trigger_time(t_s)) == t_s


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", 1704067200.0),
        ("1970-01-01T01:00:00.5+01:00", 0.5),
        ("12.25", 12.25),
        ("yesterday", None),
        ("nan", None),
    ],
)
def test_parse_trigger_time(text: str, expected: float | None) -> None:
    assert parse_trigger_time(text) == expected


def conditions(e: Endpoint) -> tuple[bool | None, bool | None, bool | None]:
    c = e.conditions
    return (c.ready, c.serving, c.terminating)


@pytest.mark.parametrize(
    ("mode", "terminating_trigger", "gone_trigger"),
    [(TriggerTimeMode.UPSTREAM, None, None), (TriggerTimeMode.ANY_CHANGE, 10.0, 15.0)],
)
def test_slice_across_a_pod_life(
    mode: TriggerTimeMode, terminating_trigger: float | None, gone_trigger: float | None
) -> None:
    w = make_world(mode=mode, api_watch_s=0.1, pod_startup_s=1.0)
    runner = w.pod("web-1", exit_after_sigterm_s=5.0)  # ready at 1 (probe at container start)
    w.at(10.0, runner.delete)  # draining at once; probes at 10 and 11 fail: not ready at 11
    w.env.run(until=30)
    seen = [
        (round(t, 9), [conditions(e) for e in s.endpoints], trigger_time_s(s))
        for t, kind, s in w.writes
        if s is not None
    ]
    assert seen == (
        [
            (0.0, [], 0.0),  # first sync of a new Service: placeholder, its creation time
            (0.1, [(False, False, False)], 0.0),  # scheduled at 0 (Ready condition set)
            (1.1, [(True, True, False)], 1.0),  # Ready at 1
            (10.1, [(False, True, True)], terminating_trigger),  # terminating
            (11.1, [(False, False, True)], 11.0),  # Ready lost while draining
            (15.1, [], gone_trigger),  # exited at 15: the placeholder again
        ]
    )
    assert [k for _, k, _ in w.writes].count("DELETED") == 2  # endpoint slice <-> placeholder
    details = [(round(e[0], 9), e[4]) for e in w.events]
    assert (1.1, "service=default/web endpoints=1 ready=1 serving=1 terminating=0") in details
    assert (0.1, "service=default/web deleted") in details  # the placeholder went
    assert runner.ip == w.writes[1][2].endpoints[0].addresses[0]  # type: ignore[union-attr]


def test_batching_coalesces_pod_changes_but_not_service_changes() -> None:
    w = make_world(api_watch_s=0.1, endpoint_slice_batch_s=1.0, pod_startup_s=5.0)
    for i, t in enumerate((0.0, 0.3, 0.6)):
        w.at(t, lambda i=i: w.pod(f"web-{i}"))
    labelled = replace(SERVICE, meta=replace(SERVICE.meta, labels=(("team", "a"),)))
    w.at(2.0, lambda: w.api.apply("Service", labelled))
    w.env.run(until=4.9)
    written = [(t, s) for t, _, s in w.writes if s is not None]
    # Placeholder at 0; the three Pods (seen at 0.1, 0.4, 0.7) in one sync at 0.1 + 1.0;
    # the Service change synced as soon as it is seen (2.1), no batch delay.
    assert [t for t, _ in written] == pytest.approx([0.0, 1.1, 2.1])
    assert len(written[1][1].endpoints) == 3
    assert trigger_time_s(written[1][1]) == 0.0  # the earliest change not yet reflected
    assert w.slices()[0].meta.label("team") == "a"


def test_changes_further_apart_than_the_batch_are_separate_syncs() -> None:
    w = make_world(api_watch_s=0.1, endpoint_slice_batch_s=0.5, pod_startup_s=100.0)
    w.at(0.0, lambda: w.pod("web-0"))
    w.at(2.0, lambda: w.pod("web-1"))
    w.env.run(until=5)
    times = [t for t, kind, _ in w.writes if kind != "DELETED"]
    assert times == pytest.approx([0.0, 0.6, 2.6])


def test_unchanged_slices_are_not_rewritten() -> None:
    w = make_world(api_watch_s=0.1, pod_startup_s=1.0)
    w.pod("web-0", startup_s=50.0)  # Running at 1 (phase change), never Ready before 51
    w.env.run(until=40)
    assert [round(t, 6) for t, kind, _ in w.writes if kind != "DELETED"] == [0.0, 0.1]
    assert w.esc.syncs >= 3  # it did look at the Pod's phase change


def test_max_endpoints_per_slice() -> None:
    w = make_world(max_per_slice=2, api_watch_s=0.1)
    for i in range(3):
        w.fleet.start(
            PodSpec(
                ObjectMeta(f"web-{i}", labels=(("app", "web"),)),
                PodTemplate((("app", "web"),), (), (Container("web"),)),
                AppProfile(),
            ),
            "n1",
            running=True,
        )
    w.env.run(until=1)
    assert sorted(len(s.endpoints) for s in w.slices()) == [1, 2]
    assert all(e.conditions.ready for e in w.endpoints())


def test_service_deletion_and_external_name_leave_no_slices() -> None:
    ext = Service(ObjectMeta("ext"), type=ServiceType.EXTERNAL_NAME, external_name="a.example")
    w = make_world(services=(SERVICE, ext), api_watch_s=0.1)
    w.env.run(until=1)
    assert {s.service_name for s in w.slices()} == {"web"}
    w.at(2.0, lambda: w.api.delete("Service", "default/web"))
    w.env.run(until=3)
    assert w.slices() == []
    assert w.events[-1][4] == "service=default/web deleted"


def test_mirrors_legacy_endpoints_of_selector_less_services() -> None:
    bare = Service(ObjectMeta("db"), cluster_ip="10.96.0.20", ports=(ServicePort(5432),))
    ep = Endpoints(
        ObjectMeta("db"),
        (EndpointSubset((EndpointAddress("192.0.2.10"),), (), (EndpointPort(5432),)),),
    )
    w = make_world(services=(SERVICE, bare), objects=(("Endpoints", ep),), api_watch_s=0.1)
    w.env.run(until=1)
    (mirrored,) = [s for s in w.slices() if s.service_name == "db"]
    assert mirrored.meta.label(MANAGED_BY_LABEL) == MIRRORING_CONTROLLER
    assert [e.addresses for e in mirrored.endpoints] == [("192.0.2.10",)]
    assert trigger_time_s(mirrored) is None
    moved = replace(
        ep,
        subsets=(EndpointSubset((EndpointAddress("192.0.2.11"),), (), (EndpointPort(5432),)),),
    )
    w.at(2.0, lambda: w.api.apply("Endpoints", moved))
    w.at(4.0, lambda: w.api.delete("Service", "default/db"))
    w.env.run(until=3)
    (mirrored,) = [s for s in w.slices() if s.service_name == "db"]
    assert [e.addresses for e in mirrored.endpoints] == [("192.0.2.11",)]
    w.env.run(until=5)
    assert [s.service_name for s in w.slices()] == ["web"]


def test_adopts_managed_slices_and_leaves_hand_made_ones() -> None:
    def stale(name: str, manager: str | None) -> EndpointSlice:
        labels = {SERVICE_NAME_LABEL: "web"}
        if manager is not None:
            labels[MANAGED_BY_LABEL] = manager
        return EndpointSlice(
            ObjectMeta(name, labels=tuple(sorted(labels.items()))),
            endpoints=(Endpoint(("10.244.9.9",)),),
            ports=(EndpointPort(8080),),
        )

    objects = (
        ("EndpointSlice", stale("web-zzzzz", ENDPOINTSLICE_CONTROLLER)),
        ("EndpointSlice", stale("web-manual", None)),
    )
    w = make_world(objects=objects, api_watch_s=0.1)
    w.env.run(until=1)
    names = sorted(s.meta.name for s in w.slices())
    assert "web-zzzzz" not in names and "web-manual" in names and len(names) == 2
