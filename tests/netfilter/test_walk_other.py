"""The walk through other software's targets: NOTRACK, CONNMARK, TPROXY, SNAT, REDIRECT, stops."""

from __future__ import annotations

import pytest

from svcsim.netfilter.branches import trace_branches
from svcsim.netfilter.node_save import parse_node_save
from svcsim.netfilter.packet import NodeNetwork, Packet, VerdictKind
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.walk import KernelDecider, StoppedWalkError, walk

NETWORK = NodeNetwork(("10.0.0.11",), pod_cidr="10.244.1.0/24")
POD = Packet("10.244.1.5", "10.96.0.50", "tcp", 80, origin="pod")
DNAT = "-A PREROUTING -d 10.96.0.50/32 -p tcp -j DNAT --to-destination 10.244.2.20:8080\n"


def dump(raw: str = "", mangle: str = "", nat: str = DNAT) -> str:
    return (
        f"*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{raw}COMMIT\n"
        f"*mangle\n:PREROUTING ACCEPT [0:0]\n{mangle}COMMIT\n"
        f"*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        f"{nat}COMMIT\n"
    )


def only_walk(text: str, packet: Packet = POD):  # type: ignore[no-untyped-def]
    (branch,) = trace_branches(parse_node_save(text).ruleset, packet, NETWORK, seed=0).branches
    assert branch.trace is not None
    return branch.trace


@pytest.mark.parametrize("notrack", ["-j NOTRACK", "-j CT --notrack"])
def test_an_untracked_packet_skips_nat(notrack: str) -> None:
    walked = only_walk(dump(raw=f"-A PREROUTING {notrack}\n"))
    assert walked.dnat is None and walked.outcome.destination == ("10.96.0.50", 80)


def test_connmark_save_then_restore_round_trips_the_mark() -> None:
    mangle = (
        "-A PREROUTING -j MARK --set-xmark 0x20/0xffffffff\n"
        "-A PREROUTING -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff\n"
        "-A PREROUTING -j MARK --set-xmark 0x0/0xffffffff\n"
        "-A PREROUTING -m connmark --mark 0x20 -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff\n"  # noqa: E501
    )
    assert only_walk(dump(mangle=mangle)).mark == 0x20


def test_tproxy_branches_on_the_socket_lookup() -> None:
    mangle = "-A PREROUTING -p tcp -j TPROXY --on-port 15001 --on-ip 127.0.0.1 --tproxy-mark 0x200/0xffffffff\n"  # noqa: E501
    found = trace_branches(parse_node_save(dump(mangle=mangle)).ruleset, POD, NETWORK, seed=0)
    yes, no = found.branches
    assert [a.answer for a in yes.assumptions] == [True] and yes.trace is not None
    assert yes.trace.mark == 0x200 and yes.trace.verdict is VerdictKind.ACCEPT
    assert no.trace is not None and no.trace.verdict is VerdictKind.DROP
    assert no.trace.outcome.decided_in == ("mangle", "PREROUTING")


def test_snat_and_redirect() -> None:
    nat = (
        "-A PREROUTING -p tcp --dport 80 -j REDIRECT --to-ports 15001\n"
        "-A POSTROUTING -j SNAT --to-source 10.0.0.11\n"
    )
    walked = only_walk(dump(nat=nat))
    assert walked.outcome.destination == ("10.0.0.11", 15001) and walked.outcome.local


def test_without_a_branching_decider_the_walk_stops_where_it_cannot_decide() -> None:
    text = dump(mangle="-A PREROUTING -m socket --transparent -j DROP\n")
    decider = KernelDecider(None, RecentTable(), 0.0)
    with pytest.raises(StoppedWalkError) as stopped:
        walk(parse_node_save(text).ruleset, POD, NETWORK, decider, record=True)
    assert (stopped.value.table, stopped.value.chain, stopped.value.index) == (
        "mangle",
        "PREROUTING",
        0,
    )
    assert not stopped.value.unknown and "local socket" in stopped.value.reason


def test_a_log_rule_that_cannot_be_decided_changes_nothing_and_asks_nothing() -> None:
    text = dump(mangle='-A PREROUTING -m limit --limit 5/min -j LOG --log-prefix "x: "\n')
    found = trace_branches(parse_node_save(text).ruleset, POD, NETWORK, seed=0)
    (branch,) = found.branches
    assert branch.assumptions == () and branch.trace is not None


def test_a_nat_range_is_a_stop_not_a_guess() -> None:
    nat = "-A PREROUTING -j DNAT --to-destination 10.244.2.20-10.244.2.29:8080\n"
    (branch,) = trace_branches(
        parse_node_save(dump(nat=nat)).ruleset, POD, NETWORK, seed=0
    ).branches
    assert branch.trace is None and branch.stopped is not None
    assert "a NAT choice svcsim cannot make" in branch.stopped.reason
