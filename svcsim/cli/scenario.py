"""``svcsim validate FILE...`` and ``svcsim schema``: check scenario files, print their schema.

``validate`` prints ``FILE: ok (3 nodes, 1 workload, 12 timeline actions)`` per good file and
the problem lines (``file:line: field: message``) of bad ones on stderr; the exit code is 2
if any file has a problem. ``schema`` prints the JSON Schema editors use for completion and
checking (``# yaml-language-server: $schema=scenario.schema.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

# svcsim.scenario (pydantic, YAML, the Kubernetes loaders) is imported inside the commands,
# so that ``svcsim --help`` and the other commands start fast.

EXIT_PROBLEMS = 2
"""Exit code when any file has a problem (as for a usage error: the input is wrong)."""


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def validate(
    files: Annotated[
        list[Path], typer.Argument(help="Scenario files to check.", metavar="FILE...")
    ],
) -> None:
    """Check scenario files: schema, defaults, references and their Kubernetes manifests."""
    from svcsim.scenario import ScenarioErrors, load_scenario

    failed = False
    for file in files:
        try:
            loaded = load_scenario(file)
        except ScenarioErrors as exc:
            failed = True
            for line in exc.problems:
                typer.echo(line, err=True)
            continue
        except Exception as exc:  # a loader bug must not end in a traceback
            failed = True
            typer.echo(f"{file}: internal error while loading (please report): {exc!r}", err=True)
            continue
        s = loaded.scenario
        summary = ", ".join([
            _count(len(s.cluster.nodes), "node"),
            _count(len(s.workloads), "workload"),
            _count(len(s.timeline), "timeline action"),
        ])
        typer.echo(f"{file}: ok ({summary})")
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
