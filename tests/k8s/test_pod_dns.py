"""A Pod's dnsPolicy/dnsConfig: read as the API and glibc read them, merged as the kubelet does."""

from __future__ import annotations

import pytest

from svcsim.k8s.dns import pod_resolv_conf
from svcsim.k8s.errors import ManifestErrors
from svcsim.k8s.load import load_manifest_text
from svcsim.k8s.objects import PodDns


def _pod(spec: str) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: p}}
spec:
{spec}
  containers: [{{name: c, image: c}}]
"""


def _dns(spec: str) -> tuple[PodDns | None, tuple[str, ...]]:
    loaded = load_manifest_text(_pod(spec), "pod.yaml")
    return loaded.pods[0].dns, loaded.warnings


def test_no_dns_fields_leave_the_pod_as_it_was() -> None:
    assert _dns("  hostNetwork: false")[0] is None


def test_options_searches_and_policy_are_read() -> None:
    dns, warnings = _dns(
        """  dnsPolicy: ClusterFirstWithHostNet
  dnsConfig:
    searches: [Corp.Example.]
    options:
      - {name: ndots, value: "2"}
      - {name: single-request-reopen}
      - {name: use-vc}
      - {name: timeout, value: "3"}"""
    )
    assert warnings == ()
    assert dns == PodDns(
        "ClusterFirstWithHostNet",
        (("ndots", "2"), ("single-request-reopen", None), ("use-vc", None), ("timeout", "3")),
        ("corp.example",),
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        pytest.param(
            '{name: ndots, value: "x"}', "ndots needs a whole number, got 'x'", id="ndots x"
        ),
        pytest.param(
            "{name: attempts}", "attempts needs a whole number, got no value", id="no value"
        ),
        pytest.param(
            '{name: timeout, value: "0"}', "timeout must be at least 1, got 0", id="timeout 0"
        ),
        pytest.param(
            '{name: use-vc, value: "yes"}', "use-vc is a flag: it takes no value", id="flag"
        ),
        pytest.param("{name: ndots, value: 2}", "must be a string", id="unquoted number"),
        pytest.param("{value: x}", "options[0].name: required", id="no name"),
    ],
)
def test_bad_options_are_one_line_problems(option: str, message: str) -> None:
    with pytest.raises(ManifestErrors) as caught:
        _dns(f"  dnsConfig:\n    options:\n      - {option}")
    [line] = caught.value.problems
    assert line.startswith("pod.yaml:7: ")
    assert message in line


def test_policy_none_needs_nameservers_and_unknown_policies_are_refused() -> None:
    with pytest.raises(ManifestErrors, match="at least one DNS nameserver"):
        _dns("  dnsPolicy: None")
    with pytest.raises(ManifestErrors, match="must be one of ClusterFirst"):
        _dns("  dnsPolicy: ClusterLast")


@pytest.mark.parametrize(
    ("option", "used"),
    [("ndots:20", "15"), ("timeout:99", "30"), ("attempts:9", "5")],
)
def test_values_past_glibcs_limits_are_capped_with_a_warning(option: str, used: str) -> None:
    name, _, value = option.partition(":")
    dns, warnings = _dns(f'  dnsConfig:\n    options: [{{name: {name}, value: "{value}"}}]')
    assert dns is not None and dns.options == ((name, used),)
    [warning] = warnings
    assert f"{used} is used" in warning


def test_options_svcsim_does_not_model_are_warned_and_ignored() -> None:
    dns, warnings = _dns("  dnsConfig:\n    options: [{name: rotate}, {name: edns0}]")
    assert dns is not None and dns.options == ()
    assert len(warnings) == 2 and all("not simulated" in w for w in warnings)


def test_the_kubelet_merges_dns_config_into_resolv_conf() -> None:
    pod = PodDns(
        options=(("ndots", "2"), ("attempts", "3"), ("ndots", "1"), ("single-request", None)),
        searches=("corp.example", "svc.cluster.local"),
    )
    conf = pod_resolv_conf("shop", pod=pod)
    assert conf.search == (
        "shop.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
        "corp.example",
    )
    assert (conf.ndots, conf.attempts, conf.timeout_s) == (1, 3, 5.0)  # last ndots wins
    assert conf.sequential and not conf.use_vc
    assert pod_resolv_conf("shop") == pod_resolv_conf("shop", pod=PodDns())


def test_extra_nameservers_after_cluster_dns_are_warned_and_ignored() -> None:
    dns, warnings = _dns("  dnsConfig:\n    nameservers: [1.1.1.1]")
    assert dns is not None and dns.nameservers == ("1.1.1.1",)
    [warning] = warnings
    assert "pod.yaml:6: " in warning and "nameservers: svcsim asks only the cluster DNS" in warning
