"""Send one real connection attempt through a node dump loaded into a throw-away namespace.

The namespace gets the node's address on a veth (``eth0``, default route through it), the
dump (counters zeroed) and its ipsets (created empty), then a host process connects to the
destination once; ``iptables-save -c`` afterwards shows which rules the SYN matched. Only host
traffic is sent (OUTPUT, POSTROUTING): the packet needs no second namespace.
"""

from __future__ import annotations

import re
import subprocess

from tests.netfilter.netns import namespace
from tests.netfilter.node_dumps import set_names, without_counters

MatchedRule = tuple[str, str, str]
"""(table, chain, rule as saved)."""

_CONNECT = """
import socket, sys
s = socket.socket(); s.settimeout(0.2)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError:
    pass
"""


def kernel_matched_rules(dump: str, node_ip: str, dst: str, port: int) -> set[MatchedRule]:
    """The rules whose packet counter a host connection to ``dst:port`` raised."""
    with namespace("walk") as name:
        run = ["ip", "netns", "exec", name]

        def sh(*args: str, stdin: str | None = None) -> str:
            done = subprocess.run(
                [*run, *args], input=stdin, text=True, check=True, capture_output=True
            )
            return done.stdout

        sh("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        sh("ip", "link", "set", "peer0", "up")
        sh("ip", "addr", "add", f"{node_ip}/24", "dev", "eth0")
        sh("ip", "link", "set", "eth0", "up")
        sh("ip", "route", "add", "default", "dev", "eth0")
        text = without_counters(dump)
        for ipset in set_names(text):
            sh("ipset", "create", ipset, "hash:net")
        sh("iptables-nft-restore", stdin=text)
        sh("python3", "-c", _CONNECT, dst, str(port))
        saved = sh("iptables-nft-save", "-c")
    matched: set[MatchedRule] = set()
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        hit = re.match(r"^\[(\d+):\d+\] -A (\S+) (.*)$", line)
        if hit and int(hit.group(1)) > 0:
            matched.add((table, hit.group(2), hit.group(3)))
    return matched
