"""A node network that notes the walk's questions: what a cached dispatch depends on."""

from __future__ import annotations

from typing import Any

from svcsim.netfilter.model import IPAddress
from svcsim.netfilter.packet import NodeNetwork, Packet


class RecordingNetwork(NodeNetwork):
    """A node network that notes every question the walk asks it, with the answer."""

    __slots__ = ("answers",)

    def __init__(self, base: NodeNetwork) -> None:
        super().__init__(base.node_ips, base.uplink_interface, base.pod_interface, base.pod_cidr)
        self.answers: dict[tuple[str, Any], Any]
        object.__setattr__(self, "answers", {})

    def is_local(self, address: IPAddress) -> bool:
        """See :meth:`NodeNetwork.is_local`; noted."""
        answer = super().is_local(address)
        self.answers[("is_local", address)] = answer
        return answer

    def address_type(self, address: IPAddress) -> str:
        """See :meth:`NodeNetwork.address_type`; noted."""
        answer = super().address_type(address)
        self.answers[("address_type", address)] = answer
        return answer

    def in_interface(self, packet: Packet) -> str | None:
        """See :meth:`NodeNetwork.in_interface`; noted."""
        answer = super().in_interface(packet)
        self.answers[("in_interface", packet)] = answer
        return answer

    def out_interface(self, dst: IPAddress) -> str:
        """See :meth:`NodeNetwork.out_interface`; noted."""
        answer = super().out_interface(dst)
        self.answers[("out_interface", dst)] = answer
        return answer
