"""``svcsim explain RUN_FOLDER``: why one request of a run went as it did."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from svcsim.cli.common import console, fail


def explain(
    run_folder: Annotated[Path, typer.Argument(help="A run folder (svcsim run's output).")],
    request: Annotated[
        int | None,
        typer.Option(
            "--request",
            min=0,
            help="Request to explain: its row of requests.parquet (the run's attempts in "
            "record order; a run with records: failures-and-aggregates keeps only failed ones).",
        ),
    ] = None,
    first_failure: Annotated[
        bool, typer.Option("--first-failure", help="The run's first failed request (default).")
    ] = False,
    service: Annotated[
        str | None,
        typer.Option(
            "--service", help="The first failed request to [NS/]NAME[:PORT] (NS: default)."
        ),
    ] = None,
) -> None:
    """Walk the troubleshooting path for one request, with the cluster as it was then.

    Does the Service exist, does it have ready endpoints, what did the client node's
    kube-proxy last sync and when, where do that node's rules send the connection, what was
    the destination Pod doing - and the cause in one sentence.
    """
    from svcsim.explain import ExplainError, pick_request
    from svcsim.explain import explain as explain_request
    from svcsim.instant import InstantError, is_run_folder
    from svcsim.results import RunFolderError, load

    if not is_run_folder(run_folder):
        fail([f"{run_folder}: not a run folder with its scenario.yaml"])
    if request is not None and (first_failure or service is not None):
        fail(["--request: give it alone (not with --first-failure or --service)"])
    try:
        run = load(run_folder)
        row = pick_request(run, request=request, first_failure=first_failure, service=service)
        found = explain_request(run_folder, row)
    except (ExplainError, InstantError, RunFolderError) as exc:
        fail([str(exc)])
    out = console()
    for i, step in enumerate(found.steps, start=1):
        out.print(f"[bold]{i}. {step.title}[/bold]", highlight=False)
        for line in step.lines:
            out.print(f"   {line}", highlight=False, markup=False)
    out.print(f"[bold]Cause:[/bold] {found.cause}", highlight=False)
