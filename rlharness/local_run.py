"""Run an experiment in-process: plan the trials, run them with progress, publish the run.

Each grid point is staged as soon as it finishes (`rlharness.resume`), so an
interrupted run can be resumed: only its missing grid points run again. Every
logged record streams as it is logged to the run's observers (the progress bar,
TensorBoard, W&B).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlharness.errors import ResultsWriteError, SpecError
from rlharness.live import TENSORBOARD_DIR, Observer, Observers
from rlharness.live.progress import LoggedSteps, logs_per_seed
from rlharness.publish import publish_run
from rlharness.results import RUN_RECORD, RunWriter, provenance
from rlharness.resume import find_unfinished, load_trials, run_record, stage_trial, take_over
from rlharness.runner import TrialConfig, check_experiment, plan_trials, run_trials
from rlharness.spec import ExperimentSpec


def run_experiment(
    spec: ExperimentSpec,
    root: Path,
    seeds: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    command: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    observers: Sequence[Observer] = (),
    resume: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Run every grid point and seed of ``spec`` and write ``root/<name>/<run-id>/``.

    ``on_progress(done, total)`` counts logged records (each seed's, as they are
    logged); ``command`` and ``overrides`` (the ``--set`` ones) are recorded in its
    provenance. With ``run.tensorboard`` every record is streamed as it is logged to
    ``tensorboard/`` in the run's staging dir, which becomes the run dir when it
    is published; ``observers`` receive the records too. With ``resume``, the latest
    unfinished run of ``spec`` under ``root`` is continued: only the grid points it
    had not finished run (their partial streams are replaced). Returns the run
    directory and the summary. Nothing is published unless every file is written.

    Raises `SpecError` (``--resume``, ``--seeds``) when there is no unfinished
    run to resume or it is not the same experiment.
    """
    check_experiment(spec)
    trials = plan_trials(spec, seeds)
    origin = provenance(command, overrides)
    if resume:
        staging_dir = find_unfinished(root, spec)
        if staging_dir is None:
            problem = f"no unfinished run of {spec.name} under {root}; run without --resume"
            raise SpecError("--resume", [problem])
        writer, record = take_over(staging_dir, spec, trials, origin)
    else:
        writer = RunWriter(root, spec)
        record = run_record(spec, trials, origin)
    observer: Observers | None = None
    try:
        writer.write_json(RUN_RECORD, record)
        staged = load_trials(writer.staging_dir, trials)
        missing = [trial for trial in trials if trial.variant not in staged]
        observer = _observers(spec, writer, trials, missing, on_progress, observers)
        run_trials(missing, observer=observer, on_result=lambda result: stage_trial(writer, result))
    except ResultsWriteError as error:
        writer.salvage(error)
        raise
    except BaseException:
        if not writer.holds_trials():  # nothing finished: nothing to resume
            writer.abandon()
        raise
    finally:
        if observer is not None:
            observer.close()
    # Published from the staged files, as a resumed run is: both give the same bytes.
    results = list(load_trials(writer.staging_dir, trials).values())
    if record["resumed"]:
        origin = {**record["provenance"], "resumed": record["resumed"]}
    return publish_run(writer, spec, results, origin)


def _observers(
    spec: ExperimentSpec,
    writer: RunWriter,
    trials: list[TrialConfig],
    missing: list[TrialConfig],
    on_progress: Callable[[int, int], None] | None,
    observers: Sequence[Observer],
) -> Observers:
    """The progress count (the staged grid points already counted), the TensorBoard streams
    (with ``run.tensorboard``; the missing points' partial streams removed) and ``observers``."""
    progress = LoggedSteps(_logs(trials), on_progress)
    running = {trial.variant for trial in missing}
    for trial in trials:
        if trial.variant not in running:
            for seed in trial.seeds:
                progress.finished(trial.variant, seed)
    watching: list[Observer] = [progress, *observers]
    if spec.run.tensorboard:
        from rlharness.live.tensorboard import TensorBoardStreams

        points = {trial.variant: trial.settings for trial in trials}
        context = {"experiment": spec.name, "agent": spec.agent.name, "env": spec.env.id}
        streams = TensorBoardStreams(writer.path(TENSORBOARD_DIR), points, context)
        streams.clear(running)
        watching.append(streams)
    return Observers(*watching)


def _logs(trials: list[TrialConfig]) -> dict[int, tuple[int, int]]:
    """Per grid point: its seeds and the records each logs."""
    return {
        trial.variant: (
            len(trial.seeds),
            logs_per_seed(trial.spec.run.steps, trial.spec.run.log_every),
        )
        for trial in trials
    }
