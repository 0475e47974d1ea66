"""ChangeTracker: tables of watch events -> what a sync takes.

Expected behaviour follows kubernetes pkg/proxy/servicechangetracker.go (Service changes that
undo themselves are dropped), pkg/proxy/endpointslicecache.go (slice pending/applied values) and
pkg/proxy/endpointschangetracker.go (trigger times, ConntrackCleanupRequired).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import simpy

from svcsim.k8s.objects import (
    LAST_CHANGE_TRIGGER_TIME_ANNOTATION,
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    ObjectMeta,
    Protocol,
    Service,
    ServicePort,
)
from svcsim.sim import changes
from svcsim.sim.api import ApiServer, WatchEvent
from svcsim.sim.caches import RunCaches
from svcsim.sim.changes import (
    ENDPOINT_SLICE_KIND,
    SERVICE_KIND,
    ChangeTracker,
    annotation_trigger_time_s,
)


def svc(name: str = "web", port: int = 80, label: str = "") -> Service:
    labels = (("tier", label),) if label else ()
    return Service(
        meta=ObjectMeta(name, labels=labels),
        cluster_ip="10.96.0.10",
        selector=(("app", name),),
        ports=(ServicePort(port, name="http"),),
    )


def eps(
    service: str = "web",
    ips: tuple[str, ...] = ("10.244.1.5",),
    *,
    name: str = "",
    trigger: float | None = None,
    proto: Protocol = Protocol.TCP,
    address_type: str = "IPv4",
    labelled: bool = True,
) -> EndpointSlice:
    annotations = (
        ((LAST_CHANGE_TRIGGER_TIME_ANNOTATION, repr(trigger)),) if trigger is not None else ()
    )
    labels = ((SERVICE_NAME_LABEL, service),) if labelled else ()
    return EndpointSlice(
        meta=ObjectMeta(name or f"{service}-a", labels=labels, annotations=annotations),
        address_type=address_type,
        endpoints=tuple(
            Endpoint((ip,), EndpointConditions(True, True, False), node_name="n2") for ip in ips
        ),
        ports=(EndpointPort(8080, protocol=proto, name="http"),),
    )


Step = Callable[[ChangeTracker], bool]


def add_svc(s: Service) -> Step:
    return lambda t: t.service_update(None, s)


def upd_svc(old: Service, new: Service) -> Step:
    return lambda t: t.service_update(old, new)


def del_svc(s: Service) -> Step:
    return lambda t: t.service_update(s, None)


def put(sl: EndpointSlice) -> Step:
    return lambda t: t.slice_update(sl, removed=False)


def rm(sl: EndpointSlice) -> Step:
    return lambda t: t.slice_update(sl, removed=True)


def take(t: ChangeTracker) -> bool:
    t.take()
    return False


A, B = ("10.244.1.5",), ("10.244.1.6",)


@pytest.mark.parametrize(
    ("steps", "returns", "services", "endpoints", "triggers"),
    [
        # Service add / update / delete.
        ([add_svc(svc())], [True], {"default/web"}, set(), {}),
        # Added then deleted before a sync: the change undid itself.
        ([add_svc(svc()), del_svc(svc())], [True, False], set(), set(), {}),
        # A label change does not change kube-proxy's service-port map.
        (
            [add_svc(svc()), take, upd_svc(svc(), svc(label="x"))],
            [True, False, False],
            set(),
            set(),
            {},
        ),
        # Port change, then back: dropped (first-seen old == latest new).
        (
            [add_svc(svc()), take, upd_svc(svc(), svc(port=81))],
            [True, False, True],
            {"default/web"},
            set(),
            {},
        ),
        (
            [add_svc(svc()), take, upd_svc(svc(), svc(port=81)), upd_svc(svc(port=81), svc())],
            [True, False, True, False],
            set(),
            set(),
            {},
        ),
        # Slices: a new slice is a change, with its trigger time.
        ([put(eps(trigger=5.0))], [True], set(), {"default/web"}, {"default/web": (5.0,)}),
        # Two changes: both trigger times, in order.
        (
            [put(eps(trigger=5.0)), put(eps(ips=B, trigger=6.0))],
            [True, True],
            set(),
            {"default/web"},
            {"default/web": (5.0, 6.0)},
        ),
        # Re-delivery of the identical pending value is no change.
        (
            [put(eps(trigger=5.0)), put(eps(trigger=5.0))],
            [True, False],
            set(),
            {"default/web"},
            {"default/web": (5.0,)},
        ),
        # A -> B -> A inside one sync: still pending (upstream compares with the pending value).
        (
            [put(eps()), take, put(eps(ips=B)), put(eps())],
            [True, False, True, True],
            set(),
            {"default/web"},
            {},
        ),
        # After a sync, the applied value again: no change.
        ([put(eps()), take, put(eps())], [True, False, False], set(), set(), {}),
        # Deleting a slice never seen: nothing to do.
        ([rm(eps())], [False], set(), set(), {}),
        # A deletion discards the Service's pending trigger times.
        (
            [put(eps(trigger=5.0)), take, put(eps(ips=B, trigger=6.0)), rm(eps(ips=B))],
            [True, False, True, True],
            set(),
            {"default/web"},
            {},
        ),
        # Trigger times not after the tracker's start are ignored (start_s=1.0).
        ([put(eps(trigger=1.0))], [True], set(), {"default/web"}, {}),
        # Unlabelled and FQDN slices are ignored.
        ([put(eps(labelled=False))], [False], set(), set(), {}),
        ([put(eps(address_type="FQDN"))], [False], set(), set(), {}),
        # Service and slice changes together; services is their union.
        ([add_svc(svc("api")), put(eps())], [True, True], {"default/api"}, {"default/web"}, {}),
    ],
)
def test_tracker_table(
    steps: list[Step],
    returns: list[bool],
    services: set[str],
    endpoints: set[str],
    triggers: dict[str, tuple[float, ...]],
) -> None:
    t = ChangeTracker("n1", start_s=1.0)
    assert [step(t) for step in steps] == returns
    pending = t.pending()
    assert pending == t.pending()  # pending() clears nothing
    got = t.take()
    assert got.service_changes == services
    assert got.endpoint_changes == endpoints
    assert got.services == services | endpoints
    assert dict(got.trigger_times_s) == triggers
    assert (got.service_changes, got.endpoint_changes) == (
        pending.service_changes,
        pending.endpoint_changes,
    )
    assert not t.take()
    assert not t.has_pending()


@pytest.mark.parametrize(
    ("steps", "required"),
    [
        ([put(eps(proto=Protocol.UDP))], True),
        ([put(eps(proto=Protocol.TCP))], False),
        # A UDP Service losing its last slice: the previous map had UDP.
        ([put(eps(proto=Protocol.UDP)), take, rm(eps(proto=Protocol.UDP))], True),
        # Service changes alone never require it (only the endpoints map result sets it).
        ([add_svc(svc())], False),
        # A UDP slice without endpoints yields no UDP port in the map.
        ([put(eps(ips=(), proto=Protocol.UDP))], False),
    ],
)
def test_conntrack_cleanup_required(steps: list[Step], required: bool) -> None:
    t = ChangeTracker("n1")
    for step in steps:
        step(t)
    assert t.take().conntrack_cleanup_required is required


def test_informer_view_and_watch_events() -> None:
    env = simpy.Environment()
    api = ApiServer(env)
    t = ChangeTracker("n1")
    answers: list[bool] = []

    def handler(event: WatchEvent) -> None:
        answers.append(t.on_event(event))

    api.watch([SERVICE_KIND, ENDPOINT_SLICE_KIND, "Pod"], handler, delay_s=0.5)
    api.apply(SERVICE_KIND, svc())
    api.apply(ENDPOINT_SLICE_KIND, eps())
    env.run(until=1.0)
    assert set(t.services) == {"default/web"}
    assert set(t.slices) == {"default/web-a"}
    version = t.version
    api.delete(ENDPOINT_SLICE_KIND, "default/web-a")
    api.apply("Pod", svc("not-a-pod"))  # other kinds are ignored
    env.run(until=2.0)
    assert answers == [True, True, True, False]
    assert set(t.slices) == set()
    assert t.version > version
    got = t.take()
    # Added and removed before any sync: the slice was pending, so the Service still changed.
    assert got.endpoint_changes == {"default/web"}
    assert got.service_changes == {"default/web"}


def test_earliest_trigger() -> None:
    t = ChangeTracker("n1")
    t.slice_update(eps(trigger=7.0), removed=False)
    t.slice_update(eps(ips=B, trigger=3.0), removed=False)
    got = t.take()
    assert got.earliest_trigger_s("default/web") == 3.0
    assert got.earliest_trigger_s("default/other") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12.5", 12.5),
        ("1970-01-01T00:01:02.25Z", 62.25),  # what the EndpointSlice controller writes
        ("bad", None),
        (None, None),
    ],
)
def test_annotation_trigger_time(text: str | None, value: float | None) -> None:
    annotations = ((LAST_CHANGE_TRIGGER_TIME_ANNOTATION, text),) if text is not None else ()
    sl = EndpointSlice(meta=ObjectMeta("x", annotations=annotations))
    assert annotation_trigger_time_s(sl) == value


def test_custom_trigger_reader() -> None:
    t = ChangeTracker("n1", trigger_time=lambda sl: 42.0)
    t.slice_update(eps(), removed=False)
    assert dict(t.take().trigger_times_s) == {"default/web": (42.0,)}


def test_trackers_of_one_run_read_a_slice_once_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[EndpointSlice] = []
    real = changes.trigger_time_s

    def counted(endpoint_slice: EndpointSlice) -> float | None:
        parsed.append(endpoint_slice)
        return real(endpoint_slice)

    monkeypatch.setattr(changes, "trigger_time_s", counted)
    caches = RunCaches()
    first, second = eps(trigger=5.0), eps(ips=("10.244.1.6",), trigger=6.0)
    shared = [ChangeTracker(f"n{i}", caches=caches) for i in range(3)]
    alone = ChangeTracker("n9")  # its own caches: reads afresh
    for tracker in (*shared, alone):
        assert tracker.slice_update(first, removed=False)
        assert tracker.slice_update(second, removed=False)
    assert len(parsed) == 2 + 2  # once per slice object for the run's trackers, + n9's
    taken = [t.take().trigger_times_s for t in (*shared, alone)]
    assert all(times == {"default/web": (5.0, 6.0)} for times in taken)
    # A tracker with its own trigger-time reader still gets that reader's answers.
    custom = ChangeTracker("n8", caches=caches, trigger_time=lambda _s: 7.0)
    custom.slice_update(first, removed=False)
    assert custom.take().trigger_times_s == {"default/web": (7.0,)}
