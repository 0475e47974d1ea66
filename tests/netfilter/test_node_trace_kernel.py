"""A connection through a real node's rules matches, in the kernel, the rules svcsim's walk
matched (every table, every piece of software's chains), from the node and from a local Pod."""

from __future__ import annotations

import shutil

import pytest

from svcsim.netfilter.branches import trace_branches
from svcsim.netfilter.node_save import parse_node_save
from svcsim.netfilter.other_eval import NodeFacts
from svcsim.netfilter.packet import NodeNetwork, Packet
from tests.netfilter.kernel_iptables import kernel_unavailable
from tests.netfilter.kernel_walk import kernel_matched_rules
from tests.netfilter.node_dumps import DUMPS, set_names

UNAVAILABLE = kernel_unavailable()
NODE_IP = "10.0.0.11"


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"real iptables: {UNAVAILABLE}")
@pytest.mark.parametrize("name", ["calico", "docker", "flannel"])
@pytest.mark.parametrize(("dst", "port"), [("10.96.0.60", 443), ("192.0.2.9", 80)])
def test_the_kernel_matches_the_rules_the_walk_matched(name: str, dst: str, port: int) -> None:
    text = DUMPS[name].read_text()
    if set_names(text) and shutil.which("ipset") is None:
        pytest.skip("the dump's -m set rules need ipset to create the sets (apt-get install ipset)")
    # The namespace's sets are empty: tell the walk so, and nothing is left undecided.
    facts = NodeFacts(ipsets={s: () for s in set_names(text)})
    packet = Packet(NODE_IP, dst, "tcp", port, sport=40000, origin="host")
    network = NodeNetwork((NODE_IP,), pod_cidr="10.244.1.0/24")
    branches = trace_branches(parse_node_save(text).ruleset, packet, network, seed=0, facts=facts)
    (branch,) = branches.branches
    assert branch.trace is not None
    mine = {
        (s.table, s.chain, s.rule) for s in branch.trace.steps if s.kind == "rule" and s.matched
    }
    assert kernel_matched_rules(text, NODE_IP, dst, port) == mine


POD_IP = "10.244.1.5"
POD_INTERFACE = {"calico": "cali1f2e3d4c5b6", "docker": "veth0", "flannel": "veth0"}
"""The node side of the Pod's veth, named as each CNI names it (Calico's rules match cali+)."""


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"real iptables: {UNAVAILABLE}")
@pytest.mark.parametrize("name", ["calico", "docker", "flannel"])
def test_a_pods_connection_matches_the_rules_the_walk_matched(name: str) -> None:
    text = DUMPS[name].read_text()
    if set_names(text) and shutil.which("ipset") is None:
        pytest.skip("the dump's -m set rules need ipset to create the sets (apt-get install ipset)")
    facts = NodeFacts(ipsets={s: () for s in set_names(text)})
    packet = Packet(POD_IP, "10.96.0.60", "tcp", 443, sport=40000, origin="pod")
    network = NodeNetwork((NODE_IP,), pod_interface=POD_INTERFACE[name], pod_cidr="10.244.1.0/24")
    branches = trace_branches(parse_node_save(text).ruleset, packet, network, seed=0, facts=facts)
    # Calico's reverse-path check is a question for svcsim; the namespace's routes pass it.
    (branch,) = [b for b in branches.branches if not any(a.answer for a in b.assumptions)]
    assert branch.trace is not None
    mine = {
        (s.table, s.chain, s.rule) for s in branch.trace.steps if s.kind == "rule" and s.matched
    }
    pod = (POD_IP, POD_INTERFACE[name])
    assert kernel_matched_rules(text, NODE_IP, "10.96.0.60", 443, pod=pod) == mine
