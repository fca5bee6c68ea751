"""The typer app: every command, in the order of the data flow (run, sweep, then read results)."""

from __future__ import annotations

import typer

from rlharness.cli import analysis, listings, run, stability, submit, sweep

app = typer.Typer(
    name="rlharness",
    help="Experiments on the deadly triad: function approximation + bootstrapping + off-policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in (
    run.run,
    sweep.sweep,
    sweep.status,
    submit.submit,
    run.validate,
    stability.stability,
    listings.envs,
    listings.agents,
    analysis.catalog,
    analysis.compare,
    analysis.report,
    analysis.hypotheses,
    analysis.remedies,
    analysis.verify,
):
    app.command()(command)
