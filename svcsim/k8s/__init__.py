"""Kubernetes objects for the Service data plane: types, manifest loading, controllers.

Public surface: the frozen objects of :mod:`svcsim.k8s.objects`, :func:`load_manifests` /
:func:`load_manifest_text` returning :class:`Manifests`, :class:`ManifestErrors`, the IP
helpers :func:`normalize_ip` / :func:`normalize_cidr`, and the pure control-plane functions
:func:`endpoint_slices_for_service`, :func:`mirror_endpoints`, :func:`effective_endpoint_slices`.
"""

from svcsim.k8s.controllers import (
    effective_endpoint_slices,
    endpoint_slices_for_service,
    mirror_endpoints,
)
from svcsim.k8s.errors import ManifestError, ManifestErrors
from svcsim.k8s.fields import normalize_cidr, normalize_ip
from svcsim.k8s.load import Manifests, load_manifest_text, load_manifests
from svcsim.k8s.objects import (
    DEFAULT_CLIENT_IP_AFFINITY_SECONDS,
    LAST_CHANGE_TRIGGER_TIME_ANNOTATION,
    SERVICE_NAME_LABEL,
    ContainerPort,
    Endpoint,
    EndpointAddress,
    EndpointConditions,
    EndpointPort,
    Endpoints,
    EndpointSlice,
    EndpointSubset,
    LoadBalancerIngress,
    Node,
    ObjectMeta,
    Pod,
    Protocol,
    Service,
    ServiceCIDR,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)

__all__ = [
    "DEFAULT_CLIENT_IP_AFFINITY_SECONDS",
    "LAST_CHANGE_TRIGGER_TIME_ANNOTATION",
    "SERVICE_NAME_LABEL",
    "ContainerPort",
    "Endpoint",
    "EndpointAddress",
    "EndpointConditions",
    "EndpointPort",
    "EndpointSlice",
    "EndpointSubset",
    "Endpoints",
    "LoadBalancerIngress",
    "ManifestError",
    "ManifestErrors",
    "Manifests",
    "Node",
    "ObjectMeta",
    "Pod",
    "Protocol",
    "Service",
    "ServiceCIDR",
    "ServicePort",
    "ServiceType",
    "SessionAffinity",
    "TrafficPolicy",
    "effective_endpoint_slices",
    "endpoint_slices_for_service",
    "load_manifest_text",
    "load_manifests",
    "mirror_endpoints",
    "normalize_cidr",
    "normalize_ip",
]
