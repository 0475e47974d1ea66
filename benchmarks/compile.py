"""Big clusters: one node's rules for 10,000 Services x 10 endpoints, in each kube-proxy mode.

The cluster (issue 13, item 2): ``--services`` ClusterIP Services (default 10,000) of
``--endpoints`` ready endpoints each (default 10), one named port each, the endpoints spread
round robin over 100 Nodes; ``node-1`` compiles. For each mode (iptables, nftables, ipvs,
userspace) it prints:

* ``full_compile_s``: the compiler's full sync on a fresh cache (rules as data);
* ``render_s``: the text of that state (iptables-save output / ``nft -f`` input / what
  ``svcsim rules`` prints in IPVS mode, ``--format ipvsadm``: ipvsadm -Ln, ipset list,
  iptables-save / in userspace mode: the portal rules and the proxy-port table);
* ``one_endpoint_change_ms``: the sync after one endpoint of one Service moved, against the
  previous sync's cache (iptables: the compile plus the partial sync plan and its application
  to the kernel's ruleset, without stale-chain cleanup as kube-proxy in large-cluster mode
  does between two cleanups; nftables: the compile, the transaction spliced from the last
  install (:mod:`svcsim.sim.nft_splice`) and the install of the table and its parse; ipvs:
  the compile, the change count and the install through graceful termination; userspace:
  the watch handler's balancer update, then the sync's plan and portal-rule edits), as the
  simulated kube-proxy does them, after a garbage collection (see :func:`settled`);
* ``one_endpoint_change_with_cleanup_ms`` (iptables): the same sync when it also deletes stale
  chains (on a second fresh cache, after a second full compile);
* ``rules_wall_s`` / ``rules_peak_rss_mib``: ``svcsim rules`` end to end in a subprocess on the
  same cluster written as one manifest file (Services + EndpointSlices + Nodes, about 12 MB),
  peak RSS as the subprocess measures it itself (``VmHWM`` of ``/proc/self/status`` at exit);
* ``scenario.*``: the reference scenario's shape (benchmarks/simulate.py) at 1,000 nodes x
  1,000 Services x 10 Pods, 1,000 requests/s, for ``--scenario-duration`` simulated seconds:
  world build time, run time, simulated seconds per wall second, peak RSS of this process.

Each figure is printed as ``mode.name=value``. ``--sections`` picks what to run. Not a test:
nothing is asserted. Run: ``make bench-compile`` or
``.venv/bin/python benchmarks/compile.py [--services 10000] [--endpoints 10]``.
"""

from __future__ import annotations

import argparse
import gc
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from svcsim.k8s.objects import (
    SERVICE_NAME_LABEL,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    ObjectMeta,
    Service,
    ServicePort,
)
from svcsim.proxy.context import NodeContext

if TYPE_CHECKING:
    from svcsim.sim.kernel import Kernel

NODES = 100
"""Nodes the endpoints are spread over (round robin)."""
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_CIDR = "10.0.0.0/8"
MODES = ("iptables", "nftables", "ipvs", "userspace")

T = TypeVar("T")


def pod_ip(n: int) -> str:
    """The n-th Pod address in 10.0.0.0/8."""
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def cluster_ip(s: int) -> str:
    """Service ``s``'s cluster IP, inside :data:`SERVICE_CIDR`."""
    return f"10.96.{s // 250 + 1}.{s % 250 + 1}"


def endpoint_ips(s: int, endpoints: int, generation: int) -> list[str]:
    """Service ``s``'s endpoint addresses; ``generation`` 1 moves its last one."""
    first = s * endpoints
    ips = [pod_ip(first + e) for e in range(endpoints)]
    if generation:
        ips[-1] = pod_ip(16_000_000 + s)
    return ips


def node_of(s: int, e: int, endpoints: int) -> str:
    """The node endpoint ``e`` of Service ``s`` runs on."""
    return f"node-{(s * endpoints + e) % NODES + 1}"


def make_slice(s: int, endpoints: int, generation: int = 0) -> EndpointSlice:
    """Service ``s``'s EndpointSlice."""
    eps = tuple(
        Endpoint(
            addresses=(ip,),
            node_name=node_of(s, e, endpoints),
            conditions=EndpointConditions(ready=True),
        )
        for e, ip in enumerate(endpoint_ips(s, endpoints, generation))
    )
    return EndpointSlice(
        meta=ObjectMeta(
            name=f"svc{s}-1", namespace="default", labels=((SERVICE_NAME_LABEL, f"svc{s}"),)
        ),
        address_type="IPv4",
        endpoints=eps,
        ports=(EndpointPort(port=8080, name="http"),),
    )


def make_inputs(services: int, endpoints: int) -> tuple[list[Service], list[EndpointSlice]]:
    """The cluster's Services and EndpointSlices as objects."""
    svcs = [
        Service(
            meta=ObjectMeta(name=f"svc{s}", namespace="default"),
            cluster_ip=cluster_ip(s),
            ports=(ServicePort(80, name="http", target_port=8080),),
        )
        for s in range(services)
    ]
    return svcs, [make_slice(s, endpoints) for s in range(services)]


def manifest_text(services: int, endpoints: int) -> str:
    """The same cluster as one multi-document manifest (plus its Nodes)."""
    docs = [
        f"apiVersion: v1\nkind: Node\nmetadata:\n  name: node-{n}\n"
        f"status:\n  addresses:\n  - type: InternalIP\n    address: 192.168.{n // 250}.{n % 250}\n"
        for n in range(1, NODES + 1)
    ]
    for s in range(services):
        docs.append(
            f"apiVersion: v1\nkind: Service\nmetadata:\n  name: svc{s}\n  namespace: default\n"
            f"spec:\n  type: ClusterIP\n  clusterIP: {cluster_ip(s)}\n  ports:\n"
            "  - name: http\n    protocol: TCP\n    port: 80\n    targetPort: 8080\n"
        )
        eps = "".join(
            f"- addresses:\n  - {ip}\n  nodeName: {node_of(s, e, endpoints)}\n"
            "  conditions:\n    ready: true\n"
            for e, ip in enumerate(endpoint_ips(s, endpoints, 0))
        )
        docs.append(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
            f"  name: svc{s}-1\n  namespace: default\n  labels:\n"
            f"    kubernetes.io/service-name: svc{s}\naddressType: IPv4\n"
            "ports:\n- name: http\n  protocol: TCP\n  port: 8080\n"
            f"endpoints:\n{eps}"
        )
    return "---\n".join(docs)


def context() -> NodeContext:
    """node-1's kube-proxy context (ClusterCIDR detector, the node IP of the manifest)."""
    return NodeContext.with_cluster_cidr(
        "node-1", CLUSTER_CIDR, node_ips=("192.168.0.1",), node_port_addresses=("192.168.0.1/32",)
    )


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and its wall time in seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def show(name: str, value: float, unit_digits: int = 3) -> None:
    """Print one ``name=value`` figure."""
    print(f"{name}={value:.{unit_digits}f}", flush=True)


def compile_figures(mode: str, services: int, endpoints: int) -> list[tuple[str, float]]:
    """Full compile, render and one-endpoint change of ``mode`` on node-1 (see module docstring)."""
    svcs, slices = make_inputs(services, endpoints)
    changed = [*slices[:-1], make_slice(services - 1, endpoints, generation=1)]
    ctx = context()
    if mode == "iptables":
        return _iptables_figures(svcs, slices, changed, ctx)
    if mode == "ipvs":
        return _ipvs_figures(svcs, slices, changed, ctx)
    if mode == "userspace":
        return _userspace_figures(svcs, slices, changed, ctx)
    return _nftables_figures(svcs, slices, changed, ctx)


def _iptables_figures(
    svcs: list[Service],
    slices: list[EndpointSlice],
    changed: list[EndpointSlice],
    ctx: NodeContext,
) -> list[tuple[str, float]]:
    from svcsim.netfilter.text import render_save
    from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
    from svcsim.proxy.iptables import sync_from_maps
    from svcsim.sim.caches import RunCaches
    from svcsim.sim.restore import apply_plan, chain_names, plan_sync, service_chains

    def change_ms(delete_stale: bool | None) -> tuple[float, float, float]:
        """Full compile s, render s, one-endpoint change ms (stale cleanup as told)."""
        caches = RunCaches()  # what a run's World owns: the change below reuses the full sync's
        ports = build_service_port_map(svcs, caches.compile)
        before = build_endpoints_map(slices, ctx.node_name, caches.compile)
        after = build_endpoints_map(changed, ctx.node_name, caches.compile)
        first, full_s = timed(lambda: sync_from_maps(ports, before, ctx, caches.compile))
        _, render_s = timed(lambda: render_save(first.ruleset))
        kernel = first.ruleset
        nat = kernel.table("nat")

        def partial() -> object:
            compiled = sync_from_maps(ports, after, ctx, caches.compile)
            chains = service_chains(ports, after, [f"default/svc{len(svcs) - 1}"], caches)
            existing = chain_names(nat, caches)
            cleanup = not compiled.stats.large_cluster_mode if delete_stale is None else True
            plan = plan_sync(
                compiled,
                chains,
                full=False,
                existing_nat_chains=existing,
                delete_stale=cleanup,
                caches=caches,
                kernel_nat=nat,
            )
            return apply_plan(kernel, plan, caches)

        _, change_s = timed(partial)
        return full_s, render_s, change_s * 1e3

    # As the simulated kube-proxy decides (sim/kubeproxy.py): in large-cluster mode stale
    # chains go only once per syncPeriod, not at a sync right after another ...
    full_s, render_s, change = change_ms(None)
    # ... and the sync that also deletes them (stale ones found from the tables' changes).
    _, _, with_cleanup = change_ms(True)
    return [
        ("full_compile_s", full_s),
        ("render_s", render_s),
        ("one_endpoint_change_ms", change),
        ("one_endpoint_change_with_cleanup_ms", with_cleanup),
    ]


def settled() -> None:
    """Collect garbage before a timed sync (nftables, ipvs, userspace figures).

    The full sync above leaves millions of objects young; the collector's first passes over
    them (seconds at 10,000 Services, once per run in a simulation) would land in whatever is
    timed next. ``pyperf`` collects before each measurement too.
    """
    gc.collect()


def _nftables_figures(
    svcs: list[Service],
    slices: list[EndpointSlice],
    changed: list[EndpointSlice],
    ctx: NodeContext,
) -> list[tuple[str, float]]:
    from svcsim.netfilter.nftables import dump
    from svcsim.proxy import nftables
    from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
    from svcsim.sim.caches import RunCaches
    from svcsim.sim.nft_splice import install_planned, splice_sync
    from svcsim.sim.nft_sync import plan_nft_sync

    cidrs = (SERVICE_CIDR,)
    caches = RunCaches()  # what a run's World owns: the change below reuses the full sync's
    ports = build_service_port_map(svcs, caches.compile)
    before = build_endpoints_map(slices, ctx.node_name, caches.compile)
    after = build_endpoints_map(changed, ctx.node_name, caches.compile)
    table, full_s = timed(
        lambda: nftables.table_from_maps(ports, before, ctx, cidrs, caches.nft_names)
    )
    _, render_s = timed(lambda: dump(table))
    kernel = _kernel(ctx, "nftables")
    first = plan_nft_sync(None, table, (), full=True, now_s=0.0, stale_chains={})
    layout = caches.nft_names.layout(table)
    last = install_planned(kernel, first, None, layout, caches.nft_chains, 0.0)
    svc = [f"default/svc{len(svcs) - 1}"]

    def partial() -> object:
        """As sim/kubeproxy.py's nftables sync: compile, plan (spliced from the last install
        where it can be), install the table and its parse."""
        assert kernel.nft is not None and last is not None
        compiled = nftables.table_from_maps(ports, after, ctx, cidrs, caches.nft_names)
        new_layout = caches.nft_names.layout(compiled)
        fast = splice_sync(
            last,
            kernel.nft.table,
            compiled,
            new_layout,
            svc,
            full=False,
            now_s=1.0,
            stale_chains={},
            memo=caches.nft_chains,
        )
        if fast is None:
            sys.exit("nftables: the one-endpoint change was not spliced")
        plan, spliced = fast
        return install_planned(kernel, plan, spliced, new_layout, caches.nft_chains, 1.0)

    settled()
    _, change_s = timed(partial)
    return [
        ("full_compile_s", full_s),
        ("render_s", render_s),
        ("one_endpoint_change_ms", change_s * 1e3),
    ]


def _kernel(ctx: NodeContext, mode: str) -> Kernel:
    """node-1's kernel as scenario/build.py makes it (default conntrack settings)."""
    from svcsim.netfilter.conntrack_states import ConntrackTimeouts
    from svcsim.proxy.context import node_network
    from svcsim.sim.kernel import Kernel

    network = node_network(ctx, None)
    return Kernel("node-1", network, 131072, ConntrackTimeouts.kube_proxy_defaults(), mode=mode)


def _ipvs_figures(
    svcs: list[Service],
    slices: list[EndpointSlice],
    changed: list[EndpointSlice],
    ctx: NodeContext,
) -> list[tuple[str, float]]:
    from svcsim.cli.ipvs_rules import ipvs_text
    from svcsim.proxy.endpoints import build_endpoints_map, build_service_port_map
    from svcsim.proxy.ipvs import ipvs_from_maps
    from svcsim.proxy.ipvs_graceful import GracefulTermination
    from svcsim.sim.caches import RunCaches
    from svcsim.sim.ipvs_sync import install_sync, sync_counts

    caches = RunCaches()
    ports = build_service_port_map(svcs, caches.compile)
    before = build_endpoints_map(slices, ctx.node_name, caches.compile)
    after = build_endpoints_map(changed, ctx.node_name, caches.compile)
    state, full_s = timed(lambda: ipvs_from_maps(ports, before, ctx))
    # What svcsim rules --mode ipvs --format ipvsadm prints: ipvsadm -Ln, ipset list, iptables-save.
    _, render_s = timed(lambda: ipvs_text(state, "ipvsadm"))
    kernel = _kernel(ctx, "ipvs")
    graceful = GracefulTermination()
    wanted = ipvs_from_maps(ports, before, ctx, show_draining=False, memo=caches.ipvs_ports)
    install_sync(kernel, graceful, wanted, 0.0, restored=True)

    def partial() -> object:
        """As sim/kubeproxy.py's IPVS sync: compile, count the changes, install at the end."""
        assert kernel.ipvs is not None
        new = ipvs_from_maps(ports, after, ctx, show_draining=False, memo=caches.ipvs_ports)
        sync_counts(kernel.ipvs, new)
        return install_sync(kernel, graceful, new, 1.0, restored=True)

    settled()
    _, change_s = timed(partial)
    return [
        ("full_compile_s", full_s),
        ("render_s", render_s),
        ("one_endpoint_change_ms", change_s * 1e3),
    ]


def _userspace_figures(
    svcs: list[Service],
    slices: list[EndpointSlice],
    changed: list[EndpointSlice],
    ctx: NodeContext,
) -> list[tuple[str, float]]:
    import numpy as np

    from svcsim.cli.userspace_rules import userspace_text
    from svcsim.proxy.endpoints import build_service_port_map
    from svcsim.proxy.userspace import compile_userspace
    from svcsim.sim.caches import RunCaches
    from svcsim.sim.userspace_proxy import UserspaceConfig, UserspaceProcess

    state, full_s = timed(lambda: compile_userspace(svcs, slices, ctx, np.random.default_rng(1)))
    # What svcsim rules --mode userspace prints: the portal rules, then the proxy port table.
    _, render_s = timed(lambda: userspace_text(state, "save"))
    caches = RunCaches()
    ports = build_service_port_map(svcs, caches.compile)
    config = UserspaceConfig(np.random.default_rng(1), np.random.default_rng(2))
    process = UserspaceProcess(
        _kernel(ctx, "userspace"), "192.168.0.1", config, None, caches.compile
    )
    for sl in slices:
        process.slice_seen(sl, removed=False)
    process.adopt(ports, 0.0)
    moved = changed[-1]
    key = f"default/svc{len(svcs) - 1}"

    def partial() -> object:
        """As sim/kubeproxy.py: the watch handler updates the balancer, then the sync runs."""
        process.slice_seen(moved, removed=False)
        plan = process.plan(ports, {key})
        process.rules_ensured(plan)
        process.apply(plan, 1.0, iptables_ok=True)
        return plan

    settled()
    _, change_s = timed(partial)
    return [
        ("full_compile_s", full_s),
        ("render_s", render_s),
        ("one_endpoint_change_ms", change_s * 1e3),
    ]


RULES_CHILD: Final = """
import sys
from svcsim.cli import entry
try:
    entry()
finally:
    with open("/proc/self/status") as status:
        hwm = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    print(f"peak_rss_kib={hwm}", file=sys.stderr)
"""
"""The subprocess: the ``svcsim`` command, then its own peak RSS as the last stderr line.

Linux's VmHWM belongs to the process's memory since its exec; ``getrusage``'s ``ru_maxrss``
would also count what the forked benchmark process held (it survives ``execve``)."""


def rules_end_to_end(path: Path, mode: str) -> tuple[float, float]:
    """``svcsim rules`` on ``path`` in a subprocess: (wall s, its peak RSS MiB)."""
    cmd = [
        sys.executable,
        "-c",
        RULES_CHILD,
        "rules",
        str(path.resolve()),
        "--node",
        "node-1",
        "--cluster-cidr",
        CLUSTER_CIDR,
        "--mode",
        mode,
    ]
    start = time.perf_counter()
    # Run from the manifest's folder: ``python -c`` puts the working directory first on
    # sys.path, so from a checkout it would import that checkout's svcsim, not PYTHONPATH's.
    done = subprocess.run(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        cwd=path.resolve().parent,
    )
    wall = time.perf_counter() - start
    last = done.stderr.decode().rstrip("\n").rpartition("\n")[2]
    if done.returncode != 0 or not last.startswith("peak_rss_kib="):
        sys.exit(f"svcsim rules failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return wall, int(last.removeprefix("peak_rss_kib=")) / 1024


def scenario_figures(nodes: int, services: int, duration_s: float) -> list[tuple[str, float]]:
    """Run the reference scenario's shape at ``nodes`` x ``services`` (10 Pods each)."""
    from simulate import reference_yaml  # benchmarks/simulate.py, beside this file

    from svcsim.scenario.build import build_world
    from svcsim.scenario.load import load_scenario

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        text = reference_yaml(duration_s, nodes=nodes, services=services, rate=1000.0)
        # The reference generator numbers cluster IPs 10.96.1.(10+s) and keeps the default
        # node and Pod CIDRs: widen both and spread the cluster IPs for big clusters.
        text = re.sub(
            r"clusterIP: 10\.96\.1\.(\d+)",
            lambda m: f"clusterIP: {cluster_ip(int(m.group(1)) - 10)}",
            text,
        )
        text = text.replace(
            f"  nodes: {nodes}\n",
            f"  nodes: {nodes}\n  nodeCIDR: 192.168.0.0/16\n  clusterCIDR: 10.128.0.0/9\n",
        )
        path.write_text(text)
        started = time.perf_counter()
        world = build_world(load_scenario(path), 1)
        built = time.perf_counter()
        show("scenario.build_s", built - started)  # at once: the run may take long
        world.run()
        done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        ("run_s", done - built),
        ("simulated_s_per_wall_s", duration_s / (done - built)),
        ("requests", float(world.recorder.request_count)),
        ("peak_rss_mib", peak),
    ]


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument(
        "--sections",
        default="compile,rules,scenario",
        help="comma-separated: compile, rules, scenario",
    )
    parser.add_argument("--scenario-nodes", type=int, default=1000)
    parser.add_argument("--scenario-services", type=int, default=1000)
    parser.add_argument("--scenario-duration", type=float, default=5.0, help="simulated s")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    modes = [m for m in args.modes.split(",") if m]
    print(
        f"scenario: {args.services} ClusterIP Services x {args.endpoints} endpoints, "
        f"node-1 of {NODES} nodes"
    )
    if "compile" in sections:
        for mode in modes:
            for name, value in compile_figures(mode, args.services, args.endpoints):
                show(f"{mode}.{name}", value)
    if "rules" in sections:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cluster.yaml"
            path.write_text(manifest_text(args.services, args.endpoints))
            show("manifest_mb", path.stat().st_size / 1e6, 1)
            for mode in modes:
                wall, rss = rules_end_to_end(path, mode)
                show(f"{mode}.rules_wall_s", wall)
                show(f"{mode}.rules_peak_rss_mib", rss, 0)
    if "scenario" in sections:
        nodes, count = args.scenario_nodes, args.scenario_services
        print(
            f"scenario: {nodes} nodes, {count} Services x 10 Pods, 1000 requests/s, a Pod "
            f"deleted every 10 s, a rollout every 2 minutes, {args.scenario_duration:g} "
            "simulated s (iptables mode)"
        )
        for name, value in scenario_figures(nodes, count, args.scenario_duration):
            show(f"scenario.{name}", value)


if __name__ == "__main__":
    main()
