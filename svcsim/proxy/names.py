"""kube-proxy's names: ServicePortName strings and the hashed iptables chain names.

Everything here mirrors kubernetes ``pkg/proxy/iptables/proxier.go`` @531be812
(``portProtoHash``, ``servicePortPolicyClusterChain``, ``servicePortPolicyLocalChainName``,
``serviceFirewallChainName``, ``serviceExternalChainName``, ``servicePortEndpointChainName``)
and ``pkg/proxy/types.go`` (``ServicePortName.String``). A chain name is a fixed prefix plus the
first 16 characters of the RFC 4648 base32 encoding of a SHA-256 digest, which keeps every name
within iptables' 28-character limit (25 characters for KUBE-SVC/SVL/EXT/SEP, 24 for KUBE-FW).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Final

from svcsim.k8s.objects import Protocol

SVC_PREFIX: Final = "KUBE-SVC-"
"""Cluster-traffic-policy chain of a service port."""
SVL_PREFIX: Final = "KUBE-SVL-"
"""Local-traffic-policy chain of a service port."""
FW_PREFIX: Final = "KUBE-FW-"
"""loadBalancerSourceRanges firewall chain of a service port."""
EXT_PREFIX: Final = "KUBE-EXT-"
"""External-destinations chain of a service port."""
SEP_PREFIX: Final = "KUBE-SEP-"
"""Per-endpoint chain."""

SERVICE_CHAIN_PREFIXES: Final = (SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX)
"""Prefixes of per-service chains, which kube-proxy deletes when stale (``isServiceChainName``)."""

_BASE32: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
"""RFC 4648's base32 alphabet (Go's ``base32.StdEncoding``)."""
_BASE32_PAIRS: Final = tuple(a + b for a in _BASE32 for b in _BASE32)
"""The two characters of every 10-bit value (high 5 bits first)."""


@functools.lru_cache(maxsize=1 << 16)
def _hash16(text: str) -> str:
    """First 16 characters of base32(sha256(text)); 16 < 56 so padding never appears.

    Base32 turns each 5 bytes into 8 characters on their own, so the first 16 characters are
    those of the digest's first 10 bytes: 80 bits, written here as eight 10-bit pairs
    (``base64.b32encode`` of those 10 bytes gives the same text, slower: the tests compare
    them). The memo stays module-level: strings in, strings out, bounded, no run's objects.
    """
    bits = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    pairs = _BASE32_PAIRS
    return (
        pairs[bits >> 70]
        + pairs[bits >> 60 & 1023]
        + pairs[bits >> 50 & 1023]
        + pairs[bits >> 40 & 1023]
        + pairs[bits >> 30 & 1023]
        + pairs[bits >> 20 & 1023]
        + pairs[bits >> 10 & 1023]
        + pairs[bits & 1023]
    )


def base32_head8(digest: bytes) -> str:
    """The first 8 characters of base32(``digest``): its first 5 bytes as four 10-bit pairs.

    ``base64.b32encode(digest)[:8]`` (what nftables-mode chain names take), without encoding
    the rest.
    """
    bits = int.from_bytes(digest[:5], "big")
    pairs = _BASE32_PAIRS
    return (
        pairs[bits >> 30] + pairs[bits >> 20 & 1023] + pairs[bits >> 10 & 1023] + pairs[bits & 1023]
    )


def protocol_name(protocol: Protocol | str) -> str:
    """The lower-case protocol kube-proxy writes and hashes (``strings.ToLower``)."""
    return str(protocol).lower()


def port_proto_hash(service_port_name: str, protocol: Protocol | str) -> str:
    """``portProtoHash``: the 16-character hash shared by a port's SVC/SVL/EXT/FW chains.

    The ServicePortName string and the lower-case protocol are concatenated with no separator:
    ``port_proto_hash("ns1/svc1:p80", "tcp") == "XPGD46QRK7WJZT7O"``.
    """
    return _hash16(service_port_name + protocol_name(protocol))


def cluster_policy_chain(service_port_name: str, protocol: Protocol | str) -> str:
    """``KUBE-SVC-<hash>``: dispatch to endpoints under Cluster traffic policy."""
    return SVC_PREFIX + port_proto_hash(service_port_name, protocol)


def local_policy_chain(service_port_name: str, protocol: Protocol | str) -> str:
    """``KUBE-SVL-<hash>``: dispatch to node-local endpoints under Local traffic policy."""
    return SVL_PREFIX + port_proto_hash(service_port_name, protocol)


def firewall_chain(service_port_name: str, protocol: Protocol | str) -> str:
    """``KUBE-FW-<hash>``: loadBalancerSourceRanges filtering."""
    return FW_PREFIX + port_proto_hash(service_port_name, protocol)


def external_chain(service_port_name: str, protocol: Protocol | str) -> str:
    """``KUBE-EXT-<hash>``: traffic to NodePorts, externalIPs and load-balancer IPs."""
    return EXT_PREFIX + port_proto_hash(service_port_name, protocol)


def endpoint_chain(service_port_name: str, protocol: Protocol | str, endpoint: str) -> str:
    """``KUBE-SEP-<hash>``, hashing ServicePortName + protocol + ``"IP:port"`` with no separators.

    ``endpoint`` is ``BaseEndpointInfo.String()``: ``net.JoinHostPort(ip, port)``, so an IPv6
    endpoint would be ``"[addr]:port"``.
    """
    return SEP_PREFIX + _hash16(service_port_name + protocol_name(protocol) + endpoint)


def is_service_chain(name: str) -> bool:
    """True for chains kube-proxy creates per service port or endpoint (``isServiceChainName``)."""
    return name.startswith(SERVICE_CHAIN_PREFIXES)


@dataclass(frozen=True, slots=True, order=True)
class ServicePortName:
    """``proxy.ServicePortName``: which Service port, with its protocol.

    Two ports of one Service may share a name with different protocols (``dns`` TCP and UDP);
    they are different keys with the same :attr:`text`, and their chain names differ only
    through the protocol in the hash.
    """

    namespace: str
    name: str
    port: str = ""
    """The ServicePort's ``name``; ``""`` for an unnamed port."""
    protocol: Protocol = Protocol.TCP
    text: str = field(init=False, repr=False, compare=False)
    """``ServicePortName.String()``: ``ns/name:port``, or ``ns/name`` for an unnamed port."""
    service: str = field(init=False, repr=False, compare=False)
    """The Service's ``namespace/name``."""
    protocol_lower: str = field(init=False, repr=False, compare=False)
    """The protocol as kube-proxy writes it in rules (``tcp``, ``udp``, ``sctp``)."""
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # These are read on every map lookup of every sync: computed once.
        base = f"{self.namespace}/{self.name}"
        object.__setattr__(self, "service", base)
        object.__setattr__(self, "text", f"{base}:{self.port}" if self.port else base)
        object.__setattr__(self, "protocol_lower", protocol_name(self.protocol))
        object.__setattr__(
            self, "_hash", hash((self.namespace, self.name, self.port, self.protocol))
        )

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return self.text

    @property
    def cluster_chain(self) -> str:
        """The port's ``KUBE-SVC-`` chain."""
        return cluster_policy_chain(self.text, self.protocol)

    @property
    def local_chain(self) -> str:
        """The port's ``KUBE-SVL-`` chain."""
        return local_policy_chain(self.text, self.protocol)

    @property
    def external_chain(self) -> str:
        """The port's ``KUBE-EXT-`` chain."""
        return external_chain(self.text, self.protocol)

    @property
    def firewall_chain(self) -> str:
        """The port's ``KUBE-FW-`` chain."""
        return firewall_chain(self.text, self.protocol)

    def endpoint_chain(self, endpoint: str) -> str:
        """The ``KUBE-SEP-`` chain of ``endpoint`` (``"IP:port"``) for this port."""
        # endpoint_chain's hashed text, without re-spelling the protocol per endpoint.
        return SEP_PREFIX + _hash16(self.text + self.protocol_lower + endpoint)
