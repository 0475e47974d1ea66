"""kube-proxy's faults in IPVS mode: a blocked sync still moves real servers; the graceful
termination manager lives and dies with the process."""

from __future__ import annotations

from pathlib import Path

from tests.traffic.ipvs_cases import ipvs_scenario, run_ipvs

PER_REQUEST = "  - {name: fe, from: {pods: {app: frontend}}, to: web:http, rate: 100}\n"
KEPT = (
    "  - name: kept\n    from: {pods: {app: frontend}}\n    to: web:http\n    rate: 40\n"
    "    connection: {model: keepalive, connections: 4}\n"
)


def _blocked_rollout(tmp_path: Path, mode: str) -> tuple[int, int]:
    """Failed requests and failed syncs of a rollout while every node's syncs are blocked."""
    timeline = (
        "  - {at: 5s, action: block-sync, node: node-1, for: 60s}\n"
        "  - {at: 5s, action: block-sync, node: node-2, for: 60s}\n"
        "  - {at: 10s, action: rollout, deployment: web}\n"
    )
    text = ipvs_scenario(PER_REQUEST, timeline, duration="50s")
    if mode != "ipvs":
        text = text.replace("proxy: {mode: ipvs}", f"proxy: {{mode: {mode}}}")
    path = tmp_path / mode
    path.mkdir()
    run = run_ipvs(path, text)
    requests, syncs = run.requests, run.syncs
    return int((requests["outcome"] != "ok").sum()), int((~syncs["ok"].astype(bool)).sum())


def test_a_blocked_sync_fails_but_still_moves_the_real_servers(tmp_path: Path) -> None:
    # kube-proxy's IPVS sync changes servers and sets before its iptables-restore, which is
    # what the xtables lock blocks: the sync fails, yet traffic follows the rollout. iptables
    # mode installs nothing and its clients meet the replaced Pods.
    ipvs_failed, ipvs_failed_syncs = _blocked_rollout(tmp_path, "ipvs")
    iptables_failed, iptables_failed_syncs = _blocked_rollout(tmp_path, "iptables")
    assert ipvs_failed_syncs > 0 and iptables_failed_syncs > 0
    assert iptables_failed > 100
    assert ipvs_failed < iptables_failed / 10


def test_the_drain_check_dies_with_kube_proxy_and_the_next_life_takes_over(
    tmp_path: Path,
) -> None:
    timeline = (
        "  - {at: 10s, action: fail-readiness, selector: {app: web}, for: 400s}\n"
        "  - {at: 30s, action: crash-proxy, node: node-1}\n"
        "  - {at: 30s, action: crash-proxy, node: node-2}\n"
        "  - {at: 40s, action: scale, deployment: frontend, replicas: 0}\n"
        "  - {at: 250s, action: restart-proxy, node: node-1}\n"
        "  - {at: 250s, action: restart-proxy, node: node-2}\n"
    )
    run = run_ipvs(tmp_path, ipvs_scenario(KEPT, timeline, replicas=2, duration="270s"))
    servers = run.servers
    drained = servers[servers["weight"] == 0]
    assert drained["address"].nunique() == 1
    node, address = drained["node"].iloc[0], drained["address"].iloc[0]
    mine = servers[(servers["node"] == node) & (servers["address"] == address)]
    # Idle from ~160 s (TIME_WAIT over), but no manager runs until the restart: it stays at
    # weight 0; the new process's first sync (informer sync 2 s + the sync) deletes it.
    idle = mine[mine["conns"] == 0]
    assert float(idle["t_s"].min()) < 170.0
    assert (mine.loc[mine["t_s"] < 250.0, "weight"].iloc[-1]) == 0
    assert 250.0 < float(mine["t_s"].max()) + 1.0 <= 254.0
