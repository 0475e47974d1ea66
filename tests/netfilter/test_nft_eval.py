"""The nf_tables evaluator: numgen boundaries, affinity sets with timeouts, verdict sources."""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import ServicePort, SessionAffinity
from svcsim.netfilter.nft_eval import DynamicSets, NftWalkError, trace_nft, walk_nft
from svcsim.netfilter.nft_parse import parse_table
from svcsim.netfilter.nft_statements import Dnat, Numgen, ParsedTable
from svcsim.netfilter.nftables import NftChain, NftRule, NftTable
from svcsim.netfilter.numgen import RANDOM_SCALE, first_draw, reciprocal_scale
from svcsim.netfilter.packet import NodeNetwork, Packet, VerdictKind
from svcsim.proxy.nftables import compile_nftables
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, nft_fake_context
from tests.proxy.test_iptables_support import TEST_NODE_IPS, ep, make_service, make_slice, port

NETWORK = NodeNetwork(node_ips=TEST_NODE_IPS)
CLUSTER_IP = "172.30.0.41"


def _table(n: int, affinity_s: int | None = None) -> ParsedTable:
    extra = {}
    if affinity_s is not None:
        extra = {
            "session_affinity": SessionAffinity.CLIENT_IP,
            "session_affinity_timeout_s": affinity_s,
        }
    svc = make_service(
        "ns", "svc", cluster_ip=CLUSTER_IP, ports=(ServicePort(80, name="p"),), **extra
    )
    eps = tuple(ep(f"10.180.0.{i + 1}") for i in range(n))
    table = compile_nftables(
        [svc],
        [make_slice("ns", "svc", eps, (port(80, "p"),))],
        nft_fake_context(),
        FAKE_SERVICE_CIDRS,
    )
    return parse_table(table)


def _endpoint_of_index(table: ParsedTable) -> dict[int, str]:
    """From the table itself: numgen value -> the address its endpoint chain DNATs to."""
    service = next(n for n in table.chains if n.startswith("service-") and "/" in n)
    numgen = next(s for r in table.chains[service] for s in r.statements if isinstance(s, Numgen))
    out = {}
    for k, verdict in numgen.choices:
        dnat = next(
            s
            for r in table.chains[verdict.chain or ""]
            for s in r.statements
            if isinstance(s, Dnat)
        )
        out[k] = dnat.address
    return out


def _picked(table: ParsedTable, r: int, **kw: object) -> str:
    packet = Packet("10.0.0.2", CLUSTER_IP, "tcp", 80)
    outcome, _ = walk_nft(table, packet, NETWORK, draw=lambda: r, **kw)  # type: ignore[arg-type]
    assert outcome.verdict is VerdictKind.ACCEPT and outcome.dnat is not None
    return outcome.dnat[0]


@pytest.mark.parametrize("n", [2, 3, 7, 10])
def test_walk_and_exact_function_agree_at_the_boundaries(n: int) -> None:
    """r = floor(k * 2^32 / N) - 1, +0, +1 and ceil(...) pick the endpoint reciprocal_scale says."""
    table = _table(n)
    endpoint = _endpoint_of_index(table)
    for k in range(n):
        floor = k * RANDOM_SCALE // n
        for r in {floor - 1, floor, floor + 1, first_draw(k, n), first_draw(k, n) - 1}:
            if 0 <= r < RANDOM_SCALE:
                assert _picked(table, r) == endpoint[reciprocal_scale(r, n)], (k, r)
    assert _picked(table, RANDOM_SCALE - 1) == endpoint[n - 1]


def test_affinity_sticks_until_the_timeout_then_numgen_decides_again() -> None:
    table = _table(3, affinity_s=10)
    endpoint = _endpoint_of_index(table)
    sets = DynamicSets()
    first = _picked(table, first_draw(2, 3), sets=sets, now_s=100.0)
    assert first == endpoint[2]
    # Another draw, inside the timeout: the affinity set wins, and refreshes the timeout.
    assert _picked(table, 0, sets=sets, now_s=105.0) == first
    assert _picked(table, 0, sets=sets, now_s=114.9) == first
    assert _picked(table, 0, sets=sets, now_s=124.8) == first
    # Refreshed to expire at 134.8; an element expires when its expiration time is reached
    # (nft_set_elem_expired: time_is_before_eq_jiffies64), so numgen decides again.
    assert _picked(table, 0, sets=sets, now_s=134.8) == endpoint[0]


def test_no_draw_source_is_an_error_when_numgen_is_reached() -> None:
    with pytest.raises(NftWalkError, match="no draw source"):
        walk_nft(_table(2), Packet("10.0.0.2", CLUSTER_IP, "tcp", 80), NETWORK)


@pytest.mark.parametrize(
    ("packet", "verdict", "decided_in"),
    [
        (Packet("10.0.0.2", CLUSTER_IP, "tcp", 81), VerdictKind.REJECT, "cluster-ips-check"),
        (Packet("10.0.0.2", "172.30.9.9", "tcp", 80), VerdictKind.DROP, "cluster-ips-check"),
        (
            Packet("192.168.0.2", CLUSTER_IP, "udp", 80, origin="host"),
            VerdictKind.REJECT,
            "cluster-ips-check",
        ),
        (Packet("10.0.0.2", "8.8.8.8", "tcp", 53), VerdictKind.ACCEPT, None),
    ],
)
def test_verdicts_name_the_chain_that_decided(
    packet: Packet, verdict: VerdictKind, decided_in: str | None
) -> None:
    outcome, _ = walk_nft(_table(1), packet, NETWORK, draw=lambda: 0)
    assert outcome.verdict is verdict
    assert outcome.decided_in == (None if decided_in is None else ("kube-proxy", decided_in))


def test_host_traffic_to_a_local_address_loops_back_without_nat() -> None:
    """A host's packet to its own IP: output, postrouting, then prerouting and input on lo."""
    trace = trace_nft(
        _table(1), Packet("192.168.0.2", "192.168.0.2", "tcp", 22, origin="host"), NETWORK
    )
    hooks = [s.hook for s in trace.steps if s.kind == "rule"]
    assert hooks[0] == "output" and "input" in hooks
    assert not any(s.chain == "nat-prerouting" for s in trace.steps)
    assert trace.outcome.local and trace.outcome.verdict is VerdictKind.ACCEPT
    assert "back in through lo" in trace.format()


def _tiny(rules: tuple[NftRule, ...], chains: tuple[NftChain, ...] = ()) -> ParsedTable:
    base = NftChain("in", "filter", "prerouting", 0)
    return parse_table(NftTable("ip", "t", chains=(base, *chains), rules=rules))


def test_jump_to_missing_chain_and_deep_nesting_are_errors() -> None:
    packet = Packet("10.0.0.2", "10.0.0.3", "tcp", 80)
    with pytest.raises(NftWalkError, match="missing 'nowhere'"):
        walk_nft(_tiny((NftRule("in", "jump nowhere"),)), packet, NETWORK)
    loop = _tiny((NftRule("in", "jump a"), NftRule("a", "jump a")), (NftChain("a"),))
    with pytest.raises(NftWalkError, match="deeper than 16"):
        walk_nft(loop, packet, NETWORK)


def test_return_and_end_of_regular_chain_resume_the_caller() -> None:
    rules = (
        NftRule("in", "jump a"),
        NftRule("in", "mark set mark or 0x2"),
        NftRule("a", "mark set mark or 0x1"),
        NftRule("a", "return"),
        NftRule("a", "drop"),
    )
    outcome, _ = walk_nft(
        _tiny(rules, (NftChain("a"),)), Packet("10.0.0.2", "10.0.0.3", "tcp", 80), NETWORK
    )
    assert outcome.verdict is VerdictKind.ACCEPT and outcome.mark == 0x3
