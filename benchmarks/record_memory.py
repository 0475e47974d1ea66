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

Nothing is asserted; figures are printed, the last line as ``key=value`` pairs. Compare them
with ``REQUEST_PEAK_BYTES`` and ``SAMPLE_PEAK_BYTES`` in ``svcsim/scenario/cost.py``.

Run: ``.venv/bin/python benchmarks/record_memory.py [--short 60 --long 240]``.
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
        text = quiet_yaml(duration_s, nodes) if kind == "conntrack" else reference_yaml(duration_s)
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


def slope(small: dict[str, float], large: dict[str, float], rows: str) -> float:
    """Peak bytes added per extra row of kind ``rows`` between two runs (run folder included)."""
    return (large["peak_bytes"] - small["peak_bytes"]) / max(large[rows] - small[rows], 1)


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=float, default=60.0, help="short run, simulated s")
    parser.add_argument("--long", type=float, default=240.0, help="long run, simulated s")
    parser.add_argument("--nodes", type=int, default=200, help="nodes of the quiet cluster")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, duration, nodes = args.child
        print(json.dumps(measure_one(kind, float(duration), int(nodes))))
        return
    mib = 1 << 20
    figures: dict[str, float] = {}
    for kind, rows in (("requests", "requests"), ("conntrack", "samples")):
        small = child(kind, args.short, args.nodes)
        large = child(kind, args.long, args.nodes)
        for run in (small, large):
            rate = run["requests"] / run["wall_s"]
            print(
                f"{kind:9s} {run['requests']:>11,.0f} requests {run['samples']:>9,.0f} samples"
                f"  wall {run['wall_s']:6.1f} s ({rate:,.0f} requests/s)"
                f"  peak RSS {run['peak_bytes'] / mib:7,.0f} MiB"
            )
        figures[f"{rows}_peak_bytes_per_row"] = slope(small, large, rows)
        if kind == "requests":
            extra_s = large["wall_s"] - small["wall_s"]
            figures["wall_us_per_request"] = 1e6 * extra_s / (large["requests"] - small["requests"])
    figures["held_bytes_per_request"] = child("held", args.short, args.nodes)[
        "held_bytes_per_request"
    ]
    print(" ".join(f"{k}={v:.0f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
