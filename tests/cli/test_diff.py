"""`svcsim diff`: a node's rules against what kube-proxy should have written, per Service."""

# ruff: noqa: E501 - the case tables hold iptables lines and findings as long as they are

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.diff_support import cluster_text, node_dump, run_diff
from tests.netfilter.node_dumps import CLUSTER, DUMPS

WEB_2 = ("podIP: 10.244.2.20", "podIP: 10.244.2.99")
AFFINITY = ("  clusterIP: 10.96.0.50\n", "  clusterIP: 10.96.0.50\n  sessionAffinity: ClientIP\n")
NO_API = ("  name: api\n  namespace: default\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.60", "  name: gone\n  namespace: default\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.70")  # fmt: skip


@pytest.mark.parametrize("name", ["flannel", "cilium"])
def test_a_node_whose_kube_proxy_is_in_sync_agrees(name: str) -> None:
    code, out, _ = run_diff(CLUSTER, DUMPS[name])
    assert code == 0, out
    assert out.splitlines()[-1] == "node-1 agrees with what kube-proxy should have written"


def test_counters_and_rule_order_are_not_differences(tmp_path: Path) -> None:
    text = DUMPS["docker"].read_text().replace("0.0.0.0/0", "0.0.0.0/0")
    lines = text.splitlines()
    services = [i for i, line in enumerate(lines) if "-A KUBE-SERVICES -d 10.96.0" in line]
    first, second = services[:2]
    lines[first], lines[second] = lines[second], lines[first]
    swapped = tmp_path / "swapped.save"
    swapped.write_text("\n".join(lines) + "\n")
    code_a, out_a, _ = run_diff(CLUSTER, DUMPS["docker"])
    code_b, out_b, _ = run_diff(CLUSTER, swapped)
    assert (code_a, out_a) == (code_b, out_b)


@pytest.mark.parametrize(
    ("node_edit", "node_flags", "expected"),
    [
        (WEB_2, (), ["stale endpoint 10.244.2.99:8080", "missing endpoint 10.244.2.20:8080"]),
        (AFFINITY, (), ["session affinity of 10.96.0.50:80/tcp: node ClientIP for 10800 s, kube-proxy none"]),
        (None, ("--masquerade-all",), ["masquerade of 10.96.0.50:80/tcp from a local Pod to 10.244.1.10:8080: node yes, kube-proxy no"]),
        (NO_API, (), ["no rules: the node lets 10.96.0.60:443/tcp from a local Pod through untranslated",
                      "the node still has rules for default/gone:https, a Service port the cluster does not have"]),
    ],
)  # fmt: skip
def test_differences_in_kube_proxys_words(
    tmp_path: Path,
    node_edit: tuple[str, str] | None,
    node_flags: tuple[str, ...],
    expected: list[str],
) -> None:
    dump = node_dump(tmp_path, cluster_text(node_edit), *node_flags)
    code, out, _ = run_diff(CLUSTER, dump)
    assert code == 1
    for text in expected:
        assert text in out, out
    assert out.splitlines()[-1] == "node-1 differs from what kube-proxy should have written"


def test_probability_that_differs(tmp_path: Path) -> None:
    dump = node_dump(tmp_path, cluster_text())
    dump.write_text(
        dump.read_text().replace("--probability 0.50000000000", "--probability 0.25000000000")
    )
    code, out, _ = run_diff(CLUSTER, dump)
    assert code == 1
    assert (
        "probability of 10.244.1.10:8080 for 10.96.0.50:80/tcp from a local Pod: node 0.25, kube-proxy 0.5"
        in out
    )


def test_a_chain_nobody_references(tmp_path: Path) -> None:
    dump = node_dump(tmp_path, cluster_text())
    text = (
        dump.read_text()
        .replace(
            ":KUBE-SERVICES - [0:0]\n:KUBE-SVC",
            ":KUBE-SEP-LEFTOVER1234567 - [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC",
            1,
        )
        .replace(
            "-A KUBE-SERVICES -d 10.96.0.60",
            "-A KUBE-SEP-LEFTOVER1234567 -p tcp -m tcp -j DNAT --to-destination 10.244.9.9:80\n-A KUBE-SERVICES -d 10.96.0.60",
            1,
        )
    )
    dump.write_text(text)
    code, out, _ = run_diff(CLUSTER, dump)
    assert code == 1
    assert "*nat KUBE-SEP-LEFTOVER1234567: no rule jumps to it" in out


def test_other_softwares_drop_on_the_path_is_named() -> None:
    code, out, _ = run_diff(CLUSTER, DUMPS["docker"])
    assert code == 1
    assert (
        "! the node DROPs 10.96.0.60:443/tcp from a local Pod (probability 1): *filter FORWARD policy DROP"
        in out
    )
    assert "default/api:https  (10.96.0.60:443/tcp, NodePort 10.0.0.11:30090/tcp)  DIFFERS" in out


def test_what_svcsim_cannot_know_is_a_condition_not_a_difference() -> None:
    code, out, _ = run_diff(CLUSTER, DUMPS["calico"])
    assert code == 0
    assert (
        "? the node DROPs 10.96.0.60:443/tcp from a local Pod (probability 1): *filter cali-cidr-block rule 1 (line 114)"
        in out
    )
    assert "only if the members of ipset 'cali40blocked-cidrs': yes" in out
    sets = [
        "--ipset=cali40blocked-cidrs=10.244.2.0/24",
        "--ipset=cali40masq-ipam-pools=",
        "--ipset=cali40all-ipam-pools=",
    ]
    code, out, _ = run_diff(CLUSTER, DUMPS["calico"], *sets)
    assert code == 1 and "? " not in out
    assert "! the node DROPs 10.96.0.60:443/tcp from a local Pod (probability 1)" in out


def test_json_holds_the_same_findings() -> None:
    code, out, _ = run_diff(CLUSTER, DUMPS["docker"], "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert data["agrees"] is False
    (api,) = [s for s in data["services"] if s["service"] == "default/api:https"]
    assert any(f["kind"] == "verdict" and f["differs"] for f in api["findings"])


def test_unknown_extensions(tmp_path: Path) -> None:
    text = DUMPS["flannel"].read_text()
    reached = tmp_path / "reached.save"
    reached.write_text(
        text.replace(
            "-A FLANNEL-FWD -s 10.244.0.0/16",
            "-A FLANNEL-FWD -m frob -j ACCEPT\n-A FLANNEL-FWD -s 10.244.0.0/16",
        )
    )
    code, out, err = run_diff(CLUSTER, reached)
    assert code == 2 and out == ""
    assert "-m frob is not known to svcsim, and Service traffic reaches this rule" in err
    elsewhere = tmp_path / "elsewhere.save"
    elsewhere.write_text(
        text.replace(
            "-A INPUT -p udp -m udp --dport 8472",
            "-A INPUT -m frob -j ACCEPT\n-A INPUT -p udp -m udp --dport 8472",
        )
    )
    code, out, err = run_diff(CLUSTER, elsewhere)
    assert code == 0 and "-m frob is not known to svcsim; kept, never evaluated" in err


def test_bad_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.save"
    bad.write_text("*nat\n:PREROUTING ACCEPT [0:0]\n")
    code, out, err = run_diff(CLUSTER, bad)
    assert code == 2 and out == ""
    assert err.startswith(f"{bad}:2: the file ends inside *nat")
