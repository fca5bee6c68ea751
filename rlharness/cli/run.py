"""Commands on one experiment file: ``run`` and ``validate``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from rlharness.cli.console import BAD_INPUT, fail, interrupted, plain, progress, write_failed
from rlharness.cli.options import (
    DEFAULT_RESULTS,
    FormatOption,
    OutAlias,
    QuietOption,
    ResultsOption,
    SeedsOption,
    SetOption,
    SpecArgument,
    either,
    load_experiment,
    read_overrides,
    with_seeds,
)
from rlharness.cli.tables import Format, print_run_summary
from rlharness.errors import SpecError

if TYPE_CHECKING:
    from rlharness.live import Observer
    from rlharness.spec import ExperimentSpec


def run(
    spec_path: SpecArgument,
    seeds: SeedsOption = None,
    results: ResultsOption = DEFAULT_RESULTS,
    quiet: QuietOption = False,
    out: OutAlias = None,
    sets: SetOption = None,
    output: FormatOption = Format.table,
    wandb: Annotated[
        str | None,
        typer.Option(
            "--wandb",
            metavar="PROJECT",
            help="Also stream every logged metric to this W&B project (needs wandb installed).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the latest unfinished run of this experiment under --results, "
            "running only its missing grid points (exit 2 if there is none).",
        ),
    ] = False,
) -> None:
    """Run every grid point and seed of an experiment and write its results and plots.

    Every logged metric streams, as it is logged, to TensorBoard event files in the
    run's directory (tensorboard --logdir results/; off with run.tensorboard: false).
    Each grid point is kept as soon as it finishes; after Ctrl-C or a kill,
    --resume continues the run. Exits 1 when the results cannot be written
    (a full disk), naming the file and the free space; the files that fit stay
    in a .partial staging dir.
    """
    from rlharness.errors import ResultsWriteError
    from rlharness.live.wandb import INSTALL_HINT, wandb_missing
    from rlharness.local_run import run_experiment
    from rlharness.runner import check_experiment

    if wandb is not None and wandb_missing():
        plain(f"error: --wandb: {INSTALL_HINT}", stderr=True)
        raise typer.Exit(BAD_INPUT)
    root, option = either("--results", results, "--out", out, DEFAULT_RESULTS)
    overrides = read_overrides(sets)
    spec = load_experiment(spec_path, overrides)
    try:
        if seeds is not None:
            spec = with_seeds(spec, seeds)
        check_experiment(spec, f"experiment file {spec_path}")
    except SpecError as error:
        fail(error)
    try:
        (root / spec.name).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(SpecError(option, [f"cannot hold results under {root}: {error.strerror}"]))
    bar = progress(quiet)
    with bar:
        task = bar.add_task(f"{spec.name}: logged steps", total=None)
        try:
            run_dir, summary = run_experiment(
                spec,
                root,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
                command=["rlharness", *sys.argv[1:]],
                overrides=overrides,
                observers=[] if wandb is None else [_wandb_runs(spec, wandb)],
                resume=resume,
            )
        except SpecError as error:
            fail(error)
        except ResultsWriteError as error:
            write_failed(error, root, "free space and run the same command with --resume")
        except KeyboardInterrupt:
            interrupted(
                "interrupted; the finished grid points are kept: "
                f"`rlharness run {spec_path} --resume` (with the same options) continues the run"
            )
    if not quiet:
        print_run_summary(summary, output)
    for figure, problem in summary.get("plot_errors", {}).items():
        plain(f"warning: figure {figure} was not drawn: {problem}", stderr=True)
    plain(f"results: {run_dir}", stderr=output.for_machines)


def validate(spec_path: SpecArgument, sets: SetOption = None) -> None:
    """Check an experiment file without running it: every grid point, and the sweep's plan."""
    from rlharness.runner import check_experiment, plan_trials
    from rlharness.sweep.search_space import plan_sweep

    spec = load_experiment(spec_path, read_overrides(sets))
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
        fail(error)
    trials = plan_trials(spec)
    plain(
        f"{spec_path}: valid ({len(trials)} grid point(s) x {spec.run.seeds} seed(s), "
        f"agent {spec.agent.name} on {spec.env.id}{sweep_note})"
    )


def _wandb_runs(spec: ExperimentSpec, project: str) -> Observer:
    """A W&B run per grid point x seed of ``spec`` in ``project``, grouped by experiment."""
    from rlharness.live.wandb import WandbRuns
    from rlharness.runner import plan_trials

    points = {trial.variant: trial.settings for trial in plan_trials(spec)}
    context = {"experiment": spec.name, "agent": spec.agent.name, "env": spec.env.id}
    return WandbRuns(project, spec.name, points, context)
