"""The ``rlharness`` command line: run experiments, validate specs, list envs and agents.

Heavy libraries are imported inside the commands so that ``rlharness --help``
answers at once. Bad input exits with status 2 and a message naming the
field, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

if TYPE_CHECKING:
    from rlharness.errors import SpecError
    from rlharness.spec import ExperimentSpec

app = typer.Typer(
    name="rlharness",
    help="Experiments on the deadly triad: function approximation + bootstrapping + off-policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

BAD_INPUT = 2

SpecArgument = Annotated[
    Path, typer.Argument(help="Experiment YAML file, e.g. experiments/triad_cube_baird.yaml.")
]


@app.command()
def run(
    spec_path: SpecArgument,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, help="Number of seeds (overrides run.seeds).")
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="Results root; the run goes to OUT/<experiment>/<run-id>/."),
    ] = Path("results"),
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or table.")] = False,
) -> None:
    """Run every grid point and seed of an experiment and write its results and plots."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from rlharness.errors import SpecError
    from rlharness.launch import run_experiment
    from rlharness.runner import check_experiment

    spec = _load(spec_path)
    try:
        check_experiment(spec, f"experiment file {spec_path}")
    except SpecError as error:
        _fail(error)
    try:
        (out / spec.name).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _fail(SpecError("--out", [f"cannot hold results under {out}: {error.strerror}"]))
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=quiet,
    )
    with progress:
        task = progress.add_task(f"{spec.name}: seeds", total=None)
        try:
            run_dir, summary = run_experiment(
                spec,
                out,
                seeds,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
                command=["rlharness", *sys.argv[1:]],
            )
        except SpecError as error:
            _fail(error)
    if not quiet:
        console.print(_summary_table(summary))
        if "knob_effects" in summary:
            console.print(_knob_table(summary))
    for figure, problem in summary.get("plot_errors", {}).items():
        errors.print(f"warning: figure {figure} was not drawn: {problem}", markup=False)
    console.print(f"results: {run_dir}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def validate(spec_path: SpecArgument) -> None:
    """Check an experiment file (every grid point against its env and agent) without running it."""
    from rlharness.errors import SpecError
    from rlharness.runner import check_experiment, plan_trials

    spec = _load(spec_path)
    try:
        check_experiment(spec, f"experiment file {spec_path}")
    except SpecError as error:
        _fail(error)
    trials = plan_trials(spec)
    console.print(
        f"{spec_path}: valid ({len(trials)} grid point(s) x {spec.run.seeds} seed(s), "
        f"agent {spec.agent.name} on {spec.env.id})",
        markup=False,
        soft_wrap=True,
    )


@app.command()
def envs() -> None:
    """List the triad environments and their constructor arguments."""
    import inspect

    import rlharness_envs
    from rlharness.environments import env_creator

    table = Table(Column("id", no_wrap=True), "arguments (defaults)", "description")
    for env_id in rlharness_envs.TRIAD_ENVS:
        creator = env_creator(env_id)
        arguments = ", ".join(
            f"{name}={parameter.default!r}"
            for name, parameter in inspect.signature(creator).parameters.items()
        )
        doc = (inspect.getdoc(creator) or "").splitlines()[0]
        table.add_row(env_id, arguments, doc)
    console.print(table)


@app.command()
def agents() -> None:
    """List the linear learning rules and what each supports."""
    from rlharness.agents.linear import RULES

    table = Table(
        Column("agent.name", no_wrap=True),
        "updates",
        "n_step",
        "target_update_period",
        "off_policy",
        "beta",
    )
    for name, rule in RULES.items():
        table.add_row(
            name,
            ", ".join(rule.updates),
            "any, inf" if rule.multi_step else "1",
            "any" if rule.target_network else "1",
            "true, false" if rule.on_policy_form else "true",
            "required" if rule.uses_beta else "-",
        )
    console.print(table)


def _load(spec_path: Path) -> ExperimentSpec:
    from rlharness.errors import SpecError
    from rlharness.spec import load_spec

    try:
        return load_spec(spec_path)
    except SpecError as error:
        _fail(error)


def _fail(error: SpecError) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(error.where)}:", highlight=False, soft_wrap=True)
    for message in error.messages:
        errors.print(f"  - {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(BAD_INPUT)


def _summary_table(summary: dict) -> Table:
    """Outcome counts and median final metrics per grid point."""
    variants = summary["variants"]
    outcomes = list(dict.fromkeys(o for v in variants for o in v["outcome_counts"]))
    finals = list(variants[0]["median_final"])
    table = Table(title=f"{summary['experiment']} ({summary['agent']} on {summary['env']})")
    table.add_column("grid point")
    for column in ("seeds", *outcomes, *(f"median final {name}" for name in finals)):
        table.add_column(column, justify="right")
    for variant in variants:
        table.add_row(
            variant["label"],
            str(variant["seeds"]),
            *(str(variant["outcome_counts"].get(outcome, 0)) for outcome in outcomes),
            *(_number(variant["median_final"][name]) for name in finals),
        )
    return table


def _knob_table(summary: dict) -> Table:
    """Diverged fraction with its 95% Wilson interval per value of each grid field."""
    rows = summary["knob_effects"]
    extra = [key for key in rows[0] if key.startswith("median_")]
    table = Table(title="divergence by knob value (pooled over the other fields and seeds)")
    for column in ("knob", "value", "runs", "diverged", "fraction [95% CI]", *extra):
        table.add_column(column, justify="left" if column in ("knob", "value") else "right")
    for row in rows:
        interval = f"{row['diverged_fraction']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        table.add_row(
            row["knob"],
            row["value"],
            str(row["runs"]),
            str(row["diverged"]),
            interval,
            *(_number(row[key]) for key in extra),
        )
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
