"""Client traffic: workloads, arrivals, connection models and the data path of every request.

Requests are resolved in vectorised batches between control-plane events
(:class:`~svcsim.traffic.engine.TrafficEngine`); :class:`~svcsim.traffic.reference.ReferenceEngine`
resolves the same attempts one at a time through the interpreter and a real conntrack table.
"""

from svcsim.traffic.context import ApiView, ProxyState, TrafficContext
from svcsim.traffic.engine import TrafficEngine
from svcsim.traffic.reference import ReferenceEngine
from svcsim.traffic.spec import (
    AddressTarget,
    ConnectionModel,
    ExponentialTime,
    ExternalSource,
    FixedTime,
    HostSource,
    KeepAlive,
    LognormalTime,
    PerRequest,
    PodSource,
    Retries,
    ServiceTarget,
    ServiceTime,
    Source,
    Target,
    Udp,
    WorkloadSpec,
)

__all__ = [
    "AddressTarget",
    "ApiView",
    "ConnectionModel",
    "ExponentialTime",
    "ExternalSource",
    "FixedTime",
    "HostSource",
    "KeepAlive",
    "LognormalTime",
    "PerRequest",
    "PodSource",
    "ProxyState",
    "ReferenceEngine",
    "Retries",
    "ServiceTarget",
    "ServiceTime",
    "Source",
    "Target",
    "TrafficContext",
    "TrafficEngine",
    "Udp",
    "WorkloadSpec",
]
