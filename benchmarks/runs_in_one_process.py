"""Memory of many runs in one process (as a sweep's worker or a notebook does them).

The benchmark's reference scenario (``benchmarks/simulate.py``: 20 nodes, 10 Services x 10
Pods, 5,000 requests/s) is run ``--rounds`` times for ``--duration`` simulated seconds with two
seeds per round, each World dropped after its run. After each round it prints the resident
set size and the number of entries svcsim holds at module level (module-level dicts, lists and
sets, and ``functools`` memos). Speed state belongs to each run (DESIGN.md decision 8,
:mod:`svcsim.sim.caches`), so neither should grow from round to round: the module-level entries
are pure memos of strings and frozen values, the same after every round. Nothing is asserted;
the last line reads ``rss_growth_mib=N module_entries_growth=M`` (last round minus first).

Run: ``.venv/bin/python benchmarks/runs_in_one_process.py [--rounds 5] [--duration 60]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import tempfile
from pathlib import Path

from simulate import reference_yaml  # benchmarks/simulate.py, beside this file

from svcsim.scenario.build import build_world
from svcsim.scenario.load import load_scenario


def rss_mib() -> float:
    """This process's resident set size now (``VmRSS``), in MiB."""
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
    return int(kib) / 1024


def module_entries() -> int:
    """Entries held at module level by svcsim's modules (containers and ``functools`` memos)."""
    total = 0
    for name, module in list(sys.modules.items()):
        if name != "svcsim" and not name.startswith("svcsim."):
            continue
        for value in vars(module).values():
            if isinstance(value, (dict, list, set)):
                total += len(value)
            elif isinstance(value, functools._lru_cache_wrapper):
                total += value.cache_info().currsize
    return total


def main() -> None:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=60.0, help="simulated s per run")
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "reference.yaml"
    path.write_text(reference_yaml(args.duration))
    loaded = load_scenario(path)
    figures: list[tuple[float, int]] = []
    for round_ in range(args.rounds):
        for seed in (1, 2):
            world = build_world(loaded, seed)
            world.run()
            del world
        gc.collect()
        figures.append((rss_mib(), module_entries()))
        print(f"round {round_}: rss_mib={figures[-1][0]:.0f} module_entries={figures[-1][1]}")
    (rss0, entries0), (rss1, entries1) = figures[0], figures[-1]
    print(f"rss_growth_mib={rss1 - rss0:.0f} module_entries_growth={entries1 - entries0}")


if __name__ == "__main__":
    main()
