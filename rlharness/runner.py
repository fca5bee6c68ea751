"""run_trial: a pure function from one grid point and its seeds to metrics and outcomes.

`plan_trials` expands an experiment into `TrialConfig`s (grid points x seeds);
`check_experiment` resolves every point against its env and agent before
anything runs, so bad input fails early with field-named messages. Linear
learners run in `rlharness.agents.linear.trial`, DQN and PQN agents in
`rlharness.agents.deep.trial`; `run_trials` runs several, training same-shaped fleet
trials as one fleet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rlharness.errors import SpecError, short, short_text
from rlharness.live import NOBODY, Observer, PointObserver
from rlharness.spec import DeepAgentSpec, ExperimentSpec, diagnostics_problems, grid_points


@dataclass(frozen=True)
class TrialConfig:
    """One grid point of an experiment and the seeds to run: run_trial's whole input."""

    spec: ExperimentSpec
    seeds: tuple[int, ...]
    variant: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The grid point in words, e.g. ``features=tabular, off_policy=True``."""
        if not self.settings:
            return self.spec.agent.name
        return ", ".join(f"{path.split('.')[-1]}={value}" for path, value in self.settings.items())


@dataclass(frozen=True)
class TrialResult:
    """Metrics (one row per seed x logged step) and one outcome row per seed.

    ``soft_divergence_threshold`` is the absolute bound on max |v| or probe
    max |Q| (None where a linear learner has none: every reward zero and no
    override); ``divergence_criterion`` is a linear learner's criterion, its
    parameters and statement as the run's summary records it. ``agents`` holds a deep
    agent's saved networks, seed -> file name (``final.pt``, ``step500.zip``, ...) -> the
    file's bytes in its backend's format (`rlharness.agents.deep.saved`); linear learners
    log their weights in the metrics instead.
    """

    config: TrialConfig
    metrics: pd.DataFrame
    outcomes: pd.DataFrame
    soft_divergence_threshold: float | None
    divergence_criterion: dict[str, Any] | None = None
    agents: dict[int, dict[str, bytes]] = field(default_factory=dict)


def plan_trials(spec: ExperimentSpec, seeds: int | None = None) -> list[TrialConfig]:
    """Every grid point of ``spec`` with its seeds (``seeds`` overrides run.seeds)."""
    trials = []
    for variant, (settings, point) in enumerate(grid_points(spec)):
        run = point.run if seeds is None else point.run.model_copy(update={"seeds": seeds})
        trials.append(TrialConfig(point, tuple(run.seed_list), variant, settings))
    return trials


def check_experiment(spec: ExperimentSpec, where: str = "experiment") -> None:
    """Resolve every grid point, raising one `SpecError` with all problems found."""
    problems: list[str] = []
    for settings, point in grid_points(spec, where):
        try:
            resolve(point)
        except SpecError as error:
            label = ", ".join(
                f"{short_text(path)}={short(value)}" for path, value in settings.items()
            )
            suffix = f" (in grid point {label})" if label else ""
            problems.extend(message + suffix for message in error.messages)
    if problems:
        raise SpecError(where, list(dict.fromkeys(problems)))


def resolve(spec: ExperimentSpec) -> None:
    """Check one grid point against its env and agent, or raise `SpecError`."""
    problems = diagnostics_problems(spec)
    if problems:
        raise SpecError(f"experiment {spec.name}", problems)
    if isinstance(spec.agent, DeepAgentSpec):
        from rlharness.agents.deep.trial import resolve_deep

        resolve_deep(spec)
    elif spec.run.device != "cpu":
        problem = (
            f"run.device: {spec.run.device} needs agent.backend: fleet; linear learners run on cpu"
        )
        raise SpecError(f"experiment {spec.name}", [problem])
    elif spec.run.checkpoint_every is not None:
        problem = (
            f"run.checkpoint_every: saved networks are the deep agents'; linear learners log "
            f"their weights every run.log_every; allowed: null (got {spec.run.checkpoint_every})"
        )
        raise SpecError(f"experiment {spec.name}", [problem])
    else:
        from rlharness.agents.linear.trial import resolve_linear

        resolve_linear(spec)


def run_trial(
    config: TrialConfig,
    progress: Callable[[int], None] | None = None,
    observer: Observer = NOBODY,
) -> TrialResult:
    """Run every seed of one grid point; same config -> bitwise-same metrics on CPU.

    ``progress`` is called with the number of seeds finished as they finish;
    ``observer`` receives each record as it is logged (`rlharness.live`).
    """
    seeds = list(config.seeds)
    point = PointObserver(observer, config.variant)
    if isinstance(config.spec.agent, DeepAgentSpec):
        from rlharness.agents.deep.trial import run_deep_trial

        metrics, outcomes, threshold, agents = run_deep_trial(config.spec, seeds, progress, point)
        return TrialResult(config, metrics, outcomes, threshold, agents=agents)
    from rlharness.agents.linear.trial import run_linear_trial

    metrics, outcomes, criterion = run_linear_trial(config.spec, seeds, progress, point)
    return TrialResult(config, metrics, outcomes, criterion.value_bound, criterion.record())


def run_trials(
    configs: list[TrialConfig],
    progress: Callable[[int], None] | None = None,
    observer: Observer = NOBODY,
    on_result: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Every trial's result, in order; fleet trials with the same shapes train as one fleet.

    ``on_result`` is called with each result as soon as it exists: a fleet's
    trials together when the fleet ends, every other trial when it ends.
    """
    from rlharness.agents.deep.trial import fleet_groups, run_fleet_trials

    def finished(result: TrialResult) -> TrialResult:
        if on_result is not None:
            on_result(result)
        return result

    results: dict[int, TrialResult] = {}
    for group in fleet_groups(configs):
        fleet = run_fleet_trials([configs[index] for index in group], progress, observer)
        results.update(zip(group, map(finished, fleet), strict=True))
    return [
        results[index] if index in results else finished(run_trial(config, progress, observer))
        for index, config in enumerate(configs)
    ]
