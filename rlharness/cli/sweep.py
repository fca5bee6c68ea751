"""Commands on Optuna studies: ``sweep`` runs one on Ray workers, ``status`` shows one."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from rlharness.cli.console import (
    fail,
    fault,
    interrupted,
    plain,
    progress,
    write_failed,
)
from rlharness.cli.options import (
    DEFAULT_RESULTS,
    FormatOption,
    OutAlias,
    QuietOption,
    ResultsOption,
    SeedsOption,
    SetOption,
    SpecArgument,
    StorageOption,
    StudyOption,
    check_writable,
    either,
    load_experiment,
    read_overrides,
    with_seeds,
)
from rlharness.cli.tables import Format, print_frame, trials_frame
from rlharness.errors import SpecError


def sweep(
    spec_path: SpecArgument,
    storage: StorageOption = None,
    study: StudyOption = None,
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
    seeds: SeedsOption = None,
    results: ResultsOption = DEFAULT_RESULTS,
    quiet: QuietOption = False,
    out: OutAlias = None,
    sets: SetOption = None,
    output: FormatOption = Format.table,
) -> None:
    """Sweep an experiment with Optuna on Ray workers; running it again resumes the study."""
    from rlharness.sweep.search_space import plan_sweep

    root, option = either("--results", results, "--out", out, DEFAULT_RESULTS)
    overrides = read_overrides(sets)
    spec = load_experiment(spec_path, overrides)
    try:
        if seeds is not None:
            spec = with_seeds(spec, seeds)
        plan = plan_sweep(spec, n_trials, f"experiment file {spec_path}")
        check_writable(root, option)
    except SpecError as error:
        fail(error)
    import optuna

    from rlharness.errors import ResultsWriteError, StorageLostError
    from rlharness.sweep import run_sweep  # Ray and the results store: only once the input is good

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bar = progress(quiet)
    try:
        with bar:
            task = bar.add_task(f"{study or spec.name}: trials", total=plan.budget)
            report = run_sweep(
                plan,
                root,
                storage,
                study,
                address,
                workers,
                command=["rlharness", *sys.argv[1:]],
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
                overrides=overrides,
            )
    except SpecError as error:
        fail(error)
    except StorageLostError as error:
        fault(
            error,
            "the trials in flight were stopped and stay RUNNING in the study; once the database "
            "is back, run the same command again: it re-queues them and resumes to the budget",
        )
    except ResultsWriteError as error:
        write_failed(
            error,
            root,
            "the trial was failed and its point re-queued, the trials in flight too; "
            "free space and run the same command again to resume",
        )
    except KeyboardInterrupt:
        interrupted("interrupted; run the same command again to resume")
    if not quiet:
        frame = trials_frame(report.trials, plan.sweep.direction == "maximize", best_first=True)
        print_frame(frame, output, f"{report.study}: best {len(frame)} trials")
    for note in report.notes:
        plain(f"note: {note}", stderr=True)
    plain(
        f"study: {report.study} in {report.storage}: "
        f"{min(report.finished, report.budget)} of {report.budget} trials finished",
        stderr=output.for_machines,
    )
    plain(f"results: {report.results_dir}", stderr=output.for_machines)
    if report.error is not None:
        fault(report.error)
    if report.interrupted:
        interrupted(
            "interrupted: trials in flight were re-queued; run the same command again to resume"
        )


def status(
    target: Annotated[
        str,
        typer.Argument(
            help="An experiment name or file: the study named after it (or --study) in "
            "RESULTS/<experiment>/optuna.db; with --storage, a study name."
        ),
    ],
    storage: StorageOption = None,
    study: StudyOption = None,
    results: ResultsOption = DEFAULT_RESULTS,
    out: OutAlias = None,
    output: FormatOption = Format.table,
) -> None:
    """Show a study's trials from its storage: state, params, value, divergence outcomes."""
    from rlharness.masking import mask
    from rlharness.storage import default_url, load_study
    from rlharness.sweep.study import DEFINITION

    root, _ = either("--results", results, "--out", out, DEFAULT_RESULTS)
    experiment = (
        load_experiment(Path(target)).name if target.endswith((".yaml", ".yml")) else target
    )
    name = study or experiment
    url = storage or default_url(root, experiment)
    try:
        found = load_study(url, name)
    except SpecError as error:
        fail(error)
    definition = found.user_attrs.get(DEFINITION, {})
    trials = found.get_trials(deepcopy=False)
    counts = Counter(trial.state.name for trial in trials)
    plain(
        f"study {name} in {mask(url, url)}: {definition.get('objective', 'value')} "
        f"({definition.get('aggregate', '-')} over seeds), {found.direction.name.lower()}; "
        + (", ".join(f"{count} {state}" for state, count in sorted(counts.items())) or "no trials"),
        stderr=output.for_machines,
    )
    frame = trials_frame(trials, found.direction.name == "MAXIMIZE", best_first=False)
    print_frame(frame, output, f"{name}: {len(frame)} trials")
