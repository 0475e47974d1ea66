"""The hand-written node dumps in tests/netfilter/nodes/ and helpers to read and compare them.

Each ``*.save`` file is what ``iptables-save`` prints on node-1 of ``cluster.yaml`` running
kube-proxy (iptables mode, ``--cluster-cidr 10.244.0.0/16``) beside one other piece of
software, in the shapes those print: Calico (iptables-nft, ``-c`` counters, the legacy-tables
warning), Flannel (iptables-legacy header), Docker (``-c``), Cilium (raw/mangle/security).
"""

from __future__ import annotations

import re
from pathlib import Path

from svcsim.netfilter.model import Ruleset

NODES = Path(__file__).resolve().parent / "nodes"
CLUSTER = NODES / "cluster.yaml"
DUMPS = {path.stem: path for path in sorted(NODES.glob("*.save"))}
NODE_ARGS = ["--node", "node-1", "--cluster-cidr", "10.244.0.0/16", "--no-nfacct"]
"""How ``svcsim rules`` wrote kube-proxy's part of every dump."""

ChainKey = tuple[str, str]


def chains_of(ruleset: Ruleset) -> dict[ChainKey, tuple[str | None, list[str]]]:
    """Every chain as ``(table, chain) -> (policy, rules as saved)``: order of chains aside."""
    return {
        (t.name, c.name): (c.policy, [r.save_text() for r in c.rules])
        for t in ruleset.tables
        for c in t.chains
    }


def set_names(text: str) -> list[str]:
    """The ipsets a dump's rules name (``--match-set NAME``), each once."""
    return sorted(set(re.findall(r"--match-set (\S+)", text)))


def without_counters(text: str) -> str:
    """The dump as ``iptables-save`` without ``-c`` prints it."""
    text = re.sub(r"^\[\d+:\d+\] ", "", text, flags=re.MULTILINE)
    return re.sub(r"^(:\S+ \S+) \[\d+:\d+\]$", r"\1 [0:0]", text, flags=re.MULTILINE)
