"""glibc's search order and ndots arithmetic, and the kubernetes plugin's answers."""

from __future__ import annotations

import pytest

from svcsim.k8s.dns import (
    Addresses,
    Alias,
    NoSuchName,
    ResolvConf,
    kubernetes_answer,
    pod_resolv_conf,
    query_names,
    search_plan,
    service_of_name,
)
from svcsim.k8s.objects import (
    Endpoint,
    EndpointConditions,
    EndpointSlice,
    ObjectMeta,
    Service,
    ServiceType,
)

NS = ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")


@pytest.mark.parametrize(
    ("name", "ndots", "expected"),
    [
        # Fewer dots than ndots: the search list first, the name as is last.
        pytest.param("web", 5, [f"web.{d}" for d in NS] + ["web"], id="0-dots"),
        pytest.param("web.prod", 5, [f"web.prod.{d}" for d in NS] + ["web.prod"], id="1-dot"),
        pytest.param(
            "web.default.svc.cluster.local",
            5,
            [f"web.default.svc.cluster.local.{d}" for d in NS] + ["web.default.svc.cluster.local"],
            id="fqdn-4-dots-searched-first",
        ),
        # As many dots as ndots: as is first, then the search list.
        pytest.param("a.b.c.d.e.f", 5, ["a.b.c.d.e.f"] + [f"a.b.c.d.e.f.{d}" for d in NS], id="5"),
        pytest.param("web.prod", 1, ["web.prod"] + [f"web.prod.{d}" for d in NS], id="ndots-1"),
        pytest.param("web", 0, ["web"] + [f"web.{d}" for d in NS], id="ndots-0"),
        # A final dot: absolute, never searched.
        pytest.param(
            "web.default.svc.cluster.local.", 5, ["web.default.svc.cluster.local"], id="dot"
        ),
        pytest.param("WEB", 5, [f"web.{d}" for d in NS] + ["web"], id="case-folded"),
    ],
)
def test_query_names_follow_res_search(name: str, ndots: int, expected: list[str]) -> None:
    conf = ResolvConf(pod_resolv_conf("default").search, ndots=ndots)
    assert list(query_names(name, conf)) == expected


def test_pod_resolv_conf_is_the_kubelets() -> None:
    conf = pod_resolv_conf("shop")
    assert conf.search == ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert (conf.ndots, conf.timeout_s, conf.attempts) == (5, 5.0, 2)


def test_bad_resolver_options_are_refused() -> None:
    with pytest.raises(ValueError, match="bad resolver options"):
        ResolvConf(("x",), attempts=0)


@pytest.mark.parametrize(
    ("qname", "key"),
    [
        ("web.default.svc.cluster.local", "default/web"),
        ("web.svc.cluster.local", None),
        ("a.web.default.svc.cluster.local", None),
        ("web.default.svc.example.org", None),
    ],
)
def test_service_of_name(qname: str, key: str | None) -> None:
    assert service_of_name(qname) == key


def _svc(name: str, cluster_ip: str, external_name: str = "") -> Service:
    kind = ServiceType.EXTERNAL_NAME if external_name else ServiceType.CLUSTER_IP
    return Service(ObjectMeta(name), kind, cluster_ip, external_name=external_name)


def _slice(service: str, *eps: tuple[str, bool | None]) -> EndpointSlice:
    return EndpointSlice(
        meta=ObjectMeta(
            name=f"{service}-x",
            namespace="default",
            labels=(("kubernetes.io/service-name", service),),
        ),
        endpoints=tuple(
            Endpoint(addresses=(ip,), conditions=EndpointConditions(ready=ready))
            for ip, ready in eps
        ),
    )


SERVICES = {
    "default/web": _svc("web", "10.96.0.80"),
    "default/db": _svc("db", "None"),
    "default/empty": _svc("empty", "None"),
    "default/pay": _svc("pay", "", external_name="API.Example.com."),
}
SLICES = {
    "default/db": (
        _slice("db", ("10.244.0.5", True), ("10.244.1.5", None), ("10.244.2.5", False)),
    ),
    "default/empty": (_slice("empty", ("10.244.0.9", False)),),
    "default/web": (_slice("web", ("10.244.0.7", True)),),
}


@pytest.mark.parametrize(
    ("qname", "answer"),
    [
        pytest.param(
            "web.default.svc.cluster.local",
            Addresses(("10.96.0.80",), "default/web", headless=False),
            id="clusterip",
        ),
        pytest.param(
            "db.default.svc.cluster.local",
            Addresses(("10.244.0.5", "10.244.1.5"), "default/db", headless=True),
            id="headless-ready-only",
        ),
        pytest.param("empty.default.svc.cluster.local", NoSuchName(), id="headless-none-ready"),
        pytest.param(
            "pay.default.svc.cluster.local", Alias("api.example.com", "default/pay"), id="cname"
        ),
        pytest.param("nope.default.svc.cluster.local", NoSuchName(), id="unknown"),
        pytest.param("web.default.svc.cluster.local.default.svc.cluster.local", NoSuchName()),
    ],
)
def test_kubernetes_answer(qname: str, answer: object) -> None:
    assert kubernetes_answer(qname, SERVICES, SLICES) == answer


@pytest.mark.parametrize(
    ("name", "as_is_first", "absolute", "searched"),
    [
        ("web", False, False, 3),
        ("a.b.c.d.e", False, False, 3),
        ("a.b.c.d.e.f", True, False, 3),
        ("web.default.svc.cluster.local.", True, True, 0),
    ],
)
def test_search_plan(name: str, as_is_first: bool, absolute: bool, searched: int) -> None:
    plan = search_plan(name, pod_resolv_conf("default"))
    assert (plan.name, plan.as_is_first, plan.absolute) == (name.rstrip("."), as_is_first, absolute)
    assert len(plan.searched) == searched
