"""Run an experiment in-process: plan the trials, run them with progress, publish the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlharness.publish import publish_run
from rlharness.results import RunWriter, provenance
from rlharness.runner import check_experiment, plan_trials, run_trials
from rlharness.spec import ExperimentSpec


def run_experiment(
    spec: ExperimentSpec,
    root: Path,
    seeds: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    command: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run every grid point and seed of ``spec`` and write ``root/<name>/<run-id>/``.

    ``on_progress(done, total)`` is called as seeds finish; ``command`` and ``overrides``
    (the ``--set`` ones) are recorded in its provenance. Returns the run
    directory and the summary. Nothing is published unless every file is written.
    """
    check_experiment(spec)
    trials = plan_trials(spec, seeds)
    total = sum(len(trial.seeds) for trial in trials)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if on_progress is not None:
            on_progress(done, total)

    results = run_trials(trials, advance)
    return publish_run(RunWriter(root, spec), spec, results, provenance(command, overrides))
