"""Graceful termination: a removed TCP real server drains at weight 0, then goes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

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


def _specs(rng: np.random.Generator, servers: list[VirtualServer]) -> list[VirtualServer]:
    """One sync's wanted servers: some of ``servers`` get new real servers (new objects), the
    rest are the very same objects; now and then one is dropped or moves (keys out of line)."""
    out = []
    for spec in servers:
        if rng.random() < 0.2:
            ips = sorted({f"10.0.0.{int(x)}" for x in rng.integers(1, 6, size=3)})
            spec = dataclasses.replace(spec, real_servers=tuple(RealServer(i, 8080) for i in ips))
        out.append(spec)
    if rng.random() < 0.15:
        out.pop(int(rng.integers(0, len(out))))
    if rng.random() < 0.15:
        out.reverse()
    return out


@pytest.mark.parametrize("seed", range(4))
def test_syncing_only_the_changed_specs_equals_walking_all(seed: int) -> None:
    """Random syncs with connections (some servers drain): a kernel that takes the quick way
    (same keys in order as its last install) ends as one made to walk every spec."""
    rng = np.random.default_rng(seed)
    servers = [
        VirtualServer("TCP" if i % 3 else "UDP", f"10.96.0.{i + 1}", 80, "rr",
                      (RealServer("10.0.0.1", 8080), RealServer("10.0.0.2", 8080)))
        for i in range(6)
    ]  # fmt: skip
    quick, walked = (IpvsKernel(), GracefulTermination()), (IpvsKernel(), GracefulTermination())
    for step in range(40):
        specs = _specs(rng, servers)
        servers = specs if len(specs) == len(servers) else servers
        connect = rng.random() < 0.5
        pick = int(rng.integers(0, 1 << 20))
        for kernel, gt in (quick, walked):
            if kernel is walked[0]:
                kernel.installed = None  # the reference walks every spec
            kernel.expire(float(step))
            placed = gt.sync(kernel, specs)
            if connect and placed:
                target = placed[pick % len(placed)]
                kernel.connect(target.protocol.lower(), "10.1.0.9", step, target.address, 80,
                               float(step))  # fmt: skip
            if step % 7 == 6:
                gt.sweep(kernel)
        assert {k: s.spec for k, s in quick[0].services.items()} == {
            k: s.spec for k, s in walked[0].services.items()
        }
        for key in quick[0].services:
            assert quick[0].real_servers(key) == walked[0].real_servers(key)
        assert quick[1].draining == walked[1].draining
