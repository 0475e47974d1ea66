"""The ``timeline`` section: what happens to the cluster, and when.

Each entry has ``at`` (simulated time) and ``action``; the other fields depend on the
action. Entries may be written in any order; a builder applies them by ``at``, entries with
equal ``at`` in file order.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Discriminator, Field, StrictInt, StrictStr, Tag, model_validator

from svcsim.scenario.base import LabelMap, NodeName, OmitNoneModel, problems_at
from svcsim.scenario.durations import Duration, PositiveDuration
from svcsim.scenario.refs import (
    AddressText,
    IntOrPercent,
    ManifestRef,
    ObjectRefText,
    ServicePortText,
    ServiceRefText,
    parse_address,
)


class ActionBase(OmitNoneModel):
    """Fields every action has."""

    at_s: Duration
    """When the action happens (simulated time, <= duration)."""


class Rollout(ActionBase):
    """Roll out a new template revision of a Deployment (same Pod spec, new Pods)."""

    action: Literal["rollout"]
    deployment: ObjectRefText
    """``[namespace/]name`` of the Deployment."""
    max_surge: IntOrPercent | None = None
    """Override of the Deployment's ``strategy.rollingUpdate.maxSurge`` for this rollout."""
    max_unavailable: IntOrPercent | None = None
    """Override of ``strategy.rollingUpdate.maxUnavailable`` for this rollout."""

    @model_validator(mode="after")
    def _not_both_zero(self) -> Rollout:
        # pkg/apis/apps/validation ValidateRollingUpdateDeployment: both 0 would stall.
        zero = (0, "0%")
        if self.max_surge in zero and self.max_unavailable in zero:
            raise problems_at("rollout", [(("maxUnavailable",), "may not be 0 when maxSurge is 0")])
        return self


class Scale(ActionBase):
    """Set a Deployment's ``replicas``."""

    action: Literal["scale"]
    deployment: ObjectRefText
    """``[namespace/]name`` of the Deployment."""
    replicas: StrictInt = Field(ge=0, le=100_000)
    """New replica count."""


class _PodPick(ActionBase):
    """Pick Pods by name or by selector (``count`` of the matching Pods)."""

    pod: ObjectRefText | None = None
    """``[namespace/]name`` of one Pod."""
    selector: LabelMap | None = None
    """Labels; ``count`` matching Pods are picked (by the run's random stream)."""
    count: StrictInt = Field(default=1, ge=1)
    """How many Pods the selector picks."""

    @model_validator(mode="after")
    def _pod_or_selector(self) -> _PodPick:
        if (self.pod is None) == (self.selector is None):
            where = "selector" if self.pod is not None else "pod"
            raise problems_at("pods", [((where,), "set exactly one of pod or selector")])
        if self.selector is not None and not self.selector:
            raise problems_at("pods", [(("selector",), "must select at least one label")])
        if self.count != 1 and self.selector is None:
            raise problems_at("pods", [(("count",), "only applies with selector")])
        return self


class DeletePod(_PodPick):
    """Delete Pods gracefully (SIGTERM, then the grace period); their ReplicaSet replaces them."""

    action: Literal["delete-pod"]


class CrashPod(_PodPick):
    """Kill the app process at once (the container restarts; the Pod keeps its IP)."""

    action: Literal["crash-pod"]


class FailReadiness(_PodPick):
    """Make the picked Pods' readiness probes fail for a while (the app keeps serving).

    Ready falls after ``failureThreshold`` failing probes and comes back after
    ``successThreshold`` passing ones once ``for`` is over: endpoints flap without a crash.
    """

    action: Literal["fail-readiness"]
    for_s: PositiveDuration = Field(alias="for")
    """How long the readiness endpoint fails."""


class CrashProxy(ActionBase):
    """kube-proxy on a node dies; its rules stay in the kernel, unchanged."""

    action: Literal["crash-proxy"]
    node: NodeName


class RestartProxy(ActionBase):
    """kube-proxy on a node (re)starts: informers sync, then a full sync."""

    action: Literal["restart-proxy"]
    node: NodeName


class BlockSync(ActionBase):
    """kube-proxy on a node cannot sync for a while (e.g. the xtables lock is held)."""

    action: Literal["block-sync"]
    node: NodeName
    for_s: PositiveDuration = Field(alias="for")
    """How long syncs are blocked."""


class InjectStaleRule(ActionBase):
    """Add a rule kube-proxy did not write: ``service`` also DNATs to ``endpoint``."""

    action: Literal["inject-stale-rule"]
    node: NodeName
    service: ServicePortText
    """``[ns/]service[:port]`` whose chain gets the extra endpoint."""
    endpoint: AddressText
    """``IP:port`` the stale rule sends traffic to."""


class AddService(ActionBase):
    """Create the objects of a manifest (typically a Service)."""

    action: Literal["add-service"]
    manifest: ManifestRef


class RemoveService(ActionBase):
    """Delete a Service."""

    action: Literal["remove-service"]
    service: ServiceRefText
    """``[namespace/]name`` of the Service."""


class DrainNode(ActionBase):
    """Cordon a node and evict its Pods (as ``kubectl drain``)."""

    action: Literal["drain-node"]
    node: NodeName


class FailNode(ActionBase):
    """The node stops (power loss, kernel panic): kubelet, kube-proxy and containers with it.

    Its Pods' IPs answer nothing (clients time out); its host and external clients stop. The
    node lifecycle controller marks it NotReady after ``nodeMonitorGracePeriod`` and evicts
    its Pods ``defaultUnreachableTolerationSeconds`` later. ``recover-node`` boots it.
    """

    action: Literal["fail-node"]
    node: NodeName


class PartitionNode(ActionBase):
    """The node loses the API server but keeps running and forwarding with frozen rules.

    ``for``: heal after this long (else a later ``recover-node`` heals it, or nothing does).
    """

    action: Literal["partition-node"]
    node: NodeName
    for_s: PositiveDuration | None = Field(default=None, alias="for")
    """How long the partition lasts."""


class RecoverNode(ActionBase):
    """A failed node boots again, or a partitioned node reaches the API server again."""

    action: Literal["recover-node"]
    node: NodeName


class TaintNode(ActionBase):
    """Put the cluster autoscaler's ``ToBeDeletedByClusterAutoscaler`` taint on a node.

    As the autoscaler does before it removes a node: no new Pods are scheduled there
    (NoSchedule), and the node's kube-proxy answers 503 on ``/healthz`` (KEP-3836), so cloud
    load balancers of ``externalTrafficPolicy: Cluster`` Services stop sending there.
    """

    action: Literal["taint-node"]
    node: NodeName


class UntaintNode(ActionBase):
    """Remove the ``ToBeDeletedByClusterAutoscaler`` taint from a node."""

    action: Literal["untaint-node"]
    node: NodeName


class FailEndpoint(ActionBase):
    """A hand-made endpoint outside the Pod network stops answering (its host is down).

    ``address`` is an IP of an Endpoints or EndpointSlice written by hand (a Service without
    selector) outside ``clusterCIDR``. New connections to it time out (cause
    ``endpoint-down``) until ``for`` is over or a ``recover-endpoint``; kube-proxy knows
    nothing of it (nothing updates the hand-made endpoints).
    """

    action: Literal["fail-endpoint"]
    address: StrictStr
    """The endpoint's IP."""
    for_s: PositiveDuration | None = Field(default=None, alias="for")
    """How long it stays down."""

    @model_validator(mode="after")
    def _ip(self) -> FailEndpoint:
        _check_ip(self.address, "fail")
        return self


class RecoverEndpoint(ActionBase):
    """A hand-made endpoint outside the Pod network answers again."""

    action: Literal["recover-endpoint"]
    address: StrictStr
    """The endpoint's IP."""

    @model_validator(mode="after")
    def _ip(self) -> RecoverEndpoint:
        _check_ip(self.address, "recover")
        return self


def _check_ip(text: str, title: str) -> None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise problems_at(
            title, [(("address",), f"must be an IPv4 address, got {text!r}")]
        ) from None


class FlushConntrack(ActionBase):
    """Delete conntrack entries on a node (all, or those matching the filters)."""

    action: Literal["flush-conntrack"]
    node: NodeName
    protocol: Literal["tcp", "udp"] | None = None
    """Only entries of this protocol."""
    orig_dst: StrictStr | None = None
    """Only entries whose original destination is this IP (or ``IP:port``)."""

    @model_validator(mode="after")
    def _orig_dst(self) -> FlushConntrack:
        if self.orig_dst is not None:
            text = self.orig_dst if ":" in self.orig_dst else f"{self.orig_dst}:1"
            try:
                parse_address(text)
            except ValueError as exc:
                why = f"must be IP or IP:port: {exc}"
                raise problems_at("flush", [(("origDst",), why)]) from None
        return self


Action = Annotated[
    Annotated[Rollout, Tag("rollout")]
    | Annotated[Scale, Tag("scale")]
    | Annotated[DeletePod, Tag("delete-pod")]
    | Annotated[CrashPod, Tag("crash-pod")]
    | Annotated[FailReadiness, Tag("fail-readiness")]
    | Annotated[CrashProxy, Tag("crash-proxy")]
    | Annotated[RestartProxy, Tag("restart-proxy")]
    | Annotated[BlockSync, Tag("block-sync")]
    | Annotated[InjectStaleRule, Tag("inject-stale-rule")]
    | Annotated[AddService, Tag("add-service")]
    | Annotated[RemoveService, Tag("remove-service")]
    | Annotated[DrainNode, Tag("drain-node")]
    | Annotated[FailNode, Tag("fail-node")]
    | Annotated[PartitionNode, Tag("partition-node")]
    | Annotated[RecoverNode, Tag("recover-node")]
    | Annotated[TaintNode, Tag("taint-node")]
    | Annotated[UntaintNode, Tag("untaint-node")]
    | Annotated[FailEndpoint, Tag("fail-endpoint")]
    | Annotated[RecoverEndpoint, Tag("recover-endpoint")]
    | Annotated[FlushConntrack, Tag("flush-conntrack")],
    Discriminator("action"),
]
"""One timeline entry, told apart by ``action``."""

ACTIONS: tuple[str, ...] = (
    "rollout",
    "scale",
    "delete-pod",
    "crash-pod",
    "fail-readiness",
    "crash-proxy",
    "restart-proxy",
    "block-sync",
    "inject-stale-rule",
    "add-service",
    "remove-service",
    "drain-node",
    "fail-node",
    "partition-node",
    "recover-node",
    "taint-node",
    "untaint-node",
    "fail-endpoint",
    "recover-endpoint",
    "flush-conntrack",
)
"""Every ``action`` value, in documentation order."""
