"""Send one real connection attempt through a node dump loaded into a throw-away namespace.

The node's namespace gets its address on a veth (``eth0``, default route through it), the
dump (counters zeroed) and its ipsets (created empty); then a host process there connects to
the destination once, or - for Pod traffic - a process in a second namespace (the Pod, on the
other end of a veth named as the CNI names it, the node forwarding) does. ``iptables-save -c``
afterwards shows which rules the SYN matched.
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


def kernel_matched_rules(
    dump: str,
    node_ip: str,
    dst: str,
    port: int,
    pod: tuple[str, str] | None = None,
) -> set[MatchedRule]:
    """The rules whose packet counter a connection to ``dst:port`` raised.

    From the node itself, or with ``pod`` = (Pod IP, node-side interface name) from that Pod
    (its gateway is the .1 of the Pod's /24 on that interface).
    """
    with namespace("walk") as name, namespace("pod") as pod_ns:

        def sh(*args: str, stdin: str | None = None, where: str = name) -> str:
            done = subprocess.run(
                ["ip", "netns", "exec", where, *args],
                input=stdin,
                text=True,
                check=True,
                capture_output=True,
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
        client = name
        if pod is not None:
            pod_ip, iface = pod
            gateway = pod_ip.rsplit(".", 1)[0] + ".1"
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
            sh("ip", "link", "add", iface, "type", "veth", "peer", "name", "podeth")
            sh("ip", "link", "set", "podeth", "netns", pod_ns)
            sh("ip", "addr", "add", f"{gateway}/24", "dev", iface)
            sh("ip", "link", "set", iface, "up")
            for args in (
                ("ip", "link", "set", "lo", "up"),
                ("ip", "addr", "add", f"{pod_ip}/24", "dev", "podeth"),
                ("ip", "link", "set", "podeth", "up"),
                ("ip", "route", "add", "default", "via", gateway),
            ):
                sh(*args, where=pod_ns)
            client = pod_ns
        sh("python3", "-c", _CONNECT, dst, str(port), where=client)
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
