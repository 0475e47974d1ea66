"""kube-proxy cut off from the API server: frozen view, then a relist (api_cut / api_back)."""

from __future__ import annotations

from tests.sim.test_kubeproxy import A, B, World, eps, svc

# World: informer sync 2 s, watch delay 0.125 s, minSyncPeriod 1 s, every sync 0.25 s.


def test_changes_made_while_cut_arrive_at_the_relist() -> None:
    w = World()
    w.api.apply("Service", svc("a", "10.96.0.1"))
    w.put(eps("a", ["10.244.2.1", "10.244.2.2"]))
    w.kp.start()
    w.at(10.0, w.kp.api_cut)
    w.at(12.0, lambda: w.put(eps("a", ["10.244.2.2"])))  # one endpoint goes
    w.at(13.0, lambda: w.api.apply("Service", svc("b", "10.96.0.2")))
    w.at(14.0, lambda: w.put(eps("b", ["10.244.2.9"])))
    w.at(40.0, w.kp.api_back)
    w.run(39.0)
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080", "10.244.2.2:8080"]  # frozen
    assert w.kernel_endpoints(B) == []
    w.run(41.0)
    # Relist at 40: the differences become changes at once; the sync runs (minSyncPeriod long
    # past) and ends 0.25 s later.
    assert w.kernel_endpoints(A) == ["10.244.2.2:8080"]
    assert w.kernel_endpoints(B) == ["10.244.2.9:8080"]
    assert [s for s in w.syncs() if 39.0 < s[1] <= 41.0] == [(40.0, 40.25, False, True)]


def test_a_deleted_service_is_noticed_at_the_relist() -> None:
    w = World()
    w.api.apply("Service", svc("a", "10.96.0.1"))
    w.put(eps("a", ["10.244.2.1"]))
    w.kp.start()
    w.at(10.0, w.kp.api_cut)
    w.at(12.0, lambda: w.api.delete("Service", "default/a"))
    w.at(20.0, w.kp.api_back)
    w.run(19.0)
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080"]
    w.run(21.0)
    assert w.kernel_endpoints(A) == []


def test_a_restart_while_cut_lists_only_once_the_api_answers() -> None:
    w = World()
    w.api.apply("Service", svc("a", "10.96.0.1"))
    w.put(eps("a", ["10.244.2.1"]))
    w.kp.start()
    w.at(10.0, w.kp.api_cut)
    w.at(11.0, w.kp.restart)
    w.at(30.0, lambda: w.put(eps("a", ["10.244.2.3"])))
    w.at(50.0, w.kp.api_back)
    w.run(49.0)
    assert not w.kp.initialized  # informer sync ended at 13 with no API to list from
    assert w.kernel_endpoints(A) == ["10.244.2.1:8080"]
    w.run(51.0)
    assert w.kp.initialized
    assert w.kernel_endpoints(A) == ["10.244.2.3:8080"]
    assert [s for s in w.syncs() if s[0] >= 50.0] == [(50.0, 50.25, True, True)]
