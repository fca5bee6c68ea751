"""Run an experiment in-process: plan the trials, run them with progress, publish the run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlharness.live import Observer, Observers
from rlharness.live.progress import LoggedSteps, logs_per_seed
from rlharness.publish import publish_run
from rlharness.results import RunWriter, provenance
from rlharness.runner import TrialConfig, check_experiment, plan_trials, run_trials
from rlharness.spec import ExperimentSpec

TENSORBOARD_DIR = "tensorboard"
"""Where a run's TensorBoard event streams live, inside its (staging, then final) directory."""


def run_experiment(
    spec: ExperimentSpec,
    root: Path,
    seeds: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    command: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    observers: Sequence[Observer] = (),
) -> tuple[Path, dict[str, Any]]:
    """Run every grid point and seed of ``spec`` and write ``root/<name>/<run-id>/``.

    ``on_progress(done, total)`` counts logged records (each seed's, as they are
    logged); ``command`` and ``overrides`` (the ``--set`` ones) are recorded in its
    provenance. With ``run.tensorboard`` every record is streamed as it is logged to
    ``tensorboard/`` in the run's staging dir, which becomes the run dir when it
    is published; ``observers`` receive the records too. Returns the run
    directory and the summary. Nothing is published unless every file is written.
    """
    check_experiment(spec)
    trials = plan_trials(spec, seeds)
    writer = RunWriter(root, spec)
    watching: list[Observer] = [LoggedSteps(_logs(trials), on_progress), *observers]
    if spec.run.tensorboard:
        from rlharness.live.tensorboard import TensorBoardStreams

        points = {trial.variant: trial.settings for trial in trials}
        context = {"experiment": spec.name, "agent": spec.agent.name, "env": spec.env.id}
        watching.append(TensorBoardStreams(writer.path(TENSORBOARD_DIR), points, context))
    observer = Observers(*watching)
    try:
        results = run_trials(trials, observer=observer)
    except BaseException:
        observer.close()
        writer.abandon()
        raise
    observer.close()
    return publish_run(writer, spec, results, provenance(command, overrides))


def _logs(trials: list[TrialConfig]) -> dict[int, tuple[int, int]]:
    """Per grid point: its seeds and the records each logs."""
    return {
        trial.variant: (
            len(trial.seeds),
            logs_per_seed(trial.spec.run.steps, trial.spec.run.log_every),
        )
        for trial in trials
    }
