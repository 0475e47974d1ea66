"""`svcsim trace --mode nftables` on the seed article's manifests."""

from __future__ import annotations

import pytest

from tests.cli.test_rules_nftables import EXAMPLES, NFT, NODE, run

POD_TO_CLUSTER_IP = ["--src", "172.200.6.21", "--dst", "10.100.160.92:30080"]


def test_trace_walks_the_hooks_and_ends_with_the_verdict() -> None:
    code, out, err = run("trace", str(EXAMPLES), *NODE, *NFT, *POD_TO_CLUSTER_IP)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "tcp 172.200.6.21:40000 -> 10.100.160.92:30080 from pod"
    headers = [line for line in lines if " / kube-proxy" in line]
    assert headers == [
        "prerouting / kube-proxy",
        "forward / kube-proxy",
        "postrouting / kube-proxy",
    ]
    assert any("numgen random mod 3 vmap" in line and "numgen draw" in line for line in lines)
    assert lines[-1].startswith("verdict: ACCEPT: forwarded to 172.200.")
    assert "(DNAT)" in lines[-1]


def test_the_seed_decides_the_endpoint_and_repeats_exactly() -> None:
    verdicts = set()
    for seed in range(12):
        args = ("trace", str(EXAMPLES), *NODE, *NFT, *POD_TO_CLUSTER_IP, "--seed", str(seed))
        first, again = run(*args), run(*args)
        assert first == again
        verdicts.add(first[1].splitlines()[-1])
    assert len(verdicts) == 3  # three endpoints behind the Service, each reached by some seed


def test_unallocated_cluster_ip_is_dropped_by_the_cluster_ips_check() -> None:
    code, out, _ = run(
        "trace", str(EXAMPLES), *NODE, *NFT, "--src", "172.200.6.21", "--dst", "10.100.0.250:80"
    )
    assert code == 0
    assert "Drop traffic to unallocated ClusterIPs" in out
    assert out.splitlines()[-1] == "verdict: DROP at 10.100.0.250:80"


@pytest.mark.parametrize("switch", ["--no-localhost-nodeports", "--random-fully", "--no-nfacct"])
def test_iptables_only_switches_given_are_warned_about(switch: str) -> None:
    code, _, err = run("trace", str(EXAMPLES), *NODE, *NFT, *POD_TO_CLUSTER_IP, switch)
    assert code == 0
    assert len(err.splitlines()) == 1 and err.endswith(": ignored\n")


def test_no_warning_without_iptables_only_switches() -> None:
    _, _, err = run("trace", str(EXAMPLES), *NODE, *NFT, *POD_TO_CLUSTER_IP)
    assert err == ""
