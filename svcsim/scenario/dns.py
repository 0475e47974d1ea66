"""Cluster DNS in a scenario: ``cluster.dns``, a workload's ``dns``, and CoreDNS's defaults.

``cluster.dns`` names the kube-dns Service and the Corefile's TTLs. When a workload dials a
name (``to: dns:NAME:PORT``) or ``cluster.dns`` is set, and the manifests hold no such
Service, the loader adds CoreDNS as kubeadm deploys it (:func:`coredns_manifest`, with a
warning): the ``kube-dns`` Service (UDP/TCP 53, metrics 9153; ClusterIP the 10th address of
``serviceCIDR``, kubeadm's ``GetDNSIP``) and the ``coredns`` Deployment (2 replicas,
``maxUnavailable: 1``, readiness ``/ready`` on 8181), whose process answers for 5 s after
SIGTERM (``health { lameduck 5s }``).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StrictInt

from svcsim.netfilter.conntrack_clash import parse_kernel_version
from svcsim.scenario.base import IPv4, OmitNoneModel, problem
from svcsim.scenario.refs import ServiceRefText
from svcsim.sim.config import AppProfile
from svcsim.sim.coredns import CACHE_MAX_TTL_S, DEFAULT_TTL_S

DNS_ORIGIN: Final = "cluster.dns"
"""The ``origin`` of the manifests the loader adds for CoreDNS."""
DEFAULT_DNS_SERVICE: Final = "kube-system/kube-dns"
COREDNS_REPLICAS: Final = 2
"""kubeadm's CoreDNS Deployment replicas."""
LAMEDUCK_S: Final = 5.0
"""``health { lameduck 5s }`` of the default Corefile: answers for 5 s after SIGTERM."""
COREDNS_IMAGE: Final = "registry.k8s.io/coredns/coredns:v1.11.3"


DEFAULT_KERNEL: Final = "6.8"
"""The nodes' kernel unless ``conntrackRace.kernelVersion`` says otherwise (Ubuntu 24.04's:
a current kernel, which resolves every clash, so scenarios without the setting see no race)."""
DEFAULT_RACE_PROBABILITY: Final = 0.05
"""ASSUMPTION, not from a source: the chance that the A and AAAA packets of one query pair
are processed concurrently on two CPUs of a multi-CPU node. Set it from a real node: the
growth of ``conntrack -S`` ``insert_failed`` over the DNS query pairs sent meanwhile."""
NODE_LOCAL_DNS_IP: Final = "169.254.20.10"
"""The link-local address node-local-dns listens on (cluster/addons/dns/nodelocaldns)."""
NODE_LOCAL_SUCCESS_TTL_S: Final = 30
"""nodelocaldns.yaml's Corefile: ``cache { success 9984 30; denial 9984 5 }``."""
NODE_LOCAL_DENIAL_TTL_S: Final = 5


def _kernel_version(text: str) -> str:
    try:
        parse_kernel_version(text)
    except ValueError as exc:
        raise problem(str(exc)) from None
    return text


def _quoted(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise problem(
            f'write the kernel version as quoted text, like "{value}": read as a number, '
            "5.10 would be 5.1"
        )
    return value


KernelVersionText = Annotated[str, BeforeValidator(_quoted), AfterValidator(_kernel_version)]


class ConntrackRace(OmitNoneModel):
    """The A/AAAA conntrack insert race on the client nodes (docs/dns.md, "5-second delay")."""

    probability: float = Field(default=DEFAULT_RACE_PROBABILITY, ge=0.0, le=1.0)
    """Chance that a query pair's two packets are processed concurrently on two CPUs (an
    assumption: see :data:`DEFAULT_RACE_PROBABILITY`); 0 on 1-CPU nodes whatever it says."""
    kernel_version: KernelVersionText = DEFAULT_KERNEL
    """The nodes' kernel (``uname -r``, or a Node's ``status.nodeInfo.kernelVersion``):
    before 5.0 every clash drops a packet, 5.0-5.6 only clashes of different DNAT targets,
    5.7 and later none (:mod:`svcsim.netfilter.conntrack_clash`)."""


class NodeLocalCache(OmitNoneModel):
    """NodeLocal DNSCache: node-local-dns on every node, the fix for the race (docs/dns.md)."""

    enabled: StrictBool = False
    """Run node-local-dns on every node (the kubernetes/dns ``node-cache`` DaemonSet)."""
    ip: IPv4 = NODE_LOCAL_DNS_IP
    """The link-local address it listens on (and, except in IPVS mode, the kube-dns
    ClusterIP too)."""
    success_ttl_s: StrictInt = Field(
        default=NODE_LOCAL_SUCCESS_TTL_S, ge=0, le=86400, alias="successTTL"
    )
    """``cache { success 9984 30 }``: longest an answer is cached, seconds."""
    denial_ttl_s: StrictInt = Field(
        default=NODE_LOCAL_DENIAL_TTL_S, ge=0, le=86400, alias="denialTTL"
    )
    """``cache { denial 9984 5 }``: longest an NXDOMAIN is cached, seconds."""


class ClusterDns(OmitNoneModel):
    """The cluster's DNS: which Service is kube-dns, and the Corefile's TTLs."""

    service: ServiceRefText = DEFAULT_DNS_SERVICE
    """``namespace/name`` of the kube-dns Service (every Pod's nameserver is its ClusterIP)."""
    cluster_ip: IPv4 | None = Field(default=None, alias="clusterIP")
    """ClusterIP of an added kube-dns Service (default: the 10th address of serviceCIDR)."""
    replicas: StrictInt = Field(default=COREDNS_REPLICAS, ge=0, le=1000)
    """Replicas of an added coredns Deployment."""
    ttl_s: StrictInt = Field(default=DEFAULT_TTL_S, ge=0, le=3600, alias="ttl")
    """``kubernetes { ttl N }``: TTL of the records, seconds (Kubernetes' Corefile: 30)."""
    cache_s: StrictInt = Field(default=CACHE_MAX_TTL_S, ge=0, le=86400, alias="cache")
    """``cache N``: longest an answer is cached by a CoreDNS Pod, seconds."""
    cache_cluster_domain: StrictBool = False
    """Cache the cluster's own records too: a plain ``cache 30`` (kubeadm before 1.32, the
    coredns/deployment Corefile). False: ``disable success/denial cluster.local`` (kubeadm
    1.32+), only external names are cached."""
    conntrack_race: ConntrackRace = Field(default_factory=ConntrackRace)
    """The A/AAAA conntrack insert race of the client nodes' kernel."""
    node_local_cache: NodeLocalCache = Field(default_factory=NodeLocalCache)
    """NodeLocal DNSCache (``enabled: true`` to run it)."""


class WorkloadDns(OmitNoneModel):
    """How a name-addressed workload's clients resolve (``to: dns:NAME:PORT``)."""

    cache: Literal["none", "ttl"] = "none"
    """``none``: every request looks the name up (glibc); ``ttl``: an answer is reused until
    its TTL runs out, even if it is stale by then."""
    hosts: dict[str, IPv4] = Field(default_factory=dict)
    """External host names and the address each has (what the upstream resolver answers);
    whatever is dialled there answers as an external host."""


def dns_ip(service_cidr: str) -> str:
    """The 10th address of ``service_cidr``: where kubeadm puts the kube-dns ClusterIP."""
    return str(ipaddress.IPv4Network(service_cidr)[10])


def coredns_manifest(dns: ClusterDns, service_cidr: str) -> str:
    """The kube-dns Service and the coredns Deployment as kubeadm deploys them (YAML)."""
    namespace, _, name = dns.service.rpartition("/")
    namespace = namespace or "default"
    ip = dns.cluster_ip or dns_ip(service_cidr)
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{k8s-app: kube-dns}}
spec:
  selector: {{k8s-app: kube-dns}}
  clusterIP: {ip}
  ports:
    - {{name: dns, protocol: UDP, port: 53, targetPort: 53}}
    - {{name: dns-tcp, protocol: TCP, port: 53, targetPort: 53}}
    - {{name: metrics, protocol: TCP, port: 9153, targetPort: 9153}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: {namespace}
  labels: {{k8s-app: kube-dns}}
spec:
  replicas: {dns.replicas}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxUnavailable: 1}}
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata: {{labels: {{k8s-app: kube-dns}}}}
    spec:
      containers:
        - name: coredns
          image: {COREDNS_IMAGE}
          ports:
            - {{name: dns, containerPort: 53, protocol: UDP}}
            - {{name: dns-tcp, containerPort: 53, protocol: TCP}}
            - {{name: metrics, containerPort: 9153, protocol: TCP}}
          readinessProbe:
            httpGet: {{path: /ready, port: 8181}}
"""


def coredns_app() -> AppProfile:
    """CoreDNS's process when the scenario's ``apps`` does not describe it: lameduck 5 s."""
    return AppProfile(
        name="coredns", drain_after_sigterm_s=LAMEDUCK_S, exit_after_sigterm_s=LAMEDUCK_S
    )


__all__ = [
    "DEFAULT_DNS_SERVICE",
    "DNS_ORIGIN",
    "ClusterDns",
    "ConntrackRace",
    "NodeLocalCache",
    "WorkloadDns",
    "coredns_app",
    "coredns_manifest",
    "dns_ip",
]
