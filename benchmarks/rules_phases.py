"""Where ``svcsim rules`` spends its time on a big manifest, phase by phase, in one process.

``benchmarks/compile.py --sections rules`` measures the command end to end in a subprocess;
this splits the same work into its phases, so that the reader's share and the compiler's
share can be followed apart (issue 13, item 2):

* ``load_s``: reading and checking the manifest file(s) and building the node's kube-proxy
  context (``svcsim.cli.rules._prepare_node``: load, cluster IP allocation, checks);
* ``slices_s``: the EndpointSlices kube-proxy would see (``effective_endpoint_slices``);
* ``compile_s``: the mode's compiler (rules as data);
* ``render_s``: the text the command prints, and writing it (to ``/dev/null``);
* ``peak_rss_mib``: this process's peak RSS after all phases (``ru_maxrss``); after each
  phase, ``mode.phase_rss_mib`` is the RSS then (``VmRSS``).

Each phase runs with the cyclic collector paused, as the command runs. Figures are
printed as ``mode.phase=value``, wall seconds and, beside them, CPU seconds
(``mode.phase_cpu``: less noisy on a shared machine). Not a test: nothing is asserted.

Run: ``.venv/bin/python benchmarks/rules_phases.py MANIFEST [--mode iptables]`` (write the
manifest with ``benchmarks/compile.py``'s ``manifest_text``, or ``--services N`` here).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CLUSTER_CIDR = "10.0.0.0/8"
"""The ClusterCIDR detector of benchmarks/compile.py's rules section."""


def rss_mib() -> float:
    """This process's resident memory now (``VmRSS``), MiB."""
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
    return int(kib) / 1024


def phase(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn``; print its wall and CPU seconds and the RSS after it; return its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    print(f"{name}={time.perf_counter() - wall:.3f}")
    print(f"{name}_cpu={time.process_time() - cpu:.3f}")
    print(f"{name.removesuffix('_s')}_rss_mib={rss_mib():.0f}")
    return out


def run(path: Path, mode: str) -> None:
    """The phases of ``svcsim rules path --node node-1 --mode mode``."""
    from svcsim.cli.rules import ProxySwitches, _prepare_node
    from svcsim.k8s import effective_endpoint_slices
    from svcsim.proxy.gcpause import collector_paused

    switches = ProxySwitches(cluster_cidr=CLUSTER_CIDR)
    with collector_paused():
        manifests, context = phase(
            f"{mode}.load_s",
            lambda: _prepare_node([path], "node-1", None, switches, mode=mode),  # type: ignore[arg-type]
        )
        slices = phase(f"{mode}.slices_s", lambda: effective_endpoint_slices(manifests))
        render: Callable[[], str]
        if mode == "iptables":
            from svcsim.netfilter.text import render_save
            from svcsim.proxy.caches import CompileCaches
            from svcsim.proxy.iptables import compile_iptables_sync

            sync = phase(
                f"{mode}.compile_s",
                lambda: compile_iptables_sync(manifests.services, slices, context, CompileCaches()),
            )
            render = lambda: render_save(sync.ruleset)  # noqa: E731
        elif mode == "nftables":
            from svcsim.netfilter.nftables import dump
            from svcsim.proxy.nftables import compile_nftables

            table = phase(
                f"{mode}.compile_s",
                lambda: compile_nftables(
                    manifests.services, slices, context, manifests.ipv4_service_cidrs or ()
                ),
            )
            render = lambda: dump(table)  # noqa: E731
        elif mode == "ipvs":
            from svcsim.cli.ipvs_rules import ipvs_text
            from svcsim.proxy.ipvs import compile_ipvs

            state = phase(
                f"{mode}.compile_s",
                lambda: compile_ipvs(manifests.services, slices, context, "rr"),
            )
            render = lambda: ipvs_text(state, "json")  # noqa: E731
        else:
            import numpy as np

            from svcsim.cli.userspace_rules import userspace_text
            from svcsim.proxy.userspace import compile_userspace

            us = phase(
                f"{mode}.compile_s",
                lambda: compile_userspace(
                    manifests.services, slices, context, np.random.default_rng(0), None
                ),
            )
            render = lambda: userspace_text(us, "save")  # noqa: E731

        def write() -> None:
            with open("/dev/null", "w") as sink:
                sink.write(render())

        phase(f"{mode}.render_s", write)
    print(f"{mode}.peak_rss_mib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("manifest", nargs="?", type=Path, help="default: write one")
    parser.add_argument("--mode", default="iptables")
    parser.add_argument("--services", type=int, default=10_000)
    args = parser.parse_args()
    if args.manifest is not None:
        run(args.manifest, args.mode)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from compile import manifest_text  # benchmarks/compile.py, beside this file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.yaml"
        path.write_text(manifest_text(args.services, 10))
        run(path, args.mode)


if __name__ == "__main__":
    main()
