"""run_trial: a pure function from one grid point and its seeds to metrics and outcomes.

`plan_trials` expands an experiment into `TrialConfig`s (grid points x seeds);
`check_experiment` resolves every point against its env and agent before
anything runs, so bad input fails early with field-named messages.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

import rlharness_envs
from rlharness.agents.linear import (
    RULES,
    LinearProblem,
    build_problem,
    check_rule,
    logged_steps,
    run_linear,
)
from rlharness.diagnostics import classify_seeds, trace_metrics
from rlharness.errors import SpecError
from rlharness.spec import ExperimentSpec, grid_points

SEED_BATCH = 4096
"""Seeds per compiled call; batches only pace the progress bar (seeds are independent)."""


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
    """Metrics (one row per seed x logged step) and one outcome row per seed."""

    config: TrialConfig
    metrics: pd.DataFrame
    outcomes: pd.DataFrame
    soft_divergence_threshold: float


@dataclass(frozen=True)
class ResolvedTrial:
    """A grid point checked against its env: the linear problem and the base w0."""

    problem: LinearProblem
    initial_weights: np.ndarray
    soft_divergence_threshold: float


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
            label = ", ".join(f"{path}={value!r}" for path, value in settings.items())
            suffix = f" (in grid point {label})" if label else ""
            problems.extend(message + suffix for message in error.messages)
    if problems:
        raise SpecError(where, list(dict.fromkeys(problems)))


def resolve(spec: ExperimentSpec) -> ResolvedTrial:
    """Build the env's exact model and the agent's problem, or raise `SpecError`."""
    where = f"experiment {spec.name}"
    model = _exact_model(spec, where)
    problems = check_rule(spec.agent, spec.triad, model.episodic)
    if problems:
        raise SpecError(where, problems)
    control = RULES[spec.agent.name].control
    try:
        problem = build_problem(model, spec.triad.features, spec.triad.off_policy, control)
    except ValueError as error:
        raise SpecError(where, [f"env.id: {spec.env.id}: {error}"]) from None
    try:
        w0 = problem.initial_weights(spec.agent.initial_weights)
    except ValueError as error:
        raise SpecError(where, [f"agent.initial_weights: {error}"]) from None
    threshold = spec.diagnostics.soft_divergence_threshold or model.max_return()
    return ResolvedTrial(problem, w0, threshold)


def run_trial(config: TrialConfig, progress: Callable[[int], None] | None = None) -> TrialResult:
    """Run every seed of one grid point; same config -> bitwise-same metrics on CPU.

    ``progress`` is called with the number of seeds finished after each batch.
    """
    spec = config.spec
    resolved = resolve(spec)
    marks = logged_steps(spec.run.steps, spec.run.log_every)
    metrics, outcomes = [], []
    seeds = list(config.seeds)
    for start in range(0, len(seeds), SEED_BATCH):
        batch = seeds[start : start + SEED_BATCH]
        w0 = _initial_weights(resolved.initial_weights, batch, spec.agent.initial_weight_noise)
        trace = run_linear(
            resolved.problem,
            spec.agent,
            spec.triad,
            w0,
            batch,
            marks,
            spec.diagnostics.hard_divergence_threshold,
        )
        batch_metrics = trace_metrics(resolved.problem, trace, batch)
        metrics.append(batch_metrics)
        outcomes.append(
            classify_seeds(batch_metrics, trace, batch, resolved.soft_divergence_threshold)
        )
        if progress is not None:
            progress(len(batch))
    return TrialResult(
        config,
        pd.concat(metrics, ignore_index=True),
        pd.concat(outcomes, ignore_index=True),
        resolved.soft_divergence_threshold,
    )


def _initial_weights(base: np.ndarray, seeds: list[int], noise: float) -> np.ndarray:
    """w0 for each seed: the base plus, if asked, Gaussian noise from the seed's own stream."""
    w0 = np.tile(base, (len(seeds), 1))
    if noise > 0:
        for row, seed in enumerate(seeds):
            w0[row] += noise * np.random.default_rng(seed).standard_normal(base.size)
    return w0


def env_creator(env_id: str) -> Callable[..., Any]:
    """The class or factory registered for a Gymnasium id."""
    entry_point = gym.spec(env_id).entry_point
    if callable(entry_point):
        return entry_point
    creator: Callable[..., Any] = gym.envs.registration.load_env_creator(str(entry_point))
    return creator


def _exact_model(spec: ExperimentSpec, where: str) -> rlharness_envs.ExactModel:
    env_id = spec.env.id
    if env_id not in gym.registry:
        available = ", ".join(sorted(rlharness_envs.TRIAD_ENVS))
        raise SpecError(where, [f"env.id: unknown environment '{env_id}'; available: {available}"])
    creator = env_creator(env_id)
    parameters = inspect.signature(creator).parameters
    unknown = sorted(set(spec.env.kwargs) - set(parameters))
    if unknown:
        allowed = ", ".join(name for name in parameters if name != "self") or "(none)"
        raise SpecError(
            where,
            [
                f"env.kwargs.{name}: not an argument of {env_id}; allowed: {allowed}"
                for name in unknown
            ],
        )
    try:
        env = creator(**spec.env.kwargs)
    except (TypeError, ValueError) as error:
        raise SpecError(where, [f"env.kwargs: {env_id}: {error}"]) from None
    if not isinstance(env, rlharness_envs.FiniteMDPEnv):
        linear = ", ".join(sorted(rlharness_envs.TRIAD_ENVS))
        raise SpecError(
            where,
            [f"env.id: linear learners need an env with an exact model; allowed: {linear}"],
        )
    return env.model
