"""kube-proxy's nftables-mode names: the table, its fixed chains and sets, and hashed chain names.

From kubernetes ``pkg/proxy/nftables/proxier.go`` @b0f823e6 (constants, ``nftablesBaseChains``,
``nftablesJumpChains``, ``servicePortChainNameBase``, ``hashAndTruncate``). The compiler
(:mod:`svcsim.proxy.nftables`), the sync (:mod:`svcsim.sim.nft_sync`) and the traffic path
read chain names through this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final

from svcsim.netfilter.nftables import NftChain
from svcsim.proxy.endpoints import (
    EndpointInfo,
)
from svcsim.proxy.names import ServicePortName, base32_head8

TABLE_NAME: Final = "kube-proxy"
TABLE_FAMILY: Final = "ip"
TABLE_COMMENT: Final = "rules for kube-proxy"

DSTNAT_PRIORITY: Final = -100
"""nft's named priority ``dstnat`` (knftables writes names as numbers)."""
SRCNAT_PRIORITY: Final = 100
"""nft's named priority ``srcnat``."""

SERVICES_CHAIN: Final = "services"
SERVICE_IPS_MAP: Final = "service-ips"
SERVICE_NODEPORTS_MAP: Final = "service-nodeports"
NODEPORT_IPS_SET: Final = "nodeport-ips"
CLUSTER_IPS_SET: Final = "cluster-ips"
SERVICE_ENDPOINTS_CHECK_CHAIN: Final = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK_CHAIN: Final = "nodeport-endpoints-check"
NO_ENDPOINT_SERVICES_MAP: Final = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS_MAP: Final = "no-endpoint-nodeports"
REJECT_CHAIN: Final = "reject-chain"
CLUSTER_IPS_CHECK_CHAIN: Final = "cluster-ips-check"
FIREWALL_IPS_MAP: Final = "firewall-ips"
FIREWALL_CHECK_CHAIN: Final = "firewall-check"
MARK_MASQ_CHAIN: Final = "mark-for-masquerade"
MASQUERADING_CHAIN: Final = "masquerading"

NO_LOCALHOST: Final = "ip daddr != 127.0.0.0/8"
"""kube-proxy never accepts NodePorts on localhost in nftables mode."""

BASE_CHAINS: Final = (
    NftChain("filter-prerouting", "filter", "prerouting", DSTNAT_PRIORITY - 10),
    NftChain("filter-input", "filter", "input", DSTNAT_PRIORITY - 10),
    NftChain("filter-forward", "filter", "forward", DSTNAT_PRIORITY - 10),
    NftChain("filter-output", "filter", "output", DSTNAT_PRIORITY - 10),
    NftChain("filter-output-post-dnat", "filter", "output", DSTNAT_PRIORITY + 10),
    NftChain("nat-prerouting", "nat", "prerouting", DSTNAT_PRIORITY),
    NftChain("nat-output", "nat", "output", DSTNAT_PRIORITY),
    NftChain("nat-postrouting", "nat", "postrouting", SRCNAT_PRIORITY),
)
"""``nftablesBaseChains``: every base chain with its type, hook and numeric priority."""

JUMP_CHAINS: Final = (
    (NODEPORT_ENDPOINTS_CHECK_CHAIN, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-forward", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-output", "ct state new"),
    (FIREWALL_CHECK_CHAIN, "filter-prerouting", "ct state new"),
    (FIREWALL_CHECK_CHAIN, "filter-output", "ct state new"),
    (SERVICES_CHAIN, "nat-output", ""),
    (SERVICES_CHAIN, "nat-prerouting", ""),
    (MASQUERADING_CHAIN, "nat-postrouting", ""),
    (CLUSTER_IPS_CHECK_CHAIN, "filter-forward", "ct state new"),
    (CLUSTER_IPS_CHECK_CHAIN, "filter-output-post-dnat", "ct state new"),
)
"""``nftablesJumpChains``: (target chain, base chain, match before the jump), in order."""

NAME_LENGTH_MAX: Final = 256
"""knftables' ``NameLengthMax`` (the kernel's ``NFT_NAME_MAXLEN``)."""
CHAIN_NAME_BASE_LENGTH_MAX: Final = NAME_LENGTH_MAX - 16
"""``chainNameBaseLengthMax``: room left after the longest prefix (16 characters)."""

SERVICE_ADDR_TYPE: Final = "ipv4_addr . inet_proto . inet_service : verdict"
NODEPORT_TYPE: Final = "inet_proto . inet_service : verdict"


def hash_and_truncate(name: str) -> str:
    """``hashAndTruncate``: 8 base32 characters of sha256(name), ``-``, name, cut to 240."""
    out = base32_head8(hashlib.sha256(name.encode()).digest()) + "-" + name
    if len(out) > CHAIN_NAME_BASE_LENGTH_MAX:
        out = out[: CHAIN_NAME_BASE_LENGTH_MAX - 3] + "..."
    return out


def is_firewall_chain(name: str) -> bool:
    """A Service's ``firewall-HASH-...`` chain (its LoadBalancerSourceRanges drop), by name."""
    return name.startswith("firewall-") and "/" in name


def chain_service(name: str) -> str | None:
    """``namespace/name`` of the Service owning a service chain or affinity set, else None.

    Those names are ``<prefix>-<8-char hash>-<namespace>/<name>/<protocol>/<port>[...]``
    (``servicePortChainNameBase``); no stock chain has a ``/`` (``isServiceChainName``).
    """
    if "/" not in name:
        return None
    _, _, rest = name.partition("-")
    parts = rest[9:].split("/")
    return f"{parts[0]}/{parts[1]}" if len(parts) > 1 else None


def service_chain_base(
    spn: ServicePortName, hashed: Callable[[str], str] = hash_and_truncate
) -> str:
    """``servicePortChainNameBase``: ``HASH-namespace/name/protocol/port``."""
    return hashed(f"{spn.namespace}/{spn.name}/{spn.protocol_lower}/{spn.port}")


def endpoint_chain_base(
    spn: ServicePortName, endpoint: EndpointInfo, hashed: Callable[[str], str] = hash_and_truncate
) -> str:
    """``servicePortEndpointChainNameBase``: ``HASH-namespace/name/protocol/port__IP/port``."""
    ip = endpoint.ip.replace(":", ".")
    return hashed(
        f"{spn.namespace}/{spn.name}/{spn.protocol_lower}/{spn.port}__{ip}/{endpoint.port}"
    )
