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
from typing import Final, Literal

from pydantic import Field, StrictBool, StrictInt

from svcsim.scenario.base import IPv4, OmitNoneModel
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
    "WorkloadDns",
    "coredns_app",
    "coredns_manifest",
    "dns_ip",
]
