"""Commands on one experiment file (``run``, ``validate``) and the listings ``envs``, ``agents``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from rlharness.cli.console import console, fail, interrupted, plain, progress, write_failed
from rlharness.cli.options import (
    DEFAULT_RESULTS,
    OutAlias,
    QuietOption,
    ResultsOption,
    SpecArgument,
    either,
    load_experiment,
)
from rlharness.cli.tables import knob_table, summary_table
from rlharness.errors import SpecError

if TYPE_CHECKING:
    from rlharness.spec import ExperimentSpec


def run(
    spec_path: SpecArgument,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, help="Number of seeds (overrides run.seeds).")
    ] = None,
    results: ResultsOption = DEFAULT_RESULTS,
    quiet: QuietOption = False,
    out: OutAlias = None,
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

    Each grid point is kept as soon as it finishes; after Ctrl-C or a kill,
    ``--resume`` continues the run. Exits 1 when the results cannot be written
    (a full disk), naming the file and the free space; the files that fit stay
    in a ``.partial`` staging dir.
    """
    from rlharness.errors import ResultsWriteError
    from rlharness.local_run import run_experiment
    from rlharness.runner import check_experiment

    root, option = either("--results", results, "--out", out, DEFAULT_RESULTS)
    spec = load_experiment(spec_path)
    try:
        if seeds is not None:
            spec = _with_seeds(spec, seeds)
        check_experiment(spec, f"experiment file {spec_path}")
    except SpecError as error:
        fail(error)
    try:
        (root / spec.name).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(SpecError(option, [f"cannot hold results under {root}: {error.strerror}"]))
    bar = progress(quiet)
    with bar:
        task = bar.add_task(f"{spec.name}: seeds", total=None)
        try:
            run_dir, summary = run_experiment(
                spec,
                root,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
                command=["rlharness", *sys.argv[1:]],
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
        console.print(summary_table(summary))
        if "knob_effects" in summary:
            console.print(knob_table(summary))
    for figure, problem in summary.get("plot_errors", {}).items():
        plain(f"warning: figure {figure} was not drawn: {problem}", stderr=True)
    plain(f"results: {run_dir}")


def validate(spec_path: SpecArgument) -> None:
    """Check an experiment file without running it: every grid point, and the sweep's plan."""
    from rlharness.runner import check_experiment, plan_trials
    from rlharness.sweep.search_space import plan_sweep

    spec = load_experiment(spec_path)
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


def agents() -> None:
    """List the linear learning rules and what each supports, then the deep agents."""
    import typing

    from rlharness.agents.linear import RULES
    from rlharness.spec import DQNAgentSpec, PQNAgentSpec

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
    deep = Table(Column("agent.name", no_wrap=True), "agent.backend", "description")
    for model in (DQNAgentSpec, PQNAgentSpec):
        name = typing.get_args(model.model_fields["name"].annotation)[0]
        backends = typing.get_args(model.model_fields["backend"].annotation)
        deep.add_row(name, ", ".join(backends), (model.__doc__ or "").strip().splitlines()[0])
    console.print(deep)


def _with_seeds(spec: ExperimentSpec, seeds: int) -> ExperimentSpec:
    """``spec`` with ``--seeds`` as its run.seeds, validated like the file (bounds, memory)."""
    from rlharness.spec import parse_spec

    data = spec.model_dump()
    data["run"]["seeds"] = seeds
    return parse_spec(data, "--seeds")
