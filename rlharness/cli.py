"""The ``rlharness`` command line: run and sweep experiments, show studies, validate specs,
compare and report results.

Heavy libraries are imported inside the commands so that ``rlharness --help``
answers at once. Bad input exits with status 2 and a message naming the
field, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Column, Table

from rlharness import cli_analysis

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from rlharness.errors import ResultsWriteError, SpecError
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
app.command()(cli_analysis.catalog)
app.command()(cli_analysis.compare)
app.command()(cli_analysis.report)
app.command()(cli_analysis.verify)

FAULT = 1
"""A fault of the machinery (storage, disk), reported in one message; rerunning resumes."""
BAD_INPUT = 2
INTERRUPTED = 130
TABLE_ROWS = 20

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
    """Run every grid point and seed of an experiment and write its results and plots.

    Exits 1 when the results cannot be written (a full disk), naming the file and
    the free space; the files that fit stay in a ``.partial`` staging dir.
    """
    from rlharness.errors import ResultsWriteError, SpecError
    from rlharness.local_run import run_experiment
    from rlharness.runner import check_experiment

    spec = _load(spec_path)
    try:
        if seeds is not None:
            spec = _with_seeds(spec, seeds)
        check_experiment(spec, f"experiment file {spec_path}")
    except SpecError as error:
        _fail(error)
    try:
        (out / spec.name).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _fail(SpecError("--out", [f"cannot hold results under {out}: {error.strerror}"]))
    progress = _progress(quiet)
    with progress:
        task = progress.add_task(f"{spec.name}: seeds", total=None)
        try:
            run_dir, summary = run_experiment(
                spec,
                out,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
                command=["rlharness", *sys.argv[1:]],
            )
        except SpecError as error:
            _fail(error)
        except ResultsWriteError as error:
            _write_failed(error, out, "free space and run the same command again")
    if not quiet:
        console.print(_summary_table(summary))
        if "knob_effects" in summary:
            console.print(_knob_table(summary))
    for figure, problem in summary.get("plot_errors", {}).items():
        errors.print(f"warning: figure {figure} was not drawn: {problem}", markup=False)
    console.print(f"results: {run_dir}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def sweep(
    spec_path: SpecArgument,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            envvar="RLHARNESS_STORAGE",
            help="Optuna storage URL (default: sqlite:///OUT/<experiment>/optuna.db); "
            "postgresql://user:password@host/db on a cluster. Pass a URL with a password "
            "through RLHARNESS_STORAGE, not the command line.",
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: the experiment's name).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT "
            "(default: start a local Ray on this machine).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Trials in flight at once (default: every core, or the cluster's CPUs).",
        ),
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", min=1, help="Trials to finish (overrides sweep.n_trials)."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Results root; trials go to OUT/<experiment>/sweep-<study>/trial-<n>/."
        ),
    ] = Path("results"),
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or table.")] = False,
) -> None:
    """Sweep an experiment with Optuna on Ray workers; running it again resumes the study."""
    from rlharness.errors import SpecError
    from rlharness.sweep.search_space import plan_sweep

    spec = _load(spec_path)
    try:
        plan = plan_sweep(spec, n_trials, f"experiment file {spec_path}")
        _check_out(out)
    except SpecError as error:
        _fail(error)
    import optuna

    from rlharness.errors import ResultsWriteError, StorageLostError
    from rlharness.sweep import run_sweep  # Ray and the results store: only once the input is good

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    progress = _progress(quiet)
    try:
        with progress:
            task = progress.add_task(f"{study or spec.name}: trials", total=plan.budget)
            report = run_sweep(
                plan,
                out,
                storage,
                study,
                address,
                workers,
                command=["rlharness", *sys.argv[1:]],
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except SpecError as error:
        _fail(error)
    except StorageLostError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        errors.print(
            "the trials in flight were stopped and stay RUNNING in the study; once the database "
            "is back, run the same command again: it re-queues them and resumes to the budget",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(FAULT) from None
    except ResultsWriteError as error:
        _write_failed(
            error,
            out,
            "the trial was failed and its point re-queued, the trials in flight too; "
            "free space and run the same command again to resume",
        )
    except KeyboardInterrupt:
        errors.print("interrupted; run the same command again to resume", highlight=False)
        raise typer.Exit(INTERRUPTED) from None
    if not quiet:
        maximize = plan.sweep.direction == "maximize"
        console.print(_trials_table(report.trials, report.study, maximize, best_first=True))
    for note in report.notes:
        errors.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    _plain(
        f"study: {report.study} in {report.storage}: "
        f"{min(report.finished, report.budget)} of {report.budget} trials finished"
    )
    _plain(f"results: {report.results_dir}")
    if report.error is not None:
        errors.print(f"error: {report.error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if report.interrupted:
        errors.print(
            "interrupted: trials in flight were re-queued; run the same command again to resume",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(INTERRUPTED)


@app.command()
def status(
    target: Annotated[
        str,
        typer.Argument(
            help="A study name, or an experiment file (its name is the default study name)."
        ),
    ],
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            envvar="RLHARNESS_STORAGE",
            help="Optuna storage URL (default: sqlite:///OUT/<study>/optuna.db).",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Results root holding the default storage.")
    ] = Path("results"),
) -> None:
    """Show a study's trials from its storage: state, params, value, divergence outcomes."""
    from rlharness.errors import SpecError
    from rlharness.masking import mask
    from rlharness.storage import default_url, load_study
    from rlharness.sweep.study import DEFINITION

    name = _load(Path(target)).name if target.endswith((".yaml", ".yml")) else target
    url = storage or default_url(out, name)
    try:
        study = load_study(url, name)
    except SpecError as error:
        _fail(error)
    definition = study.user_attrs.get(DEFINITION, {})
    trials = study.get_trials(deepcopy=False)
    counts = Counter(trial.state.name for trial in trials)
    _plain(
        f"study {name} in {mask(url, url)}: {definition.get('objective', 'value')} "
        f"({definition.get('aggregate', '-')} over seeds), {study.direction.name.lower()}; "
        + (", ".join(f"{count} {state}" for state, count in sorted(counts.items())) or "no trials")
    )
    maximize = study.direction.name == "MAXIMIZE"
    console.print(_trials_table(trials, name, maximize, best_first=False))


@app.command()
def validate(spec_path: SpecArgument) -> None:
    """Check an experiment file without running it: every grid point, and the sweep's plan."""
    from rlharness.errors import SpecError
    from rlharness.runner import check_experiment, plan_trials
    from rlharness.sweep.search_space import plan_sweep

    spec = _load(spec_path)
    where = f"experiment file {spec_path}"
    sweep_note = ""
    try:
        check_experiment(spec, where)
        if spec.sweep is not None:
            # the trial budget may come from sweep --n-trials; the space is checked either way
            budget = 1 if spec.sweep.sampler != "grid" and spec.sweep.n_trials is None else None
            plan = plan_sweep(spec, budget, where)
            trials_text = f"{plan.budget} trial(s)" if budget is None else "--n-trials trials"
            sweep_note = f"; sweep: {trials_text}, {plan.sweep.sampler} sampler over {plan.source}"
    except SpecError as error:
        _fail(error)
    trials = plan_trials(spec)
    console.print(
        f"{spec_path}: valid ({len(trials)} grid point(s) x {spec.run.seeds} seed(s), "
        f"agent {spec.agent.name} on {spec.env.id}{sweep_note})",
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


def _with_seeds(spec: ExperimentSpec, seeds: int) -> ExperimentSpec:
    """``spec`` with ``--seeds`` as its run.seeds, validated like the file (bounds, memory)."""
    from rlharness.spec import parse_spec

    data = spec.model_dump()
    data["run"]["seeds"] = seeds
    return parse_spec(data, "--seeds")


def _progress(quiet: bool) -> Progress:
    """A bar of finished out of total items, with elapsed time, on stderr."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=quiet,
    )


def _fail(error: SpecError) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(error.where)}:", highlight=False, soft_wrap=True)
    for message in error.messages:
        errors.print(f"  - {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(BAD_INPUT)


def _write_failed(error: ResultsWriteError, out: Path, next_step: str) -> NoReturn:
    """One message for results that could not be written, what was kept, and what to do; exit 1."""
    errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
    if error.staging_dir is not None:
        errors.print(
            f"  the files written before it are kept in {error.staging_dir} "
            f"({', '.join(error.kept)}); that is not a run, and the catalog skips it",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    errors.print(
        f"  {next_step}; `rlharness verify {out} --remove-partial` removes what unfinished "
        "runs left behind",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(FAULT)


def _check_out(out: Path) -> None:
    """``out`` is, or can become, a writable directory (nothing is created here)."""
    from rlharness.errors import SpecError

    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise SpecError(
            "--out", [f"cannot hold results under {out}: {existing} is not a writable directory"]
        )


def _trials_table(trials: list[FrozenTrial], study: str, maximize: bool, best_first: bool) -> Table:
    """One row per trial: state, params, value, seeds, divergence outcomes and why it failed."""
    from optuna.trial import TrialState

    from rlharness.sweep.study import OUTCOMES, PER_SEED, params_of

    rows = list(trials)
    if best_first:
        rows = [t for t in rows if t.state == TrialState.COMPLETE and t.value is not None]
        rows.sort(key=lambda t: float(t.value or 0.0), reverse=maximize)
        rows = rows[:TABLE_ROWS]
    paths = list(dict.fromkeys(path for trial in trials for path in params_of(trial)))
    title = f"{study}: best {len(rows)} trials" if best_first else f"{study}: {len(rows)} trials"
    table = Table(title=title)
    for column in ("#", "state", *paths, "value", "seeds", "outcomes", "note"):
        table.add_column(column, justify="right" if column in ("#", "value", "seeds") else "left")
    for trial in rows:
        params = params_of(trial)
        attrs = trial.user_attrs
        table.add_row(
            str(trial.number),
            trial.state.name,
            *(_param(params.get(path, "-")) for path in paths),
            _number(trial.value),
            str(len(attrs[PER_SEED])) if PER_SEED in attrs else "-",
            ", ".join(f"{name} {count}" for name, count in attrs.get(OUTCOMES, {}).items()),
            _note(trial),
        )
    return table


def _param(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _note(trial: FrozenTrial) -> str:
    from rlharness.sweep.study import ERROR, FAIL_REASON, PER_SEED, RETRY_OF, SUPERSEDED

    attrs = trial.user_attrs
    for key in (ERROR, FAIL_REASON, SUPERSEDED):
        if key in attrs:
            return str(attrs[key])
    if trial.state.name == "PRUNED":
        return f"pruned after {len(attrs.get(PER_SEED, {}))} seed(s)"
    if RETRY_OF in attrs:
        return f"retry of trial {attrs[RETRY_OF]}"
    return ""


def _plain(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


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
