"""``svcsim validate FILE...`` and ``svcsim schema``: check scenario files, print their schema.

``validate`` prints ``FILE: ok (3 nodes, 1 workload, 1 timeline action)`` per good file and
the problem lines (``file:line: field: message``) of bad ones on stderr; the exit code is 2
if any file has a problem, 1 if loading one hit a bug in svcsim (docs/errors.md). The
manifest loader's warnings (a skipped kind, an ignored field) go to stderr too.
``schema`` prints the JSON Schema editors use for completion and checking
(``# yaml-language-server: $schema=scenario.schema.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from svcsim.cli.common import warn
from svcsim.k8s.errors import problem_line

# svcsim.scenario (pydantic, YAML, the Kubernetes loaders) is imported inside the commands,
# so that ``svcsim --help`` and the other commands start fast.

EXIT_PROBLEMS = 2
"""Exit code when any file has a problem (as for a usage error: the input is wrong)."""

EXIT_INTERNAL_ERROR = 1
"""Exit code when loading a file raised something other than ScenarioErrors: a bug."""

ALLOW_OUTSIDE_PATHS_HELP = (
    "Let manifest paths in the scenario name files outside the scenario's directory."
)
"""Help of ``--allow-outside-paths`` (``validate`` and ``run`` share the option)."""

SET_HELP = (
    "Override a scenario field before validation: KEY=VALUE, KEY a field path as problem lines "
    "print it (cluster.proxy.minSyncPeriod, workloads[0].rate), VALUE read as YAML. Repeatable."
)
"""Help of ``--set`` (``validate``, ``run`` and ``sweep`` share the grammar; docs/sweep.md)."""


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def validate(
    files: Annotated[
        list[Path], typer.Argument(help="Scenario files to check.", metavar="FILE...")
    ],
    allow_outside_paths: Annotated[
        bool, typer.Option("--allow-outside-paths", help=ALLOW_OUTSIDE_PATHS_HELP)
    ] = False,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help=SET_HELP + " KEY=V1,V2 checks each value (as svcsim sweep runs them).",
        ),
    ] = None,
) -> None:
    """Check scenario files: schema, defaults, references and their Kubernetes manifests."""
    from svcsim.cli.common import fail
    from svcsim.scenario import ScenarioErrors, load_scenario
    from svcsim.scenario.cost import estimate
    from svcsim.scenario.overrides import OverrideError, combinations, parse_settings

    try:
        points = combinations(parse_settings(sets or []))
    except OverrideError as exc:
        fail([str(exc)])
    failed = False
    broken = False
    for file in files:
        try:
            problems: list[str] = []
            for point in points:
                try:
                    loaded = load_scenario(
                        file, allow_outside_paths=allow_outside_paths, overrides=point
                    )
                except ScenarioErrors as exc:
                    problems.extend(p for p in exc.problems if p not in problems)
            if problems:
                raise ScenarioErrors(problems)
        except ScenarioErrors as exc:
            failed = True
            for line in exc.problems:
                typer.echo(line, err=True)
            continue
        except Exception as exc:  # the last resort: bad input raises ScenarioErrors
            # Not the user's mistake but a bug: one line to report, the other files still
            # checked, and exit code 1 rather than 2, so scripts do not blame the input.
            broken = True
            what = f"{type(exc).__name__}: {exc}"
            typer.echo(problem_line(f"{file}: internal error (please report): {what}"), err=True)
            continue
        warn(loaded.warnings)  # skipped kinds, ignored fields: loaded, but worth a look
        s = loaded.scenario
        summary = ", ".join(
            [
                _count(len(s.cluster.nodes), "node"),
                _count(len(s.workloads), "workload"),
                _count(len(s.timeline), "timeline action"),
            ]
        )
        each = f", each of {len(points)} --set combinations" if len(points) > 1 else ""
        typer.echo(f"{file}: ok ({summary}{each})")
        cost = estimate(s)
        if cost.large:
            warn([f"{file}: large run: {cost.describe()}"])
    if broken:
        raise typer.Exit(EXIT_INTERNAL_ERROR)
    if failed:
        raise typer.Exit(EXIT_PROBLEMS)


def schema(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the schema to this file instead of stdout."),
    ] = None,
) -> None:
    """Print the JSON Schema of scenario files (for editors: yaml-language-server)."""
    from svcsim.scenario import scenario_json_schema

    text = json.dumps(scenario_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"{output}: cannot write: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_PROBLEMS) from None
    typer.echo(f"wrote {output}", err=True)
