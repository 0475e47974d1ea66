"""Chain-name hashing and ServicePortName strings (kube-proxy-facts.md §1.3, proxier_test.go)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.k8s.objects import Protocol
from svcsim.proxy.names import (
    ServicePortName,
    _hash16,
    base32_head8,
    cluster_policy_chain,
    endpoint_chain,
    external_chain,
    firewall_chain,
    is_service_chain,
    local_policy_chain,
    port_proto_hash,
)


@pytest.mark.parametrize(
    ("spn", "proto", "expected"),
    [
        # Verified vectors from the facts file, recomputed from proxier_test.go data.
        ("ns1/svc1:p80", "tcp", "XPGD46QRK7WJZT7O"),
        ("ns2/svc2:p80", "tcp", "GNZBNJ2PO5MGZ6GT"),
        ("ns1/svc1", "tcp", "AQI2S6QIMU7PVVRP"),
        # More chain names that appear in upstream expected outputs.
        ("ns5/svc5:p80", "tcp", "NUKIZ6OKUXPJNT4C"),
        ("ns3/svc3:p80", "tcp", "X27LE4BHSL4DOUIK"),
        ("ns4/svc4:p80", "tcp", "4SW47YFZTEDKD3PK"),
        ("ns2/svc2:p8080", "tcp", "2VJB64SDSIJUP5T6"),
        ("ns4/svc4:p8082", "tcp", "EBDQOQU5SJFXRIL3"),
    ],
)
def test_port_proto_hash(spn: str, proto: str, expected: str) -> None:
    assert port_proto_hash(spn, proto) == expected


@pytest.mark.parametrize(
    ("spn", "endpoint", "expected"),
    [
        ("ns1/svc1:p80", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
        ("ns5/svc5:p80", "10.180.0.3:80", "KUBE-SEP-I77PXRDZVX7PMWMN"),
        ("ns1/svc1", "10.0.1.1:80", "KUBE-SEP-3JOIVZTXZZRGORX4"),
        ("ns1/svc1:p80", "10.0.0.0:80", "KUBE-SEP-DKGQUZGBKLTPAR56"),
        ("ns3/svc3:p8081", "203.0.113.4:8081", "KUBE-SEP-RUVVH7YV3PHQBDOS"),
        ("ns4/svc4:p8082", "10.4.0.1:8082", "KUBE-SEP-SU5STNODRYEWJAUF"),
        ("ns3/svc3:p80", "10.0.3.1:80", "KUBE-SEP-BSWRHOQ77KEXZLNL"),
    ],
)
def test_endpoint_chain(spn: str, endpoint: str, expected: str) -> None:
    assert endpoint_chain(spn, "tcp", endpoint) == expected


def test_the_four_service_chains_share_one_hash() -> None:
    spn = ServicePortName("ns2", "svc2", "p80")
    assert (
        spn.cluster_chain
        == cluster_policy_chain("ns2/svc2:p80", "tcp")
        == "KUBE-SVC-GNZBNJ2PO5MGZ6GT"
    )
    assert (
        spn.local_chain == local_policy_chain("ns2/svc2:p80", "TCP") == "KUBE-SVL-GNZBNJ2PO5MGZ6GT"
    )
    assert (
        spn.external_chain
        == external_chain("ns2/svc2:p80", Protocol.TCP)
        == "KUBE-EXT-GNZBNJ2PO5MGZ6GT"
    )
    assert spn.firewall_chain == firewall_chain("ns2/svc2:p80", "tcp") == "KUBE-FW-GNZBNJ2PO5MGZ6GT"


@pytest.mark.parametrize(
    ("spn", "text"),
    [
        (ServicePortName("ns1", "svc1", "p80"), "ns1/svc1:p80"),
        (ServicePortName("ns1", "svc1"), "ns1/svc1"),
        (
            ServicePortName("kube-system", "kube-dns", "dns-tcp", Protocol.TCP),
            "kube-system/kube-dns:dns-tcp",
        ),
    ],
)
def test_service_port_name_text(spn: ServicePortName, text: str) -> None:
    assert spn.text == str(spn) == text


def test_protocol_is_part_of_the_hash_but_not_of_the_text() -> None:
    tcp = ServicePortName("kube-system", "kube-dns", "dns", Protocol.TCP)
    udp = ServicePortName("kube-system", "kube-dns", "dns", Protocol.UDP)
    assert tcp.text == udp.text
    assert tcp != udp
    assert tcp.cluster_chain != udp.cluster_chain
    assert udp.protocol_lower == "udp"


@given(
    st.text(min_size=1, max_size=30),
    st.text(max_size=15),
    st.sampled_from(list(Protocol)),
    st.ip_addresses(v=4),
    st.integers(1, 65535),
)
def test_names_fit_iptables_and_use_base32(
    name: str, port_name: str, proto: Protocol, ip: object, port: int
) -> None:
    spn = ServicePortName("ns", name, port_name, proto)
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    names = [
        spn.cluster_chain,
        spn.local_chain,
        spn.external_chain,
        spn.firewall_chain,
        spn.endpoint_chain(f"{ip}:{port}"),
    ]
    for chain in names:
        assert len(chain) <= 28  # iptables' chain-name limit
        assert set(chain.rsplit("-", 1)[1]) <= alphabet
        assert is_service_chain(chain)
    assert not is_service_chain("KUBE-SERVICES")
    assert not is_service_chain("KUBE-MARK-MASQ")


@given(st.text())
def test_hash_is_base32_of_sha256(text: str) -> None:
    digest = hashlib.sha256(text.encode()).digest()
    assert _hash16.__wrapped__(text) == base64.b32encode(digest).decode()[:16]


@given(st.binary(min_size=5, max_size=40))
def test_base32_head8_is_base32s_first_8(digest: bytes) -> None:
    """The first 8 characters nftables-mode names take, as ``base64.b32encode`` writes them."""
    assert base32_head8(digest) == base64.b32encode(digest).decode()[:8]
