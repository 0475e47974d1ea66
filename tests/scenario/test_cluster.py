"""The cluster section at scale: per-node problems collapsed, the fix computed, no n² checks."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.scenario import ScenarioErrors, load_scenario
from svcsim.scenario.cluster import MAX_NODES
from tests.scenario.validation import problems, validate

NO_IP_5000 = (
    "no default IP left in nodeCIDR 192.168.0.0/24 for nodes[244..4999] (4756 nodes); "
    "set cluster.nodeCIDR to a /19 or larger, or set each node's ip"
)
NO_RANGE_5000 = (
    "no /24 left in clusterCIDR 10.244.0.0/16 for nodes[256..4999] (4744 nodes); "
    "set cluster.clusterCIDR to a /11 or larger, or set each node's podCIDR"
)

CASES = [
    pytest.param(
        {"nodes": MAX_NODES},
        [
            (("cluster", "nodes", 244, "ip"), NO_IP_5000),
            (("cluster", "nodes", 256, "podCIDR"), NO_RANGE_5000),
        ],
        id="max-nodes-default-ranges",
    ),
    # .11 .. .14 fit in a /28, .15 is its broadcast address
    pytest.param(
        {"nodes": 5, "nodeCIDR": "192.168.0.0/28"},
        [
            (
                ("cluster", "nodes", 4, "ip"),
                "no default IP left in nodeCIDR 192.168.0.0/28 for nodes[4] (1 node); "
                "set cluster.nodeCIDR to a /27 or larger, or set each node's ip",
            ),
        ],
        id="one-node-short",
    ),
    pytest.param(
        {"nodes": [{}, {"ip": "192.168.9.1"}, {}, {}], "nodeCIDR": "192.168.0.0/30"},
        [
            (
                ("cluster", "nodes", 0, "ip"),
                "no default IP left in nodeCIDR 192.168.0.0/30 for nodes[0, 2..3] (3 nodes); "
                "set cluster.nodeCIDR to a /28 or larger, or set each node's ip",
            ),
        ],
        id="gaps-where-nodes-set-their-ip",
    ),
    pytest.param(
        {"nodes": 3, "clusterCIDR": "10.0.0.0/25"},
        [
            (
                ("cluster", "clusterCIDR"),
                "must be /24 or larger (each node gets a /24), got 10.0.0.0/25",
            ),
        ],
        id="cluster-cidr-too-small-says-so-once",
    ),
]


@pytest.mark.parametrize(("cluster", "expected"), CASES)
def test_nodes_without_defaults_are_one_problem_per_field(
    cluster: dict[str, Any],
    expected: list[tuple[tuple[str | int, ...], str]],
) -> None:
    assert problems(cluster=cluster) == expected


def test_a_count_points_at_the_count_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("apiVersion: svcsim/v1\nkind: Scenario\ncluster:\n  nodes: 5000\n")
    with pytest.raises(ScenarioErrors) as err:
        load_scenario(path)
    assert err.value.problems == [
        f"{path}:4: cluster.nodes: {NO_IP_5000}",
        f"{path}:4: cluster.nodes: {NO_RANGE_5000}",
    ]


def _suggested(message: str) -> int:
    found = re.search(r"to a /(\d+) or larger", message)
    assert found is not None, message
    return int(found[1])


@pytest.mark.parametrize("count", [257, 300, 1000, MAX_NODES])
def test_the_suggested_ranges_are_the_smallest_that_fit(count: int) -> None:
    (_, no_ip), (_, no_range) = problems(cluster={"nodes": count})
    hosts, pods = _suggested(no_ip), _suggested(no_range)
    ranges = {"nodeCIDR": f"172.16.0.0/{hosts}", "clusterCIDR": f"10.0.0.0/{pods}"}
    assert len(validate(cluster={"nodes": count, **ranges}).cluster.nodes) == count
    for key, smaller in (
        ("nodeCIDR", f"172.16.0.0/{hosts + 1}"),
        ("clusterCIDR", f"10.0.0.0/{pods + 1}"),
    ):
        found = problems(cluster={"nodes": count, **ranges, key: smaller})
        assert len(found) == 1, found


def test_one_shared_pod_range_is_a_few_lines_not_millions() -> None:
    nodes = [{"podCIDR": "10.244.7.0/24"} for _ in range(600)]
    found = problems(cluster={"nodes": nodes, "nodeCIDR": "192.168.0.0/16"})
    assert found == [
        (
            ("cluster", "nodes", i, "podCIDR"),
            "10.244.7.0/24 overlaps nodes[0].podCIDR 10.244.7.0/24"
            + (" (and 595 more like this)" if i == 4 else ""),
        )
        for i in range(1, 5)
    ]


def _overlaps(a: str, b: str) -> bool:
    import ipaddress

    return ipaddress.IPv4Network(a).overlaps(ipaddress.IPv4Network(b))


@settings(deadline=None, max_examples=60)
@given(
    st.lists(st.tuples(st.integers(0, 15), st.sampled_from([22, 23, 24])), min_size=1, max_size=8)
)
def test_every_overlapping_pod_range_is_reported(picks: list[tuple[int, int]]) -> None:
    cidrs = [f"10.244.{(third >> (24 - p)) << (24 - p)}.0/{p}" for third, p in picks]
    nodes = [{"podCIDR": c} for c in cidrs]
    pairs = [
        (i, j)
        for i, j in itertools.combinations(range(len(cidrs)), 2)
        if _overlaps(cidrs[i], cidrs[j])
    ]
    if not pairs:
        validate(cluster={"nodes": nodes})
        return
    found = problems(cluster={"nodes": nodes})
    blamed = set()
    for loc, message in found:
        i = loc[2]
        assert isinstance(i, int)
        j = int(re.findall(r"nodes\[(\d+)\]", message)[0])
        assert j < i and _overlaps(cidrs[i], cidrs[j])
        blamed |= {i, j}
    assert blamed >= {k for pair in pairs for k in pair} or len(found) > 3
