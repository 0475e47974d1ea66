"""The 5-second DNS delay end to end: exact delays, shares, the fixes, both engines, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest
from rich.console import Console
from typer.testing import CliRunner

from svcsim.cli.main import app
from svcsim.cli.run import print_summary
from svcsim.explain import explain
from svcsim.scenario.errors import ScenarioErrors
from svcsim.scenario.load import load_scenario
from svcsim.scenario.overrides import parse_settings, single_overrides
from svcsim.traffic.engine import TrafficEngine
from svcsim.traffic.reference import ReferenceEngine
from tests.scenarios.conftest import ShippedRun
from tests.scenarios.dns_race_cases import (
    COREDNS_S,
    TEXT,
    TIMEOUT_S,
    WEB_S,
    RaceRun,
    race_run,
)

PROBABILITY = 0.3
"""TEXT's conntrackRace.probability."""
DELAYED_S = TIMEOUT_S + 2 * COREDNS_S + WEB_S
"""A lost query: the timeout, then both queries again one after the other, then web."""


@pytest.fixture(scope="module")
def old_kernel(tmp_path_factory: pytest.TempPathFactory) -> RaceRun:
    return race_run(tmp_path_factory.mktemp("race"), TrafficEngine)


def _of(run: RaceRun, workload: str) -> pd.DataFrame:
    requests = run.requests
    return requests[requests.workload == workload]


def _within(k: int, n: int, p: float) -> bool:
    """``k`` of ``n`` is a plausible binomial(n, p) count (4.5 standard deviations)."""
    return abs(k - n * p) <= 4.5 * np.sqrt(n * p * (1 - p))


def test_a_lost_query_delays_the_lookup_by_exactly_the_timeout(old_kernel: RaceRun) -> None:
    plain = _of(old_kernel, "plain")
    assert (plain.outcome == "ok").all()
    delayed = np.isclose(plain.latency_s, DELAYED_S, rtol=0, atol=1e-9)
    assert np.isclose(plain.latency_s[~delayed], COREDNS_S + WEB_S, rtol=0, atol=1e-9).all()
    # Kernel 4.19 drops every clash: the share is the race probability.
    assert _within(int(delayed.sum()), len(plain), PROBABILITY)
    # Each delay is one dns-retry event of that client, at the request's start + 5 s.
    events = old_kernel.events
    assert len(events) == int(delayed.sum())
    assert sorted(events.object) == sorted("pod/" + plain.client[delayed])
    starts = np.sort(plain.t_s[delayed].to_numpy())
    assert np.allclose(np.sort(events.t_s.astype(float).to_numpy()), starts + TIMEOUT_S)
    assert events.detail.str.contains(r" (?:A|AAAA) query lost in the conntrack insert race \("
                                      "kernel 4.19: before 5.0").all()  # fmt: skip


@pytest.mark.parametrize(
    ("workload", "latency_s"),
    [
        pytest.param("single-request", 2 * COREDNS_S + WEB_S, id="single-request: A then AAAA"),
        pytest.param("single-request-reopen", 2 * COREDNS_S + WEB_S, id="single-request-reopen"),
        pytest.param("use-vc", COREDNS_S + WEB_S, id="use-vc: TCP, both written at once"),
    ],
)
def test_resolver_options_never_race(old_kernel: RaceRun, workload: str, latency_s: float) -> None:
    runs = _of(old_kernel, workload)
    assert len(runs) > 500
    assert np.isclose(runs.latency_s, latency_s, rtol=0, atol=1e-9).all()


def test_explain_names_the_lost_query(shipped_run: ShippedRun) -> None:
    run = shipped_run("dns-5s-delay")
    requests = run.requests
    slow = requests.latency_s.to_numpy() > TIMEOUT_S
    assert (requests.workload[slow] == "glibc").all() and slow.any()
    found = explain(run.path, int(np.flatnonzero(slow)[0]))
    lines = dict((s.title, s.lines) for s in found.steps)[
        "Did the DNS lookup wait for a lost query?"
    ]
    assert len(lines) == 1 and "query lost in the conntrack insert race (kernel 5.4: " in lines[0]
    assert found.cause.startswith("nothing went wrong at the destination, but the DNS lookup")
    assert "retried after 5 s, one query at a time" in found.cause


def test_run_summary_counts_the_delayed_lookups(shipped_run: ShippedRun) -> None:
    run = shipped_run("dns-5s-delay")
    console = Console(record=True, width=250)
    print_summary(run, console)
    delayed = int((run.requests.latency_s > TIMEOUT_S).sum())
    assert delayed > 0
    assert f"DNS: {delayed:,} lookups lost a query to the conntrack insert race" in (
        console.export_text()
    )


def test_both_engines_agree(old_kernel: RaceRun, tmp_path: Path) -> None:
    reference = race_run(tmp_path, ReferenceEngine)
    pd.testing.assert_frame_equal(reference.requests, old_kernel.requests)
    pd.testing.assert_frame_equal(reference.events, old_kernel.events)


@pytest.mark.parametrize(
    ("sets", "share"),
    [
        pytest.param(
            ('cluster.dns.conntrackRace.kernelVersion="5.4"',),
            PROBABILITY / 2,
            id="5.4: only races whose 2 draws picked different CoreDNS Pods (1 in 2)",
        ),
        pytest.param(('cluster.dns.conntrackRace.kernelVersion="6.8"',), 0.0, id="6.8: none"),
        pytest.param(("cluster.dns.nodeLocalCache.enabled=true",), 0.0, id="NodeLocal DNSCache"),
        pytest.param(("cluster.nodes=[{cpus: 1}, {cpus: 1}, {cpus: 1}]",), 0.0, id="1-CPU nodes"),
    ],
)
def test_share_of_delayed_lookups(tmp_path: Path, sets: tuple[str, ...], share: float) -> None:
    run = race_run(tmp_path, TrafficEngine, *sets)
    plain = _of(run, "plain")
    delayed = int((plain.latency_s > TIMEOUT_S).sum())
    assert len(run.events) == delayed
    if share == 0.0:
        assert delayed == 0
    else:
        assert _within(delayed, len(plain), share)


def test_node_local_dns_answers_from_its_cache(tmp_path: Path) -> None:
    run = race_run(tmp_path, TrafficEngine, "cluster.dns.nodeLocalCache.enabled=true")
    requests = run.requests
    assert (requests.outcome == "ok").all()
    # A miss is forwarded to CoreDNS (1 ms; 2 ms when the client asks A, then AAAA); a hit
    # is answered at once. An answer is kept 30 s (the run's length) per node: one miss per
    # node, whichever workload asked first.
    sequential = requests.workload.str.startswith("single-request")
    forward_s = np.where(sequential, 2 * COREDNS_S, COREDNS_S)
    miss = np.isclose(requests.latency_s, forward_s + WEB_S, rtol=0, atol=1e-9)
    hit = np.isclose(requests.latency_s, WEB_S, rtol=0, atol=1e-9)
    assert (miss | hit).all()
    assert int(miss.sum()) == requests.src_node.nunique() == 3
    assert run.events.empty


BAD = [
    pytest.param(
        '    conntrackRace: {probability: 0.3, kernelVersion: "4.19.0-26-amd64"}',
        "    conntrackRace: {probability: -0.1}",
        ":8: cluster.dns.conntrackRace.probability: ",
        id="negative probability",
    ),
    pytest.param(
        '    conntrackRace: {probability: 0.3, kernelVersion: "4.19.0-26-amd64"}',
        "    conntrackRace: {kernelVersion: latest}",
        ":8: cluster.dns.conntrackRace.kernelVersion: not a kernel version",
        id="bad kernel version",
    ),
    pytest.param(
        '    conntrackRace: {probability: 0.3, kernelVersion: "4.19.0-26-amd64"}',
        "    conntrackRace: {kernelVersion: 5.10}",
        ":8: cluster.dns.conntrackRace.kernelVersion: write the kernel version as quoted text, "
        'like "5.1"',
        id="kernel version as a number",
    ),
    pytest.param(
        "dnsConfig: {options: [{name: single-request}]}",
        'dnsConfig: {options: [{name: ndots, value: "five"}]}',
        ": Deployment/default/single-request: spec.template.spec.dnsConfig.options[0].value: "
        "ndots needs a whole number, got 'five'",
        id="bad dnsConfig option value",
    ),
    pytest.param(
        "dnsConfig: {options: [{name: single-request}]}",
        "dnsPolicy: Default",
        ": workloads[1].from.pods: Deployment single-request: dnsPolicy Default does not use "
        "cluster DNS",
        id="dnsPolicy Default",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, command: str, old: str, new: str, message: str
) -> None:
    assert old in TEXT
    path = tmp_path / "bad.yaml"
    path.write_text(TEXT.replace(old, new, 1), encoding="utf-8")
    args = [command, str(path)] + (["--out", str(tmp_path / "out")] if command == "run" else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if "bad.yaml:" in line]
    assert len(lines) == 1, result.output
    assert lines[0].startswith(str(path)) and message in lines[0], result.output
    assert not (tmp_path / "out").exists()


UDP_ONLY_KUBE_DNS = """\
      ---
      apiVersion: v1
      kind: Service
      metadata: {name: kube-dns, namespace: kube-system}
      spec:
        clusterIP: 10.96.0.10
        selector: {k8s-app: kube-dns}
        ports: [{name: dns, protocol: UDP, port: 53}]
"""


@pytest.mark.parametrize(
    ("sets", "warning"),
    [
        pytest.param(
            ("cluster.proxy.mode=ipvs", "cluster.dns.nodeLocalCache.enabled=true"),
            "cluster.dns.nodeLocalCache: IPVS nodes (node-1, node-2, node-3): node-local-dns "
            "cannot take over the kube-dns ClusterIP there; svcsim assumes the kubelet's "
            "clusterDNS is 169.254.20.10",
            id="NodeLocal DNSCache in IPVS mode",
        ),
        pytest.param(
            ("cluster.proxy.mode=userspace",),
            "cluster.dns.conntrackRace: the A/AAAA insert race is simulated on iptables and "
            "nftables nodes only, not on node-1, node-2, node-3",
            id="the race on userspace nodes",
        ),
    ],
)
def test_what_svcsim_assumes_or_leaves_out_is_a_warning(
    tmp_path: Path, sets: tuple[str, ...], warning: str
) -> None:
    path = tmp_path / "race.yaml"
    path.write_text(TEXT, encoding="utf-8")
    loaded = load_scenario(path, overrides=single_overrides(parse_settings(sets)))
    assert [w for w in loaded.warnings if warning in w], loaded.warnings


@pytest.mark.parametrize(
    ("sets", "problem"),
    [
        pytest.param(
            ("cluster.dns.nodeLocalCache.enabled=true",),
            "cluster.dns.nodeLocalCache: node-local-dns forwards to CoreDNS over TCP "
            "(force_tcp), but kube-system/kube-dns has no TCP port 53",
            id="NodeLocal DNSCache",
        ),
        pytest.param(
            (),
            "Deployment use-vc sets use-vc (DNS over TCP), but kube-system/kube-dns has no TCP "
            "port 53",
            id="use-vc",
        ),
    ],
)
def test_dns_over_tcp_needs_kube_dns_tcp_port(
    tmp_path: Path, sets: tuple[str, ...], problem: str
) -> None:
    path = tmp_path / "race.yaml"
    text = TEXT.replace("apps:\n", UDP_ONLY_KUBE_DNS + "apps:\n", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioErrors) as caught:
        load_scenario(path, overrides=single_overrides(parse_settings(sets)))
    assert [p for p in caught.value.problems if problem in p], caught.value.problems
