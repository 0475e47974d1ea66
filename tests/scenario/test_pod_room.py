"""A node holds at most ``maxPods`` Pods and one per free address of its Pod range.

A Deployment larger than the cluster once ended ``svcsim run`` with a traceback ("no free Pod
IP left"); now the Pods that do not fit are not created until room appears (as Pending Pods
wait), and ``validate`` warns before the run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from svcsim.scenario import load_scenario
from svcsim.scenario.build import build_world
from tests.scenario.texts import FRONTEND_2, TO_WEB, WEB, scenario_text, warnings_of


def _manifests(web: int) -> str:
    """:data:`WEB` with ``web`` replicas, and two frontend Pods."""
    return WEB.replace("replicas: 2", f"replicas: {web}") + "---\n" + FRONTEND_2


ROOM = "room for {room} Pods (each node: the smaller of maxPods and its podCIDR's free "


@pytest.mark.parametrize(
    ("cluster", "web", "timeline", "room"),
    [
        ("{nodes: 2}", 2, "", None),
        ("{nodes: [{maxPods: 2}, {maxPods: 1}]}", 2, "", "3"),  # 2 web + 2 frontend > 3
        ("{nodes: [{maxPods: 3}, {maxPods: 2}]}", 2, "", None),  # 4 fit in 5
        # 4 web + 2 frontend fit in 6, but not with a rollout's surge (25 % of 4: 1).
        (
            "{nodes: [{maxPods: 3}, {maxPods: 3}]}",
            4,
            "  - {at: 1s, action: rollout, deployment: web}\n",
            "6",
        ),
        (
            "{nodes: [{maxPods: 5}, {maxPods: 5}]}",
            3,
            "  - {at: 1s, action: scale, deployment: web, replicas: 9}\n",
            "10",
        ),
        # A /29 holds 5 Pods (network, gateway and broadcast addresses excluded).
        ("{nodes: [{podCIDR: 10.244.0.0/29}], clusterCIDR: 10.244.0.0/16}", 4, "", "5"),
    ],
)
def test_validate_warns_when_the_pods_do_not_fit(
    tmp_path: Path, cluster: str, web: int, timeline: str, room: str | None
) -> None:
    text = scenario_text(_manifests(web), TO_WEB, timeline, cluster=cluster)
    warnings = [w for w in warnings_of(tmp_path, text) if "room for" in w]
    if room is None:
        assert warnings == []
    else:
        assert len(warnings) == 1, warnings
        assert f"s.yaml:4: cluster.nodes: {ROOM.format(room=room)}" in warnings[0]


def test_pods_beyond_the_room_wait_unscheduled(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        scenario_text(
            FRONTEND_2 + "---\n" + WEB.replace("replicas: 2", "replicas: 40"),
            TO_WEB,
            cluster="{nodes: [{maxPods: 20}, {podCIDR: 10.244.9.0/28}], "
            "clusterCIDR: 10.244.0.0/16}",
        )
    )
    world = build_world(load_scenario(path), 1)
    world.run()
    pods = world.api.list("Pod")
    per_node = Counter(p.node_name for p in pods)
    # node-1: maxPods 20; node-2: a /28 has 13 Pod addresses. 42 wanted, 33 placed: the two
    # frontend Pods (created first) and 31 of web's.
    assert per_node == {"node-1": 20, "node-2": 13}
    assert sum(p.meta.name.startswith("web-") for p in pods) == 31
    requests = world.recorder.frames()["requests"]
    assert len(requests) > 100 and (requests["outcome"] == "ok").all()
    assert requests["endpoint"].nunique() == 31
