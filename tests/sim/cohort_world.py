"""Three nodes' kube-proxies in one small world, started alone or as one cohort (test helper)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import simpy

from svcsim.netfilter.conntrack_states import ConntrackTimeouts
from svcsim.netfilter.packet import NodeNetwork
from svcsim.proxy.context import NodeContext
from svcsim.results.records import Recorder
from svcsim.sim.api import ApiServer
from svcsim.sim.caches import RunCaches
from svcsim.sim.kernel import Kernel
from svcsim.sim.kubeproxy import KubeProxy
from svcsim.sim.synccost import KubeProxyConfig, SyncCostModel

CFG = KubeProxyConfig(
    min_sync_period_s=1.0,
    sync_period_s=30.0,
    informer_sync_s=2.0,
    watch_delay_s=0.125,
    cost=SyncCostModel(0.25, 0.001),
)
NODES = ("n1", "n2", "n3")


class Nodes:
    """An API server and :data:`NODES`' kernels and kube-proxies (``cohort``: in one life)."""

    def __init__(self, *, cohort: bool, config: KubeProxyConfig = CFG) -> None:
        self.env = simpy.Environment()
        self.api = ApiServer(self.env)
        self.rec = Recorder()
        caches = RunCaches()
        self.proxies: dict[str, KubeProxy] = {}
        leader: KubeProxy | None = None
        for i, node in enumerate(NODES, start=1):
            ip = f"10.0.0.{i}"
            ctx = NodeContext.with_cluster_cidr(node, "10.244.0.0/16", node_ips=(ip,))
            timeouts = ConntrackTimeouts(udp_s=300.0, udp_stream_s=300.0)
            kernel = Kernel(node, NodeNetwork((ip,), pod_cidr=f"10.244.{i}.0/24"), 1000, timeouts)
            proxy = KubeProxy(
                self.env, node, self.api, kernel, ctx, config, self.rec, caches=caches
            )
            if cohort and leader is not None:
                proxy.start_in_step(leader)
            else:
                proxy.start()
                leader = proxy
            self.proxies[node] = proxy

    def at(self, t_s: float, action: Callable[[], object]) -> None:
        """Do ``action`` at ``t_s``."""

        def fire(_: simpy.Event) -> None:
            action()

        self.env.timeout(t_s - self.env.now).callbacks.append(fire)

    def assert_same_records(self, other: Nodes) -> None:
        """Every recorded table equal to ``other``'s, row for row (NaN equal to NaN)."""
        mine, theirs = self.rec.frames(), other.rec.frames()
        assert mine.keys() == theirs.keys()
        for name, frame in mine.items():
            pd.testing.assert_frame_equal(frame, theirs[name], obj=name)
