"""CoreDNS's answers: the informer's delay, the per-Pod cache and its TTLs, loadbalance, CNAMEs."""

from __future__ import annotations

import itertools

import pytest
import simpy

from svcsim.k8s.dns import Addresses, NoSuchName
from svcsim.k8s.objects import (
    Endpoint,
    EndpointSlice,
    ObjectMeta,
    Service,
    ServiceType,
)
from svcsim.sim.api import ApiServer
from svcsim.sim.coredns import CoreDns, CoreDnsConfig

WEB = "web.default.svc.cluster.local"
DB = "db.default.svc.cluster.local"


def _slice(name: str, service: str, *ips: str) -> EndpointSlice:
    meta = ObjectMeta(name, labels=(("kubernetes.io/service-name", service),))
    return EndpointSlice(meta, endpoints=tuple(Endpoint((ip,)) for ip in ips))


CACHED = CoreDnsConfig(cache_cluster_domain=True)
"""A plain ``cache 30`` (the Corefile before kubeadm 1.32): the cluster's records cached too."""


def _world(config: CoreDnsConfig = CACHED) -> tuple[simpy.Environment, ApiServer, CoreDns]:
    env = simpy.Environment()
    api = ApiServer(env)
    api.apply("Service", Service(ObjectMeta("web"), cluster_ip="10.96.0.80"))
    api.apply("Service", Service(ObjectMeta("db"), cluster_ip="None"))
    api.apply("EndpointSlice", _slice("db-1", "db", "10.244.0.5", "10.244.1.5", "10.244.2.5"))
    return env, api, CoreDns(api, 0.05, config)


def test_the_informer_sees_changes_one_watch_delay_late() -> None:
    env, api, dns = _world()
    env.run(until=1.0)
    api.apply("Service", Service(ObjectMeta("new"), cluster_ip="10.96.0.90"))
    env.run(until=1.04)
    assert dns.answer("a", "new.default.svc.cluster.local", 1.04, 1).answer == NoSuchName()
    env.run(until=1.06)
    reply = dns.answer("b", "new.default.svc.cluster.local", 1.06, 1)
    assert reply.answer == Addresses(("10.96.0.90",), "default/new", headless=False)
    # Pod a cached its NXDOMAIN (denial is cached too) for the TTL: 30 s.
    assert dns.answer("a", "new.default.svc.cluster.local", 31.03, 1).answer == NoSuchName()
    assert isinstance(dns.answer("a", "new.default.svc.cluster.local", 31.04, 1).answer, Addresses)


@pytest.mark.parametrize(
    ("t_s", "ttl_s"),
    [(10.0, 30), (10.9, 30), (11.0, 29), (25.5, 15), (39.99, 1), (40.0, 30)],
)
def test_a_cached_answer_carries_its_remaining_ttl(t_s: float, ttl_s: int) -> None:
    _, _, dns = _world()
    assert dns.answer("a", WEB, 10.0, 1).ttl_s == 30
    assert dns.answer("a", WEB, t_s, 1).ttl_s == ttl_s


def test_the_cache_holds_answers_for_their_ttl_at_most() -> None:
    env, api, dns = _world(CoreDnsConfig(ttl_s=5, cache_s=30, cache_cluster_domain=True))
    assert dns.answer("a", WEB, 0.0, 1).ttl_s == 5
    api.apply("Service", Service(ObjectMeta("web"), cluster_ip="10.96.0.81"))
    env.run(until=1.0)
    assert dns.answer("a", WEB, 4.99, 1).answer.ips == ("10.96.0.80",)  # type: ignore[union-attr]
    assert dns.answer("a", WEB, 5.0, 1).answer.ips == ("10.96.0.81",)  # type: ignore[union-attr]
    # Another Pod has its own cache.
    assert dns.answer("b", WEB, 1.0, 1).answer.ips == ("10.96.0.81",)  # type: ignore[union-attr]


def test_loadbalance_shuffles_every_answer_from_the_seed() -> None:
    _, _, dns = _world()
    orders = {dns.answer("a", DB, 1.0, seed).answer.ips for seed in range(200)}  # type: ignore[union-attr]
    assert orders == set(itertools.permutations(("10.244.0.5", "10.244.1.5", "10.244.2.5")))
    assert dns.answer("a", DB, 2.0, 7).answer == dns.answer("b", DB, 3.0, 7).answer


def test_cnames_are_followed_in_the_cluster_and_upstream() -> None:
    env, api, dns = _world(CoreDnsConfig(upstream={"api.example.com": "198.51.100.7"}))

    for name, target in (("to-web", WEB), ("to-api", "api.example.com"), ("to-none", "x.invalid")):
        svc = Service(ObjectMeta(name), ServiceType.EXTERNAL_NAME, external_name=target)
        api.apply("Service", svc)
    env.run(until=1.0)
    ask = lambda n: dns.lookup(f"{n}.default.svc.cluster.local")[0]  # noqa: E731
    assert ask("to-web") == Addresses(("10.96.0.80",), "default/web", headless=False)
    assert ask("to-api") == Addresses(("198.51.100.7",), "", headless=False)
    assert ask("to-none") == NoSuchName()


def test_slices_derived_for_the_warm_start_give_way_to_the_controllers() -> None:
    env = simpy.Environment()
    api = ApiServer(env)
    api.apply("Service", Service(ObjectMeta("db"), cluster_ip="None"))
    derived = _slice("db-derived", "db", "10.244.0.5", "10.244.1.5")
    dns = CoreDns(api, 0.05, CoreDnsConfig(), [derived])
    assert set(dns.lookup(DB)[0].ips) == {"10.244.0.5", "10.244.1.5"}  # type: ignore[union-attr]
    api.apply("EndpointSlice", _slice("db-abcde", "db", "10.244.1.5"))
    env.run(until=1.0)
    assert dns.lookup(DB)[0].ips == ("10.244.1.5",)  # type: ignore[union-attr]


def test_kubeadms_corefile_caches_external_names_only() -> None:
    env, api, dns = _world(CoreDnsConfig(upstream={"api.example.com": "198.51.100.7"}))
    assert dns.answer("a", WEB, 1.0, 1).ttl_s == 30
    api.apply("Service", Service(ObjectMeta("web"), cluster_ip="10.96.0.81"))
    env.run(until=2.0)
    # disable success/denial cluster.local: the informer's view at once, full TTL every time.
    reply = dns.answer("a", WEB, 2.0, 1)
    assert reply.answer.ips == ("10.96.0.81",)  # type: ignore[union-attr]
    assert reply.ttl_s == 30
    assert dns.answer("a", "api.example.com", 2.0, 1).ttl_s == 30
    assert dns.answer("a", "api.example.com", 13.5, 1).ttl_s == 19  # cached: 30 - 11
