"""The Scenario models: defaults, allocation, overrides, references, dumps and JSON Schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from svcsim.scenario import Scenario, scenario_json_schema
from svcsim.scenario.cluster import for_node
from svcsim.scenario.proxy import ProxySettings
from svcsim.scenario.refs import (
    AddressTarget,
    ServiceTarget,
    parse_target,
    resolve_int_or_percent,
)
from svcsim.scenario.workload import KeepAlive, LognormalTime, PerRequest, Udp

BASE: dict[str, Any] = {"apiVersion": "svcsim/v1", "kind": "Scenario"}


def validate(**sections: Any) -> Scenario:
    return Scenario.model_validate({**BASE, **sections}, by_name=False)


def errors(**sections: Any) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as err:
        validate(**sections)
    return [(tuple(e["loc"]), e["msg"]) for e in err.value.errors()]


def test_minimal_scenario_is_fully_defaulted() -> None:
    s = validate()
    assert s.duration_s == 60.0
    assert s.seed is None
    assert [(n.name, n.ip, n.pod_cidr) for n in s.cluster.nodes] == [
        ("node-1", "192.168.0.11", "10.244.0.0/24"),
        ("node-2", "192.168.0.12", "10.244.1.0/24"),
        ("node-3", "192.168.0.13", "10.244.2.0/24"),
    ]
    p = s.cluster.proxy
    assert (p.mode, p.min_sync_period_s, p.sync_period_s) == ("iptables", 1, 30)
    assert p.masquerade_bit == 14
    assert (p.conntrack.max_per_core, p.conntrack.min) == (32768, 131072)
    assert p.conntrack.tcp_established_timeout_s == 86400
    assert s.cluster.delays.kube_proxy_watch_s == {"default": 0.1}


def test_node_list_keeps_given_values_and_allocates_the_rest() -> None:
    s = validate(
        cluster={
            "nodes": [
                {"name": "a", "ip": "192.168.0.50", "zone": "z1", "cpus": 8},
                {"zone": "z2"},
                {"podCIDR": "10.244.9.0/24"},
            ]
        }
    )
    assert [(n.name, n.ip, n.zone, n.cpus, n.pod_cidr) for n in s.cluster.nodes] == [
        ("a", "192.168.0.50", "z1", 8, "10.244.0.0/24"),
        ("node-2", "192.168.0.12", "z2", 4, "10.244.1.0/24"),
        ("node-3", "192.168.0.13", None, 4, "10.244.9.0/24"),
    ]


def test_conntrack_max_follows_kube_proxy() -> None:
    c = validate().cluster.proxy.conntrack
    assert c.max_entries(2) == 131072  # max(32768 * 2, 131072)
    assert c.max_entries(8) == 262144
    zero = validate(cluster={"proxy": {"conntrack": {"maxPerCore": 0}}}).cluster.proxy.conntrack
    assert zero.max_entries(8) is None


def test_per_node_proxy_override_merges_nested_fields() -> None:
    s = validate(
        cluster={
            "proxy": {
                "syncPeriod": "1m",
                "nodes": {"node-3": {"minSyncPeriod": "5s", "conntrack": {"udpTimeout": "10s"}}},
            }
        }
    )
    n3, n1 = s.cluster.proxy.for_node("node-3"), s.cluster.proxy.for_node("node-1")
    assert isinstance(n3, ProxySettings)
    assert (n3.min_sync_period_s, n3.sync_period_s, n3.conntrack.udp_timeout_s) == (5, 60, 10)
    assert n3.conntrack.udp_stream_timeout_s == 120  # untouched sibling of the override
    assert (n1.min_sync_period_s, n1.conntrack.udp_timeout_s) == (1, 30)


def test_per_node_delays() -> None:
    d = validate(cluster={"delays": {"kubeProxyWatch": {"node-3": "2s"}, "podStartup": "3s"}})
    delays = d.cluster.delays
    assert delays.kube_proxy_watch_s == {"default": 0.1, "node-3": 2.0}
    assert delays.pod_startup_s == {"default": 3.0}
    assert for_node(delays.kube_proxy_watch_s, "node-3") == 2.0
    assert for_node(delays.kube_proxy_watch_s, "node-1") == 0.1


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            {"workloads": [{"name": "w", "from": {"host": "node-1"}, "to": "web", "rate": -5}]},
            [(("workloads", 0, "rate"), "Input should be greater than 0")],
        ),
        (
            {
                "duration": "1m",
                "timeline": [{"at": "2m", "action": "crash-proxy", "node": "node-1"}],
            },
            [(("timeline", 0, "at"), "must be <= duration (1m), got 2m")],
        ),
        (
            {"timeline": [{"at": "1s", "action": "drain-node", "node": "node-9"}]},
            [(("timeline", 0, "node"), "unknown node 'node-9' (nodes: node-1, node-2, node-3)")],
        ),
        (
            {"cluster": {"proxy": {"minSyncPeriod": "1m"}}},
            [(("cluster", "proxy", "minSyncPeriod"), "must be <= syncPeriod (30s), got 1m")],
        ),
        (
            {"cluster": {"proxy": {"nodes": {"node-2": {"syncPeriod": "500ms"}}}}},
            [
                (
                    ("cluster", "proxy", "nodes", "node-2", "minSyncPeriod"),
                    "must be <= syncPeriod (500ms), got 1s",
                )
            ],
        ),
        (
            {"cluster": {"proxy": {"nodes": {"node-7": {}}}}},
            [
                (
                    ("cluster", "proxy", "nodes", "node-7"),
                    "unknown node 'node-7' (nodes: node-1, node-2, node-3)",
                )
            ],
        ),
        (
            {"cluster": {"serviceCIDR": "10.244.128.0/17"}},
            [(("cluster", "serviceCIDR"), "overlaps clusterCIDR 10.244.0.0/16")],
        ),
        (
            {"cluster": {"clusterCIDR": "10.0.0.0/25"}},
            [
                (
                    ("cluster", "clusterCIDR"),
                    "must be /24 or larger (each node gets a /24), got 10.0.0.0/25",
                )
            ],
        ),
        (
            {"cluster": {"nodes": [{"ip": "10.244.3.3"}, {"ip": "10.244.3.3"}]}},
            [
                (("cluster", "nodes", 0, "ip"), "10.244.3.3 is inside clusterCIDR 10.244.0.0/16"),
                (("cluster", "nodes", 1, "ip"), "duplicate node IP 10.244.3.3 (also nodes[0])"),
                (("cluster", "nodes", 1, "ip"), "10.244.3.3 is inside clusterCIDR 10.244.0.0/16"),
            ],
        ),
        (
            {"cluster": {"nodes": [{"podCIDR": "10.244.1.0/24"}, {}]}},
            [
                (
                    ("cluster", "nodes", 1, "podCIDR"),
                    "10.244.1.0/24 overlaps nodes[0].podCIDR 10.244.1.0/24",
                )
            ],
        ),
        # .11 .. .14 fit in a /28, .15 is its broadcast address
        (
            {"cluster": {"nodes": 5, "nodeCIDR": "192.168.0.0/28"}},
            [
                (
                    ("cluster", "nodes", 4, "ip"),
                    "no default IP left in nodeCIDR 192.168.0.0/28 for nodes[4] (1 node); "
                    "set cluster.nodeCIDR to a /27 or larger, or set each node's ip",
                )
            ],
        ),
        (
            {
                "workloads": [
                    {"name": "w", "from": {"external": {"node": "x"}}, "to": "web", "rate": 1}
                ]
            },
            [
                (
                    ("workloads", 0, "from", "external", "node"),
                    "unknown node 'x' (nodes: node-1, node-2, node-3)",
                )
            ],
        ),
    ],
)
def test_invalid_values_are_located(
    sections: dict[str, Any], expected: list[tuple[tuple[str | int, ...], str]]
) -> None:
    assert errors(**sections) == expected


def test_checks_run_in_plain_model_validate_too() -> None:
    # Code that builds a Scenario without the loader gets the same cross-section checks.
    found = errors(
        duration="10s",
        timeline=[{"at": "11s", "action": "scale", "deployment": "web", "replicas": 1}],
    )
    assert found == [(("timeline", 0, "at"), "must be <= duration (10s), got 11s")]


def test_snake_case_keys_are_unknown_in_files() -> None:
    assert errors(cluster={"proxy": {"min_sync_period_s": "1s"}}) == [
        (("cluster", "proxy", "min_sync_period_s"), "Extra inputs are not permitted")
    ]


def test_models_are_frozen() -> None:
    s = validate()
    with pytest.raises(ValidationError):
        s.duration_s = 5


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("web", ServiceTarget("default", "web", None)),
        ("web:http", ServiceTarget("default", "web", "http")),
        ("shop/web:8080", ServiceTarget("shop", "web", 8080)),
        ("10.96.0.10:80", AddressTarget("10.96.0.10", 80, "tcp")),
        ("10.244.1.9:53/udp", AddressTarget("10.244.1.9", 53, "udp")),
    ],
)
def test_parse_target(text: str, target: ServiceTarget | AddressTarget) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize(
    "text", ["Web", "web:0", "a/b/c", "10.0.0.300:80", "10.0.0.1:70000", "web:Http", "1web"]
)
def test_parse_target_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_target(text)


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [(2, 10, True, 2), ("25%", 10, True, 3), ("25%", 10, False, 2), ("100%", 3, False, 3)],
)
def test_int_or_percent(value: int | str, total: int, up: bool, expected: int) -> None:
    assert resolve_int_or_percent(value, total, round_up=up) == expected


def test_connection_and_service_time_variants() -> None:
    w = [
        {"name": f"w{i}", "from": {"host": "node-1"}, "to": to, "rate": 1, "connection": c}
        for i, (to, c) in enumerate(
            [
                ("web", {}),
                ("web", {"model": "keepalive"}),
                ("10.0.0.1:53/udp", {"model": "udp", "sourcePort": "fixed"}),
            ]
        )
    ]
    s = validate(
        workloads=w,
        apps={
            "web": {"serviceTime": {"distribution": "lognormal", "median": "10ms", "sigma": 1.0}}
        },
    )
    kinds = [type(x.connection) for x in s.workloads]
    assert kinds == [PerRequest, KeepAlive, Udp]
    assert isinstance(s.workloads[1].connection, KeepAlive)
    assert s.workloads[1].connection.connections == 1
    st = s.apps["web"].service_time
    assert isinstance(st, LognormalTime)
    assert st.mean_s == pytest.approx(0.01 * 1.6487212707)


def test_rate_schedule() -> None:
    w = validate(
        workloads=[
            {
                "name": "w",
                "from": {"host": "node-1"},
                "to": "web",
                "rateSchedule": [{"at": "10s", "rate": 5}, {"at": "20s", "rate": 0}],
            }
        ]
    ).workloads[0]
    assert [w.rate_at(t) for t in (0, 10, 15, 20, 30)] == [0, 5, 5, 0, 0]


FULL: dict[str, Any] = {
    "metadata": {"name": "x", "description": "d"},
    "seed": 7,
    "duration": "90s",
    "cluster": {
        "nodes": 2,
        "proxy": {"nodes": {"node-2": {"minSyncPeriod": "5s", "syncCost": {"perRule": "1ms"}}}},
        "delays": {"kubeProxyWatch": {"node-2": "2s"}},
    },
    "manifests": [{"path": "m.yaml"}, {"inline": "kind: List\n"}],
    "apps": {"web": {"serviceTime": {"distribution": "fixed", "value": "3ms"}}},
    "workloads": [
        {
            "name": "w",
            "from": {"pods": {"app": "fe"}},
            "to": "web:http",
            "rate": 2.5,
            "connection": {"model": "keepalive", "connections": 3},
        }
    ],
    "timeline": [
        {"at": "10s", "action": "rollout", "deployment": "web", "maxSurge": "50%"},
        {"at": "11s", "action": "delete-pod", "selector": {"app": "web"}, "count": 2},
        {"at": "12s", "action": "block-sync", "node": "node-1", "for": "3s"},
        {"at": "13s", "action": "add-service", "manifest": {"inline": "kind: List\n"}},
        {"at": "14s", "action": "flush-conntrack", "node": "node-2", "protocol": "udp"},
    ],
}


@pytest.mark.parametrize("sections", [{}, FULL], ids=["defaults", "full"])
def test_dump_round_trips(sections: dict[str, Any]) -> None:
    s = validate(**sections)
    dumped = s.model_dump(by_alias=True, mode="json")
    again = Scenario.model_validate(yaml.safe_load(yaml.safe_dump(dumped)), by_name=False)
    assert again == s
    assert again.model_dump(by_alias=True, mode="json") == dumped
    json.dumps(dumped)  # JSON-serialisable as the run manifest needs


def test_dump_reads_like_input() -> None:
    dumped = validate(**FULL).model_dump(by_alias=True, mode="json")
    assert dumped["duration"] == "1m30s"
    assert dumped["cluster"]["proxy"]["nodes"] == {
        "node-2": {"minSyncPeriod": "5s", "syncCost": {"perRule": "1ms"}}
    }
    assert dumped["timeline"][2] == {
        "at": "12s",
        "action": "block-sync",
        "node": "node-1",
        "for": "3s",
    }
    assert dumped["workloads"][0]["from"] == {"pods": {"app": "fe"}}
    assert "rateSchedule" not in dumped["workloads"][0]


def test_json_schema_is_json_and_mentions_every_top_level_key() -> None:
    schema = json.loads(json.dumps(scenario_json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:svcsim:")
    assert schema["title"]
    top = set(schema["properties"])
    assert top == {
        "apiVersion",
        "kind",
        "metadata",
        "seed",
        "duration",
        "cluster",
        "manifests",
        "apps",
        "workloads",
        "timeline",
        "records",
    }
    assert set(schema["required"]) == {"apiVersion", "kind"}
    assert schema["additionalProperties"] is False
    text = json.dumps(schema)
    for key in (
        "minSyncPeriod",
        "clusterCIDR",
        "kubeProxyWatch",
        "rateSchedule",
        "inject-stale-rule",
        "drainAfterSigterm",
        "udpStreamTimeout",
    ):
        assert key in text
