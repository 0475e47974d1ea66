"""IPVS-mode pieces of a node's assembly: the kernel's IPVS sysctls, the sync cost, warm start.

kube-proxy's IPVS proxier (kubernetes ``pkg/proxy/ipvs/proxier.go``, ``NewProxier``) sets
``net/ipv4/vs/conntrack``, ``expire_nodest_conn`` and ``expire_quiescent_template`` to 1 and
leaves ``conn_reuse_mode`` at the kernel's default on kernels >= 5.9 (the line
:mod:`svcsim.netfilter.ipvs_kernel` models), and runs ``ipvsadm --set`` with
``--ipvs-tcp-timeout``/``--ipvs-tcpfin-timeout``/``--ipvs-udp-timeout`` only when one is
non-zero; a zero keeps the kernel's value (``ip_vs_proto_tcp.c``/``ip_vs_proto_udp.c``).
"""

from __future__ import annotations

from collections.abc import Iterable

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.netfilter.ipvs_kernel import IpvsSysctls
from svcsim.proxy.context import NodeContext
from svcsim.proxy.ipvs import compile_ipvs
from svcsim.proxy.ipvs_graceful import GracefulTermination
from svcsim.scenario.proxy import ProxySettings
from svcsim.sim.ipvs_cost import IpvsSyncCostModel
from svcsim.sim.ipvs_sync import install_sync
from svcsim.sim.kernel import Kernel


def ipvs_sysctls(settings: ProxySettings) -> IpvsSysctls:
    """The node's IPVS sysctls and timeouts as kube-proxy leaves them (see the docstring)."""
    kernel = IpvsSysctls()
    ipvs = settings.ipvs
    return IpvsSysctls(
        tcp_timeout_s=ipvs.tcp_timeout_s or kernel.tcp_timeout_s,
        tcp_fin_timeout_s=ipvs.tcp_fin_timeout_s or kernel.tcp_fin_timeout_s,
        udp_timeout_s=ipvs.udp_timeout_s or kernel.udp_timeout_s,
    )


def ipvs_cost(settings: ProxySettings) -> IpvsSyncCostModel:
    """The node's IPVS sync cost model from ``ipvsSyncCost``."""
    cost = settings.ipvs_sync_cost
    return IpvsSyncCostModel(cost.base_s, cost.per_object_s, cost.per_change_s)


def warm_ipvs(
    kernel: Kernel,
    services: Iterable[Service],
    slices: Iterable[EndpointSlice],
    ctx: NodeContext,
    scheduler: str,
    now_s: float,
) -> None:
    """Install what kube-proxy's last sync before the run left: the state of the manifests."""
    wanted = compile_ipvs(services, slices, ctx, scheduler, show_draining=False)
    install_sync(kernel, GracefulTermination(), wanted, now_s, restored=True)
