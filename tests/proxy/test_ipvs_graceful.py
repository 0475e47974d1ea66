"""Graceful termination: a removed TCP real server drains at weight 0, then goes."""

from __future__ import annotations

from svcsim.netfilter.ipvs import RealServer, VirtualServer
from svcsim.netfilter.ipvs_kernel import ConnKey, IpvsKernel
from svcsim.proxy.ipvs_graceful import GracefulTermination

VIP = "10.96.0.10"


def vs(*ips: str, protocol: str = "TCP") -> VirtualServer:
    return VirtualServer(protocol, VIP, 80, "rr", tuple(RealServer(ip, 8080) for ip in ips))


def weights(kernel: IpvsKernel, protocol: str = "TCP") -> dict[str, int]:
    return {d.address: d.weight for d in kernel.real_servers((protocol, VIP, 80))}


def test_a_busy_tcp_server_drains_then_is_swept_once_idle() -> None:
    kernel, gt = IpvsKernel(), GracefulTermination()
    gt.sync(kernel, [vs("10.0.0.1", "10.0.0.2")])
    kernel.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0)  # rr: 10.0.0.1
    gt.sync(kernel, [vs("10.0.0.2")])
    assert weights(kernel) == {"10.0.0.1": 0, "10.0.0.2": 1}
    assert gt.sweep(kernel) == []  # still has its connection
    kernel.expire(61.0)  # SYN_RECV's 60 s
    assert gt.sweep(kernel) == [("10.0.0.1", 8080)]
    assert weights(kernel) == {"10.0.0.2": 1}


def test_an_idle_server_and_any_udp_server_are_deleted_at_once() -> None:
    kernel, gt = IpvsKernel(), GracefulTermination()
    gt.sync(kernel, [vs("10.0.0.1", "10.0.0.2")])
    gt.sync(kernel, [vs("10.0.0.2")])
    assert weights(kernel) == {"10.0.0.2": 1}
    udp_kernel = IpvsKernel()
    gt.sync(udp_kernel, [vs("10.0.0.1", "10.0.0.2", protocol="UDP")])
    udp_kernel.connect("udp", "10.1.0.9", 1, VIP, 80, 0.0)
    gt.sync(udp_kernel, [vs("10.0.0.2", protocol="UDP")])
    assert weights(udp_kernel, "UDP") == {"10.0.0.2": 1}


def test_a_server_that_comes_back_is_taken_off_the_list_at_weight_1() -> None:
    kernel, gt = IpvsKernel(), GracefulTermination()
    gt.sync(kernel, [vs("10.0.0.1", "10.0.0.2")])
    kernel.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0)
    gt.sync(kernel, [vs("10.0.0.2")])
    gt.sync(kernel, [vs("10.0.0.1", "10.0.0.2")])
    assert weights(kernel) == {"10.0.0.1": 1, "10.0.0.2": 1}
    assert not gt.draining
    assert ConnKey("TCP", "10.1.0.9", 1, VIP, 80) in kernel.conns
