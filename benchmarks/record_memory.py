"""Memory per recorded row: the figures behind the limits in ``svcsim.scenario.cost``.

A run keeps every record in memory until it writes the run folder, then builds DataFrames,
the summary and the Parquet files from them: the peak memory of ``svcsim run`` grows with the
number of rows. This script measures that growth, each measurement in a fresh process (a
process's peak resident set size never goes down):

* **requests**: the benchmark's reference scenario (``benchmarks/simulate.py``: 20 nodes,
  5,000 requests/s) at two durations; the peak RSS of a whole ``run_scenario`` (simulate,
  summarise, write, load back) grows by *peak bytes per request* between them. The recorder's
  own arrays (what is held while simulating) are reported too, as *held bytes per request*.
* **conntrack samples**: a scenario without traffic, many nodes, at two durations; each node
  is sampled every second, so the peak grows by *peak bytes per sample*.
* **nodes**: the same quiet scenario for 5 simulated seconds with two node counts: the wall
  time and the peak added per node (building each node's kube-proxy and kernel, and the
  figures' per-node series).

Each kind also reports the wall time added per row.

Nothing is asserted; figures are printed, the last line as ``key=value`` pairs. Compare them
with the constants of ``svcsim/scenario/cost.py`` (``REQUEST_PEAK_BYTES``,
``NODE_SECOND_PEAK_BYTES``, ``WALL_S_PER_REQUEST``, ``WALL_S_PER_NODE_SECOND``,
``WALL_S_PER_NODE``).

Run: ``.venv/bin/python benchmarks/record_memory.py [--short 60 --long 240]`` (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulate import reference_yaml

from svcsim.results.records import Recorder
from svcsim.runs import run_scenario
from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario


def quiet_yaml(duration_s: float, nodes: int) -> str:
    """A cluster without traffic: only control-plane records (conntrack samples, syncs)."""
    return f"""apiVersion: svcsim/v1
kind: Scenario
metadata: {{name: quiet}}
seed: 1
duration: {duration_s:g}s
cluster:
  nodes: {nodes}
  nodeCIDR: 192.168.0.0/16
  clusterCIDR: 10.128.0.0/9
"""


def held_bytes(recorder: Recorder) -> int:
    """Bytes of the request arrays a recorder holds (its per-column chunks)."""
    return sum(a.nbytes for chunks in recorder._chunks.values() for a in chunks)


def measure_one(kind: str, duration_s: float, nodes: int) -> dict[str, float]:
    """One run in this process: rows recorded, wall time, peak RSS.

    ``kind`` ``held`` simulates the reference scenario only and reports the recorder's bytes
    per request; ``requests`` and ``conntrack`` run the whole ``run_scenario``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.yaml"
        quiet = kind in ("conntrack", "nodes")
        text = quiet_yaml(duration_s, nodes) if quiet else reference_yaml(duration_s)
        path.write_text(text)
        loaded = load_scenario(path)
        started = time.perf_counter()
        if kind == "held":
            world = build_world(loaded, 1)
            world.run()
            n = world.recorder.request_count
            return {
                "requests": n,
                "samples": 0,
                "nodes": nodes,
                "wall_s": time.perf_counter() - started,
                "peak_bytes": 0,
                "held_bytes_per_request": held_bytes(world.recorder) / n,
            }
        outcome = run_scenario(loaded, seed=1, out_dir=Path(tmp) / "run")
        wall = time.perf_counter() - started
        samples = len(outcome.run.conntrack)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "requests": outcome.simulated_requests,
        "samples": samples,
        "nodes": nodes,
        "wall_s": wall,
        "peak_bytes": peak,
        "held_bytes_per_request": 0,
    }


def child(kind: str, duration_s: float, nodes: int) -> dict[str, float]:
    """:func:`measure_one` in a fresh Python process (its own peak RSS)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(duration_s), str(nodes)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def slope(small: dict[str, float], large: dict[str, float], rows: str, of: str) -> float:
    """``of`` (peak bytes, wall s) added per extra row of kind ``rows`` between two runs."""
    return (large[of] - small[of]) / max(large[rows] - small[rows], 1)


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=float, default=60.0, help="short run, simulated s")
    parser.add_argument("--long", type=float, default=240.0, help="long run, simulated s")
    parser.add_argument("--nodes", type=int, default=200, help="nodes of the quiet cluster")
    parser.add_argument("--few", type=int, default=250, help="fewer nodes, 5 simulated s")
    parser.add_argument("--many", type=int, default=1000, help="more nodes, 5 simulated s")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, duration, nodes = args.child
        print(json.dumps(measure_one(kind, float(duration), int(nodes))))
        return
    mib = 1 << 20
    experiments = (  # kind, the row it adds, (duration, nodes) of the small and large run
        ("requests", "requests", (args.short, args.nodes), (args.long, args.nodes)),
        ("conntrack", "samples", (args.short, args.nodes), (args.long, args.nodes)),
        ("nodes", "nodes", (5.0, args.few), (5.0, args.many)),
    )
    figures: dict[str, float] = {}
    for kind, rows, few, many in experiments:
        small, large = child(kind, *few), child(kind, *many)
        for run in (small, large):
            print(
                f"{kind:9s} {run['requests']:>11,.0f} requests {run['samples']:>9,.0f} samples"
                f" {run['nodes']:>6,.0f} nodes  wall {run['wall_s']:6.1f} s"
                f"  peak RSS {run['peak_bytes'] / mib:7,.0f} MiB"
            )
        figures[f"{kind}_peak_bytes_per_{rows}"] = slope(small, large, rows, "peak_bytes")
        figures[f"{kind}_wall_us_per_{rows}"] = 1e6 * slope(small, large, rows, "wall_s")
    held = child("held", args.short, args.nodes)
    figures["held_bytes_per_request"] = held["held_bytes_per_request"]
    figures["simulated_requests_per_wall_s"] = held["requests"] / held["wall_s"]
    print(" ".join(f"{k}={v:.0f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
