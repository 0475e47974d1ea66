"""Fuzzing the loader: seeded mutants of the shipped scenarios and example manifests.

Whatever the input, ``load_scenario`` raises nothing but ScenarioErrors, every problem
line starts with ``file:LINE:``, ``svcsim validate`` exits 0 or 2 without a traceback, and
a scenario it accepts can be built and run ("validate accepts exactly what run can run").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from svcsim.cli.main import app
from svcsim.scenario import ScenarioErrors, load_scenario
from svcsim.scenario.build import build_world

from .fuzz_cases import MANIFESTS, PROBLEM_LINE, SCENARIOS, Mutant, Mutator

SEED = int(os.environ.get("SVCSIM_FUZZ_SEED", "20261207"))
"""Fixed in the suite; set SVCSIM_FUZZ_SEED to explore other mutants."""
LOAD_MUTANTS_PER_FILE = 6
CLI_MUTANTS = 24
RUN_MUTANTS = 100


def _load_failure(mutant: Mutant, folder: Path) -> str | None:
    """Why loading ``mutant`` broke the contract, or None."""
    path = mutant.write(folder)
    try:
        load_scenario(path)
    except ScenarioErrors as exc:
        bad = [p for p in exc.problems if not PROBLEM_LINE.match(p) or "\n" in p]
        return f"{mutant.name}: lines without file:line: {bad[:2]}" if bad else None
    except Exception as exc:  # what the test looks for
        return f"{mutant.name}: {type(exc).__name__}: {exc!s:.200}"
    return None


def test_load_raises_only_located_problems(tmp_path: Path) -> None:
    mutator = Mutator(np.random.default_rng(SEED))
    failures = []
    for source in (*SCENARIOS, *MANIFESTS):
        for n in range(LOAD_MUTANTS_PER_FILE):
            mutant = (
                mutator.scenario_mutant(source, n)
                if source in SCENARIOS
                else mutator.manifest_mutant(source, n)
            )
            failure = _load_failure(mutant, tmp_path / f"{source.stem}-{n}")
            if failure:
                failures.append(failure)
    assert failures == []


def test_validate_exits_0_or_2_with_located_lines(tmp_path: Path) -> None:
    mutator = Mutator(np.random.default_rng(SEED + 1))
    runner = CliRunner()
    sources = (*SCENARIOS, *MANIFESTS)
    failures = []
    for n in range(CLI_MUTANTS):
        source = sources[n % len(sources)]
        mutant = (
            mutator.scenario_mutant(source, n)
            if source in SCENARIOS
            else mutator.manifest_mutant(source, n)
        )
        path = mutant.write(tmp_path / str(n))
        result = runner.invoke(app, ["validate", str(path)])
        lines = [line.removeprefix("warning: ") for line in result.stderr.splitlines()]
        problems = not result.stderr.startswith("warning: ") and bool(lines)
        if (
            result.exit_code not in (0, 2)
            or "Traceback" in result.stdout + result.stderr
            or not all(PROBLEM_LINE.match(line) for line in lines)
            or (result.exit_code == 2) != problems
        ):
            failures.append(f"{mutant.name}: exit {result.exit_code}: {lines[:2]}")
    assert failures == []


def test_accepted_mutants_build_and_run(tmp_path: Path) -> None:
    mutator = Mutator(np.random.default_rng(SEED + 2))
    failures = []
    accepted = 0
    for n in range(RUN_MUTANTS):
        source = SCENARIOS[n % len(SCENARIOS)]
        mutant = mutator.runnable_mutant(source, n)
        try:
            loaded = load_scenario(mutant.write(tmp_path / str(n)))
        except ScenarioErrors:
            continue
        accepted += 1
        try:
            build_world(loaded, 1).run()
        except Exception as exc:  # what the test looks for
            failures.append(f"{mutant.name}: {type(exc).__name__}: {exc!s:.200}")
    assert accepted >= RUN_MUTANTS // 3  # else the mutants test nothing
    assert failures == []
