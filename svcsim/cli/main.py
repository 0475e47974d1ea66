"""The ``svcsim`` command: one Typer application, one sub-command per module."""

import typer

from svcsim.cli import chain, diff, explain, plot, rules, run, scenario, sweep

app = typer.Typer(
    name="svcsim",
    help="Simulate the Kubernetes Service data plane, kube-proxy- and kernel-exact.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain one-line usage errors, as click prints them
)


@app.callback()
def main() -> None:
    """Simulate the Kubernetes Service data plane, kube-proxy- and kernel-exact."""


app.command("run")(run.run)
app.command("sweep")(sweep.sweep)
app.command("chain")(chain.chain)
app.command("rules")(rules.rules)
app.command("trace")(rules.trace_command)
app.command("diff")(diff.diff)
app.command("explain")(explain.explain)
app.command("validate")(scenario.validate)
app.command("schema")(scenario.schema)
app.command("plot")(plot.plot)
app.command("report")(plot.report)
