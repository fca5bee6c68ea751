"""Sweeps: an Optuna study driven by ask/tell from the launcher, its trials run as Ray tasks.

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
are gone: a dead process on this host, or no heartbeat for `STALE_AFTER_S`.
A trial that raises fails with its error and stops the sweep (running it
again would raise again); stopping the launcher fails and re-queues its
trials. Running the same command again resumes the study to its budget.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import optuna
import pandas as pd
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, CmaEsSampler, RandomSampler, TPESampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from ray.exceptions import RayError
from sqlalchemy.exc import SQLAlchemyError

from rlharness import storage as storages
from rlharness.cluster import Cluster, TrialError, connect, result_of
from rlharness.errors import SpecError
from rlharness.objectives import aggregate, per_seed_values
from rlharness.outcomes import Outcome
from rlharness.processes import process_alive, process_start
from rlharness.publish import publish_run
from rlharness.results import ResultsWriteError, RunWriter, provenance
from rlharness.runner import TrialConfig, TrialResult, resolve
from rlharness.search_space import SweepPlan
from rlharness.storage import params_of

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0
"""A running trial whose launcher sent no heartbeat for this long is failed and re-queued."""
POLL_S = 0.5
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DEFINITION_ATTR = "rlharness"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STORAGE_FAULTS = (SQLAlchemyError, StorageInternalError)
"""What a study operation raises when its database fails (Optuna wraps some of SQLAlchemy's)."""
LOST = (UpdateFinishedTrialError, RuntimeError)
"""What Optuna raises when a trial this launcher ran was finished by someone else meanwhile."""


@dataclass(frozen=True)
class Launcher:
    """Who runs a trial: recorded on it so that another launcher can tell whether it is gone."""

    id: str
    host: str
    pid: int
    start: int | None
    """The process's start time in clock ticks (Linux), so a reused pid is not mistaken for it."""

    @classmethod
    def this(cls) -> Launcher:
        """The current process."""
        pid = os.getpid()
        return cls(uuid.uuid4().hex[:12], socket.gethostname(), pid, process_start(pid))

    def record(self) -> dict[str, Any]:
        """As a trial attribute."""
        return {"id": self.id, "host": self.host, "pid": self.pid, "start": self.start}


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
) -> SweepReport:
    """Create or resume the study and run trials until the budget is finished or ``stop`` is set.

    Bad storage, cluster address or study name raise `SpecError` before a
    study or database file is created. ``on_progress(finished, budget)`` is
    called as trials finish.
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
                plan, study, cluster, out, name, provenance(command), on_progress, stop
            )
            with _stopping_on_signals(stop):
                interrupted = driver.run()
            trials = study.get_trials(deepcopy=False)
        except STORAGE_FAULTS as error:
            if driver is not None:
                driver.halt()
            raise storages.lost(url, error) from None
        return SweepReport(
            study=name,
            storage=storages.mask(url, url),
            results_dir=results_dir,
            budget=plan.budget,
            trials=trials,
            interrupted=interrupted,
            error=driver.error,
            notes=driver.notes,
        )
    finally:
        cluster.close()


def open_study(plan: SweepPlan, storage: BaseStorage, name: str, url: str) -> optuna.Study:
    """Create the study or load it, refusing one created from a different sweep."""
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=plan.sweep.direction,
        pruner=_pruner(plan),
        load_if_exists=True,
    )
    definition = plan.definition()
    stored = study.user_attrs.get(DEFINITION_ATTR)
    if stored is None and study.direction.name.lower() != plan.sweep.direction:
        stored = {"direction": study.direction.name.lower()}
    if stored is None:
        study.set_user_attr(DEFINITION_ATTR, definition)
    elif stored != definition:
        differing = [key for key in definition if key in stored and stored[key] != definition[key]]
        raise SpecError(
            "--study",
            [
                f"study {name!r} in {storages.mask(url, url)} was created from a different sweep "
                f"({', '.join(differing) or 'its definition'} differ); resume it with the same "
                "experiment file, or pass --study with a new name"
            ],
        )
    study.sampler = _sampler(plan, len(study.get_trials(deepcopy=False)))
    return study


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


class DivergencePruner(BasePruner):
    """Prune a trial once one of its seeds hard-diverged; otherwise ask ``base``."""

    def __init__(self, base: BasePruner) -> None:
        self.base = base

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether to stop ``trial`` now."""
        if trial.user_attrs.get("outcomes", {}).get(Outcome.HARD_DIVERGED, 0) > 0:
            return True
        return self.base.prune(study, trial)


def _pruner(plan: SweepPlan) -> BasePruner:
    sweep = plan.sweep
    steps = math.ceil(plan.spec.run.seeds / sweep.seeds_per_step)
    factories: dict[str, Callable[[], BasePruner]] = {
        "none": NopPruner,
        "median": MedianPruner,
        "hyperband": lambda: HyperbandPruner(min_resource=1, max_resource=max(steps, 1)),
    }
    base = factories[sweep.pruner]()
    return DivergencePruner(base) if sweep.prune_hard_diverged else base


def _sampler(plan: SweepPlan, existing: int) -> BaseSampler:
    """The sampler, seeded past the trials a study already has so that a resumed sweep explores."""
    seed = plan.sweep.seed + existing
    factories: dict[str, Callable[[], BaseSampler]] = {
        "grid": lambda: RandomSampler(seed=seed),
        "random": lambda: RandomSampler(seed=seed),
        "tpe": lambda: TPESampler(seed=seed),
        "cmaes": lambda: CmaEsSampler(seed=seed, warn_independent_sampling=False),
    }
    return factories[plan.sweep.sampler]()


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
                f"{storages.mask(url, url)} does not have: it is from another study of that name; "
                "move it away or pass --study with a new name"
            ],
        )


@dataclass
class _Flight:
    """A trial in flight: its remaining seed chunks and the results so far."""

    trial: optuna.Trial
    config: TrialConfig
    chunks: list[tuple[int, ...]]
    results: list[TrialResult] = field(default_factory=list)


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
        self.flights: dict[Any, _Flight] = {}
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
                return False
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
                    flight.trial.set_user_attr("heartbeat", time.time())
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
        trial.set_user_attr("launcher", {**self.launcher.record(), "since": time.time()})
        params = {path: trial.params[path] for path in self.plan.distributions}
        self._refresh()
        reason = self._superseded(trial.number, params)
        if reason is not None:
            self._fail(trial, params, "superseded", reason, requeue=False)
            return
        try:
            point = self.plan.point(params)
            resolve(point)
        except SpecError as error:
            self._fail(trial, params, "error", "; ".join(error.messages), requeue=False)
            self.error = f"trial {trial.number} ({_label(params)}): {'; '.join(error.messages)}"
            return
        seeds = tuple(point.run.seed_list)
        step = self.plan.sweep.seeds_per_step if self.plan.sweep.prunes else len(seeds)
        chunks = [seeds[i : i + step] for i in range(0, len(seeds), step)]
        flight = _Flight(trial, TrialConfig(point, seeds, trial.number, params), chunks)
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

    def _launch_chunk(self, flight: _Flight) -> None:
        seeds = flight.chunks[len(flight.results)]
        config = TrialConfig(flight.config.spec, seeds, flight.trial.number, flight.config.settings)
        self.flights[self.cluster.submit(config)] = flight

    # --- a chunk lands -------------------------------------------------------------------------

    def _land(self, ref: Any) -> tuple[_Flight, TrialState] | None:
        """Take a chunk's result; the flight and its final state if the trial is done."""
        flight = self.flights.pop(ref)
        trial, params = flight.trial, flight.config.settings
        try:
            run = result_of(ref)
        except TrialError as crash:
            self._fail(trial, params, "error", str(crash), requeue=False)
            self.error = f"trial {trial.number} ({_label(params)}) raised {crash}"
            return None
        except RayError as lost:
            reason = (
                f"its worker was lost ({type(lost).__name__}) after {self.cluster.retries} retries"
            )
            self._fail(trial, params, "fail_reason", reason, requeue=True)
            where = self.cluster.where_lost(ref)
            self.notes.append(f"trial {trial.number} ({_label(params)}) re-queued: {reason}{where}")
            return None
        rerun = run.rerun_note()
        if rerun is not None:
            self.notes.append(f"trial {trial.number} ({_label(params)}): {rerun}")
        flight.results.append(run.result)
        done = len(flight.results) == len(flight.chunks)
        if self.plan.sweep.prunes:
            result = _merge(flight)
            try:
                trial.report(self._value(result), step=len(result.config.seeds))
                trial.set_user_attr("outcomes", _outcome_counts(result))
                if not done and trial.should_prune():
                    return flight, TrialState.PRUNED
            except LOST:
                self.notes.append(f"trial {trial.number} was failed by another launcher")
                return None
        if done:
            return flight, TrialState.COMPLETE
        self._launch_chunk(flight)
        return None

    def _finish(self, flight: _Flight, state: TrialState) -> None:
        """Publish the trial's results, then tell the study (never without its results)."""
        trial = flight.trial
        result = _merge(flight)
        values = per_seed_values(self.plan.sweep.objective, result)
        value = self._value(result)
        try:
            writer = RunWriter(
                self.out, result.config.spec, f"trial-{trial.number:05d}", self.group
            )
        except ResultsWriteError as error:
            self._unwritten(flight, error)
        attributes = {
            "per_seed": dict(zip(map(str, result.config.seeds), values, strict=True)),
            "outcomes": _outcome_counts(result),
            "results": str(writer.final_dir),
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

    def _unwritten(self, flight: _Flight, error: ResultsWriteError) -> NoReturn:
        """Results that cannot be written (a full disk): fail and re-queue the trial, stop the
        trials in flight, and stop the sweep with ``error``."""
        reason = f"its results could not be written: {error}"
        self._fail(flight.trial, flight.config.settings, "fail_reason", reason, requeue=True)
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
            self.study.enqueue_trial(params, user_attrs={"retry_of": trial.number})

    def _abandon_flights(self, reason: str) -> None:
        for ref, flight in list(self.flights.items()):
            self.cluster.cancel(ref)
            self._fail(flight.trial, flight.config.settings, "fail_reason", reason, requeue=True)
        self.flights.clear()

    def halt(self) -> None:
        """Stop every trial in flight without touching the study (its storage has failed).

        Their trials stay RUNNING in the study; the next launcher finds this one
        gone and re-queues them, and removes any results they left unpublished.
        """
        for ref in self.flights:
            self.cluster.cancel(ref)
        self.flights.clear()

    def _drop(self, ref: Any, flight: _Flight, why: str) -> None:
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
                optuna.Trial(self.study, frozen._trial_id).set_user_attr("fail_reason", reason)
                self.study.tell(frozen.number, state=TrialState.FAIL)
            except LOST:
                continue
            for name in (f"trial-{frozen.number:05d}", f".trial-{frozen.number:05d}.partial"):
                shutil.rmtree(
                    self.out / self.plan.spec.name / self.group / name, ignore_errors=True
                )
            if not self.plan.is_grid:
                self.study.enqueue_trial(params_of(frozen), user_attrs={"retry_of": frozen.number})
            self.notes.append(f"trial {frozen.number} re-queued: {reason}")

    def _report_progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(min(self.finished, self.plan.budget), self.plan.budget)


@contextlib.contextmanager
def _stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM sets ``stop`` (a second Ctrl-C interrupts at once); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stale_reason(trial: FrozenTrial, launcher: Launcher, now: float) -> str | None:
    """Why a running trial's launcher is gone (seen from ``launcher``), or None if it may be alive.

    Gone: a process on this host that no longer runs, or no heartbeat for `STALE_AFTER_S`.
    """
    owner = trial.user_attrs.get("launcher") or {}
    if owner.get("id") == launcher.id:
        return None
    pid = owner.get("pid")
    on_this_host = owner.get("host") == launcher.host
    if on_this_host and isinstance(pid, int) and not process_alive(pid, owner.get("start")):
        return f"its launcher (pid {pid} on {owner['host']}) is gone"
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    beat = float(trial.user_attrs.get("heartbeat", owner.get("since", started)))
    if now - beat > STALE_AFTER_S:
        return f"its launcher sent no heartbeat for {now - beat:.0f} s"
    return None


def _merge(flight: _Flight) -> TrialResult:
    """The results of a trial's chunks so far as one result over the seeds they ran."""
    results = flight.results
    seeds = tuple(seed for result in results for seed in result.config.seeds)
    config = TrialConfig(flight.config.spec, seeds, flight.trial.number, flight.config.settings)
    return TrialResult(
        config,
        pd.concat([r.metrics for r in results], ignore_index=True),
        pd.concat([r.outcomes for r in results], ignore_index=True),
        results[0].soft_divergence_threshold,
    )


def _outcome_counts(result: TrialResult) -> dict[str, int]:
    """How many seeds ended in each divergence outcome."""
    return {str(k): int(v) for k, v in result.outcomes["outcome"].value_counts().items()}


def _label(params: dict[str, Any]) -> str:
    return ", ".join(f"{path}={value!r}" for path, value in params.items())
