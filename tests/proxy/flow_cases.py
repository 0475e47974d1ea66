"""Upstream's packet-flow case tables shared by the iptables and nftables flow tests.

kube-proxy's iptables and nftables proxier_test.go use the same inputs and expected outputs for
these tests; both modes' tests read them from here.
"""

from __future__ import annotations

T, F = True, False
Row = tuple[str, bool, bool, bool, str]
"""(address, ready, serving, terminating, "local" or "remote")."""

LOCAL_TERMINATING_CASES: dict[str, tuple[list[Row], str, str]] = {
    "ready endpoints exist": (
        [
            ("10.0.1.1", T, T, F, "local"),
            ("10.0.1.2", T, T, F, "local"),
            ("10.0.1.3", F, T, T, "local"),
            ("10.0.1.4", F, F, T, "local"),
            ("10.0.1.5", T, T, F, "remote"),
        ],
        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
        "10.0.1.1:80, 10.0.1.2:80",
    ),
    "only terminating endpoints exist": (
        [
            ("10.0.1.2", F, T, T, "local"),
            ("10.0.1.3", F, T, T, "local"),
            ("10.0.1.4", F, F, T, "local"),
            ("10.0.1.5", T, T, F, "remote"),
        ],
        "10.0.1.5:80",
        "10.0.1.2:80, 10.0.1.3:80",
    ),
    "terminating endpoints on remote node": (
        [("10.0.1.5", F, T, T, "remote")],
        "10.0.1.5:80",
        "DROP",
    ),
    "no usable endpoints on any node": (
        [("10.0.1.5", F, F, T, "local"), ("10.0.1.5", F, F, T, "remote")],
        "REJECT",
        "REJECT",
    ),
}
"""TestTerminatingEndpointsTrafficPolicyLocal: rows, pod-to-ClusterIP and external-to-LB outputs."""

CLUSTER_TERMINATING_CASES: dict[str, tuple[list[Row], str]] = {
    "ready endpoints exist": (
        [
            ("10.0.1.1", T, T, F, "local"),
            ("10.0.1.2", T, T, F, "local"),
            ("10.0.1.3", F, T, T, "remote"),
            ("10.0.1.4", F, F, T, "remote"),
            ("10.0.1.5", T, T, F, "remote"),
        ],
        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80",
    ),
    "only terminating endpoints exist": (
        [
            ("10.0.1.2", F, T, T, "local"),
            ("10.0.1.3", F, T, T, "local"),
            ("10.0.1.4", F, F, T, "remote"),
            ("10.0.1.5", F, T, T, "remote"),
        ],
        "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80",
    ),
    "terminating endpoints on remote node": ([("10.0.1.5", F, T, T, "remote")], "10.0.1.5:80"),
    "no usable endpoints on any node": (
        [("10.0.1.5", F, F, T, "local"), ("10.0.1.5", F, F, T, "remote")],
        "REJECT",
    ),
}
"""TestTerminatingEndpointsTrafficPolicyCluster: rows and the output of both flows."""


NO_DETECTOR: dict[str, tuple[str | None, bool | None]] = {
    "node to ClusterIP": (None, False),
    "node to ClusterIP with eTP:Local": (None, False),
    "node to ClusterIP with iTP:Local": (None, False),
    "external to ClusterIP": (None, False),
    "external to ClusterIP with eTP:Local": (None, False),
    "external to ClusterIP with iTP:Local": (None, False),
    "pod to NodePort with eTP:Local": ("10.180.0.2:80", None),
    "pod to LB with eTP:Local": ("10.180.0.2:80", None),
}
"""TestInternalExternalMasquerade: the flows whose result differs without a local-traffic
detector, as (output, or None if unchanged; masquerade, or None if unchanged)."""

MASQ_ALL: dict[str, tuple[str | None, bool | None]] = {
    "pod to ClusterIP": (None, True),
    "pod to ClusterIP with eTP:Local": (None, True),
    "pod to ClusterIP with iTP:Local": (None, True),
}
"""The flows whose result differs with masqueradeAll, in the same form."""
