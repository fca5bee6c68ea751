"""Run an experiment in-process: plan the trials, run them with progress, publish the run.

Each grid point is staged as soon as it finishes (`rlharness.resume`), so an
interrupted run can be resumed: only its missing grid points run again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlharness.errors import ResultsWriteError, SpecError
from rlharness.publish import publish_run
from rlharness.results import RUN_RECORD, RunWriter, provenance
from rlharness.resume import find_unfinished, load_trials, run_record, stage_trial, take_over
from rlharness.runner import check_experiment, plan_trials, run_trials
from rlharness.spec import ExperimentSpec


def run_experiment(
    spec: ExperimentSpec,
    root: Path,
    seeds: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    command: list[str] | None = None,
    resume: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Run every grid point and seed of ``spec`` and write ``root/<name>/<run-id>/``.

    ``on_progress(done, total)`` is called as seeds finish. With ``resume``,
    the latest unfinished run of ``spec`` under ``root`` is continued: only
    the grid points it had not finished run. Returns the run directory and the
    summary. Nothing is published unless every file is written.

    Raises `SpecError` (``--resume``, ``--seeds``) when there is no unfinished
    run to resume or it is not the same experiment.
    """
    check_experiment(spec)
    trials = plan_trials(spec, seeds)
    origin = provenance(command)
    if resume:
        staging_dir = find_unfinished(root, spec)
        if staging_dir is None:
            problem = f"no unfinished run of {spec.name} under {root}; run without --resume"
            raise SpecError("--resume", [problem])
        writer, record = take_over(staging_dir, spec, trials, origin)
    else:
        writer = RunWriter(root, spec)
        record = run_record(spec, trials, origin)
    try:
        writer.write_json(RUN_RECORD, record)
        staged = load_trials(writer.staging_dir, trials)
        total = sum(len(trial.seeds) for trial in trials)
        done = sum(len(result.config.seeds) for result in staged.values())

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if on_progress is not None:
                on_progress(done, total)

        advance(0)
        missing = [trial for trial in trials if trial.variant not in staged]
        run_trials(missing, advance, lambda result: stage_trial(writer, result))
    except ResultsWriteError as error:
        writer.salvage(error)
        raise
    except BaseException:
        if not writer.holds_trials():  # nothing finished: nothing to resume
            writer.abandon()
        raise
    # Published from the staged files, as a resumed run is: both give the same bytes.
    results = list(load_trials(writer.staging_dir, trials).values())
    if record["resumed"]:
        origin = {**record["provenance"], "resumed": record["resumed"]}
    return publish_run(writer, spec, results, origin)
