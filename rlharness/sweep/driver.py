"""The sweep's driver: an Optuna study driven by ask/tell from the launcher, trials run on Ray.

The study in its storage is the single source of truth; only the launcher
talks to it (Ray workers only compute `run_trial`), so a SQLite file is never
written by two processes. Each finished trial is published to
``OUT/<experiment>/sweep-<study>/trial-<number>/`` like a run, before the
study is told, so a told trial always has its results.

Counting rules, which hold with several launchers on one study:
- grid: a claimed trial runs only if no earlier trial with the same params
  is waiting, running or finished (else it fails as superseded), so each
  point is finished exactly once;
- other samplers: a claimed trial runs only if fewer than ``n_trials``
  earlier trials are waiting, running or finished, so exactly ``n_trials``
  finish.

Failures: Ray re-runs a task whose worker died (``sweep.retries``); after
that the trial fails and its point is re-queued. On start, and then now and
then, a launcher fails and re-queues the running trials of launchers that
are gone (`rlharness.sweep.liveness`). A trial that raises fails with its
error and stops the sweep (running it again would raise again); stopping
the launcher fails and re-queues its trials (`rlharness.sweep.signals`).
Running the same command again resumes the study to its budget.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from ray.exceptions import RayError
from sqlalchemy.exc import SQLAlchemyError

from rlharness import storage as storages
from rlharness.errors import ResultsWriteError, SpecError
from rlharness.live import TENSORBOARD_DIR
from rlharness.masking import mask
from rlharness.publish import publish_run
from rlharness.results import RunWriter, provenance
from rlharness.runner import TrialConfig, TrialResult, resolve
from rlharness.sweep.cluster import Cluster, TrialError, connect, result_of
from rlharness.sweep.flight import Flight
from rlharness.sweep.liveness import (
    HEARTBEAT_S,
    STALE_AFTER_S,
    Launcher,
    beat,
    claim,
    stale_reason,
    unclaimed,
)
from rlharness.sweep.objectives import aggregate, per_seed_values
from rlharness.sweep.search_space import SweepPlan
from rlharness.sweep.signals import stopping_on_signals
from rlharness.sweep.study import (
    ERROR,
    FAIL_REASON,
    FINISHED,
    OUTCOMES,
    PER_SEED,
    RESULTS,
    RETRY_OF,
    STUDY_NAME,
    SUPERSEDED,
    open_study,
    params_of,
)

POLL_S = 0.5
STORAGE_FAULTS = (SQLAlchemyError, StorageInternalError)
"""What a study operation raises when its database fails (Optuna wraps some of SQLAlchemy's)."""
LOST = (UpdateFinishedTrialError, RuntimeError)
"""What Optuna raises when a trial this launcher ran was finished by someone else meanwhile."""


@dataclass
class SweepReport:
    """Where a sweep stands after a launch."""

    study: str
    storage: str
    """The storage URL with any password masked."""
    results_dir: Path
    budget: int
    trials: list[FrozenTrial]
    interrupted: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> int:
        """Trials that completed or were pruned."""
        return sum(trial.state in FINISHED for trial in self.trials)


def run_sweep(
    plan: SweepPlan,
    out: Path,
    storage_url: str | None = None,
    study_name: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    command: list[str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    overrides: dict[str, Any] | None = None,
) -> SweepReport:
    """Create or resume the study and run trials until the budget is finished or ``stop`` is set.

    Bad storage, cluster address or study name raise `SpecError` before a
    study or database file is created. ``on_progress(finished, budget)`` is
    called as trials finish; ``command`` and ``overrides`` (the ``--set`` ones) are
    recorded in each trial's provenance.
    """
    name = study_name or plan.spec.name
    if not STUDY_NAME.match(name):
        raise SpecError("--study", [f"{name!r}: use letters, digits, '_', '.' and '-'"])
    url = storage_url or storages.default_url(out, plan.spec.name)
    storages.check(url)
    sweep = plan.sweep
    cluster = connect(address, workers, sweep.cpus_per_trial, sweep.gpus_per_trial, sweep.retries)
    try:
        sqlite_file = storages.sqlite_path(url)
        if sqlite_file is not None:
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        storage = storages.open_storage(url)
        results_dir = out / plan.spec.name / f"sweep-{name}"
        _check_results_dir(results_dir, storage, name, url)
        driver: _Driver | None = None
        try:
            study = open_study(plan, storage, name, url)
            stop = stop or threading.Event()
            driver = _Driver(
                plan, study, cluster, out, name, provenance(command, overrides), on_progress, stop
            )
            with stopping_on_signals(stop):
                interrupted = driver.run()
            trials = study.get_trials(deepcopy=False)
        except STORAGE_FAULTS as error:
            if driver is not None:
                driver.halt()
            raise storages.lost(url, error) from None
        return SweepReport(
            study=name,
            storage=mask(url, url),
            results_dir=results_dir,
            budget=plan.budget,
            trials=trials,
            interrupted=interrupted,
            error=driver.error,
            notes=driver.notes,
        )
    finally:
        cluster.close()


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _check_results_dir(results_dir: Path, storage: BaseStorage, name: str, url: str) -> None:
    """Refuse to mix results of another study of the same name into this one's directory."""
    numbers: set[int] = set()
    if name in {summary.study_name for summary in storage.get_all_studies()}:
        study_id = storage.get_study_id_from_name(name)
        numbers = {trial.number for trial in storage.get_all_trials(study_id, deepcopy=False)}
    foreign = sorted(
        path.name
        for path in results_dir.glob("trial-*")
        if not path.name.removeprefix("trial-").isdigit()
        or int(path.name.removeprefix("trial-")) not in numbers
    )
    if foreign:
        raise SpecError(
            "--study",
            [
                f"{results_dir} holds {foreign[0]}, which study {name!r} in "
                f"{mask(url, url)} does not have: it is from another study of that name; "
                "move it away or pass --study with a new name"
            ],
        )


class _Driver:
    """The ask/tell loop of one launcher."""

    def __init__(
        self,
        plan: SweepPlan,
        study: optuna.Study,
        cluster: Cluster,
        out: Path,
        study_name: str,
        origin: dict[str, Any],
        on_progress: Callable[[int, int], None] | None,
        stop: threading.Event,
    ) -> None:
        self.plan = plan
        self.study = study
        self.cluster = cluster
        self.out = out
        self.group = f"sweep-{study_name}"
        self.origin = origin
        self.on_progress = on_progress
        self.stop = stop
        self.launcher = Launcher.this()
        self.flights: dict[Any, Flight] = {}
        self.trials: list[FrozenTrial] = []
        self.finished = 0
        self.error: str | None = None
        self.notes: list[str] = []
        self.last_beat = self.last_recovery = time.monotonic()

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> bool:
        """Run until no work is left; True if stopped by ``stop``."""
        self._recover()
        while True:
            if self.stop.is_set():
                self._abandon_flights("interrupted: the launcher was stopped")
                return True
            self._tick()
            self._fill()
            if not self.flights:
                if not self._unclaimed_running():
                    return False
                # a launcher stopped between Optuna's ask and its claim: the trial counts
                # against the budget until it is recovered, once its claim grace is over
                self.stop.wait(POLL_S)
                self._recover()
                continue
            landed = [self._land(ref) for ref in self.cluster.wait(list(self.flights), POLL_S)]
            self._fill()  # keep the workers busy while the landed trials are published
            for flight, state in filter(None, landed):
                self._finish(flight, state)

    def _tick(self) -> None:
        """Heartbeats for this launcher's trials; now and then, recover other launchers' trials."""
        now = time.monotonic()
        if now - self.last_beat >= HEARTBEAT_S:
            self.last_beat = now
            for ref, flight in list(self.flights.items()):
                try:
                    beat(flight.trial)
                except LOST:
                    self._drop(ref, flight, "was failed by another launcher")
        if now - self.last_recovery >= STALE_AFTER_S / 4:
            self.last_recovery = now
            self._recover()

    def _fill(self) -> None:
        """Start trials while there is work and a free worker."""
        while self.error is None and len(self.flights) < self.cluster.workers:
            self._refresh()
            if not self._work_left():
                return
            self._start()

    def _refresh(self) -> None:
        """Read the study's trials again (and report progress from them)."""
        self.trials = self.study.get_trials(deepcopy=False)
        self.finished = sum(trial.state in FINISHED for trial in self.trials)
        self._report_progress()

    def _unclaimed_running(self) -> bool:
        """Whether a running trial has no launcher (while this one can still take work)."""
        return self.error is None and any(
            t.state == TrialState.RUNNING and unclaimed(t) for t in self.trials
        )

    def _work_left(self) -> bool:
        """Whether a trial is waiting, or the budget has room (grid: queue the next missing point).

        Grid points are queued one at a time, in grid order, as workers free up,
        so the queue of waiting trials (which every read of the study scans) stays short.
        """
        if any(t.state == TrialState.WAITING for t in self.trials):
            return True
        if not self.plan.is_grid:
            return sum(t.state != TrialState.FAIL for t in self.trials) < self.plan.budget
        covered = {_key(params_of(t)) for t in self.trials if t.state != TrialState.FAIL}
        missing = next((p for p in self.plan.points if _key(p) not in covered), None)
        if missing is None:
            return False
        self.study.enqueue_trial(missing)
        return True

    # --- starting a trial ----------------------------------------------------------------------

    def _start(self) -> None:
        trial = self.study.ask(self.plan.distributions)
        claim(trial, self.launcher)
        params = {path: trial.params[path] for path in self.plan.distributions}
        self._refresh()
        reason = self._superseded(trial.number, params)
        if reason is not None:
            self._fail(trial, params, SUPERSEDED, reason, requeue=False)
            return
        try:
            point = self.plan.point(params)
            resolve(point)
        except SpecError as error:
            self._fail(trial, params, ERROR, "; ".join(error.messages), requeue=False)
            self.error = f"trial {trial.number} ({_label(params)}): {'; '.join(error.messages)}"
            return
        seeds = tuple(point.run.seed_list)
        step = self.plan.sweep.seeds_per_step if self.plan.sweep.prunes else len(seeds)
        flight = Flight.start(trial, TrialConfig(point, seeds, trial.number, params), step)
        self._launch_chunk(flight)

    def _superseded(self, number: int, params: dict[str, Any]) -> str | None:
        """Why a claimed trial must not run (another trial has its point, or the budget is full)."""
        earlier = [t for t in self.trials if t.number < number and t.state != TrialState.FAIL]
        if not self.plan.is_grid:
            return "the budget was reached" if len(earlier) >= self.plan.budget else None
        key = _key(params)
        if key not in {_key(point) for point in self.plan.points}:
            return "not a grid point of this sweep"
        twin = next((t for t in earlier if _key(params_of(t)) == key), None)
        return None if twin is None else f"trial {twin.number} has the same point"

    def _launch_chunk(self, flight: Flight) -> None:
        live_dir = self.out / self.plan.spec.name / self.group / TENSORBOARD_DIR
        trial = f"trial-{flight.trial.number:05d}"
        self.flights[self.cluster.submit(flight.next_chunk(), live_dir / trial)] = flight

    # --- a chunk lands -------------------------------------------------------------------------

    def _land(self, ref: Any) -> tuple[Flight, TrialState] | None:
        """Take a chunk's result; the flight and its final state if the trial is done."""
        flight = self.flights.pop(ref)
        trial, params = flight.trial, flight.config.settings
        try:
            run = result_of(ref)
        except TrialError as crash:
            self._fail(trial, params, ERROR, str(crash), requeue=False)
            self.error = f"trial {trial.number} ({_label(params)}) raised {crash}"
            return None
        except RayError as lost:
            reason = (
                f"its worker was lost ({type(lost).__name__}) after {self.cluster.retries} retries"
            )
            self._fail(trial, params, FAIL_REASON, reason, requeue=True)
            where = self.cluster.where_lost(ref)
            self.notes.append(f"trial {trial.number} ({_label(params)}) re-queued: {reason}{where}")
            return None
        rerun = run.rerun_note()
        if rerun is not None:
            self.notes.append(f"trial {trial.number} ({_label(params)}): {rerun}")
        flight.results.append(run.result)
        done = flight.done
        if self.plan.sweep.prunes:
            result = flight.merged()
            try:
                trial.report(self._value(result), step=len(result.config.seeds))
                trial.set_user_attr(OUTCOMES, _outcome_counts(result))
                if not done and trial.should_prune():
                    return flight, TrialState.PRUNED
            except LOST:
                self.notes.append(f"trial {trial.number} was failed by another launcher")
                return None
        if done:
            return flight, TrialState.COMPLETE
        self._launch_chunk(flight)
        return None

    def _finish(self, flight: Flight, state: TrialState) -> None:
        """Publish the trial's results, then tell the study (never without its results)."""
        trial = flight.trial
        result = flight.merged()
        values = per_seed_values(self.plan.sweep.objective, result)
        value = self._value(result)
        try:
            writer = RunWriter(
                self.out, result.config.spec, f"trial-{trial.number:05d}", self.group
            )
        except ResultsWriteError as error:
            self._unwritten(flight, error)
        attributes = {
            PER_SEED: dict(zip(map(str, result.config.seeds), values, strict=True)),
            OUTCOMES: _outcome_counts(result),
            RESULTS: str(writer.final_dir),
        }
        try:
            for key, attribute in attributes.items():
                trial.set_user_attr(key, attribute)
        except LOST:
            writer.abandon()
            self.notes.append(f"trial {trial.number} was failed by another launcher")
            return
        sweep_info = {
            "study": self.group.removeprefix("sweep-"),
            "trial": trial.number,
            "state": state.name,
            "objective": self.plan.sweep.objective,
            "aggregate": self.plan.sweep.aggregate,
            "value": value,
            "per_seed": values,
        }
        try:
            run_dir, _ = publish_run(
                writer,
                result.config.spec,
                [result],
                self.origin,
                plots=False,
                extra={"sweep": sweep_info},
            )
        except ResultsWriteError as error:
            self._unwritten(flight, error)
        try:
            if state == TrialState.COMPLETE:
                self.study.tell(trial, value)
            else:
                self.study.tell(trial, state=TrialState.PRUNED)
        except LOST:
            shutil.rmtree(run_dir, ignore_errors=True)
            self.notes.append(f"trial {trial.number} was failed by another launcher")
            return
        self.finished += 1
        self._report_progress()

    def _unwritten(self, flight: Flight, error: ResultsWriteError) -> NoReturn:
        """Results that cannot be written (a full disk): fail and re-queue the trial, stop the
        trials in flight, and stop the sweep with ``error``."""
        reason = f"its results could not be written: {error}"
        self._fail(flight.trial, flight.config.settings, FAIL_REASON, reason, requeue=True)
        self._abandon_flights("stopped: another trial's results could not be written")
        raise error

    def _value(self, result: TrialResult) -> float:
        sweep = self.plan.sweep
        values = per_seed_values(sweep.objective, result)
        return aggregate(values, sweep.aggregate, sweep.direction)

    # --- failures ------------------------------------------------------------------------------

    def _fail(
        self,
        trial: optuna.Trial,
        params: dict[str, Any],
        key: str,
        reason: str,
        requeue: bool,
    ) -> None:
        """Fail a trial this launcher holds, and re-queue its point if asked (grid: automatic)."""
        try:
            trial.set_user_attr(key, reason)
            self.study.tell(trial, state=TrialState.FAIL)
        except LOST:
            return
        if requeue and not self.plan.is_grid:
            self.study.enqueue_trial(params, user_attrs={RETRY_OF: trial.number})

    def _abandon_flights(self, reason: str) -> None:
        for ref, flight in list(self.flights.items()):
            self.cluster.cancel(ref)
            self._fail(flight.trial, flight.config.settings, FAIL_REASON, reason, requeue=True)
        self.flights.clear()

    def halt(self) -> None:
        """Stop every trial in flight without touching the study (its storage has failed).

        Their trials stay RUNNING in the study; the next launcher finds this one
        gone and re-queues them, and removes any results they left unpublished.
        """
        for ref in self.flights:
            self.cluster.cancel(ref)
        self.flights.clear()

    def _drop(self, ref: Any, flight: Flight, why: str) -> None:
        self.cluster.cancel(ref)
        del self.flights[ref]
        self.notes.append(f"trial {flight.trial.number} {why}")

    def _recover(self) -> None:
        """Fail and re-queue running trials whose launcher is gone."""
        now = time.time()
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            reason = stale_reason(frozen, self.launcher, now)
            if reason is None:
                continue
            try:
                optuna.Trial(self.study, frozen._trial_id).set_user_attr(FAIL_REASON, reason)
                self.study.tell(frozen.number, state=TrialState.FAIL)
            except LOST:
                continue
            for name in (f"trial-{frozen.number:05d}", f".trial-{frozen.number:05d}.partial"):
                shutil.rmtree(
                    self.out / self.plan.spec.name / self.group / name, ignore_errors=True
                )
            if not self.plan.is_grid:
                self.study.enqueue_trial(params_of(frozen), user_attrs={RETRY_OF: frozen.number})
            self.notes.append(f"trial {frozen.number} re-queued: {reason}")

    def _report_progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(min(self.finished, self.plan.budget), self.plan.budget)


def _outcome_counts(result: TrialResult) -> dict[str, int]:
    """How many seeds ended in each divergence outcome."""
    return {str(k): int(v) for k, v in result.outcomes["outcome"].value_counts().items()}


def _label(params: dict[str, Any]) -> str:
    return ", ".join(f"{path}={value!r}" for path, value in params.items())
