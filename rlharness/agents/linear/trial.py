"""Linear learners as trials: resolve a grid point against its exact model, run its seeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
from rlharness.agents.linear.criterion import (
    DivergenceCriterion,
    classify_seeds,
    divergence_criterion,
)
from rlharness.agents.linear.diagnostics import trace_metrics
from rlharness.environments import instantiate_env
from rlharness.errors import SpecError
from rlharness.live import SILENT, PointObserver
from rlharness.memory import linear_metrics_bytes, memory_problem
from rlharness.spec import ExperimentSpec, LinearAgentSpec

SEED_BATCH = 4096
"""Seeds per compiled call; batches only pace the progress bar (seeds are independent)."""


@dataclass(frozen=True)
class ResolvedLinearTrial:
    """A grid point checked against its env: the linear problem, the base w0, the criterion."""

    problem: LinearProblem
    initial_weights: np.ndarray
    criterion: DivergenceCriterion


def resolve_linear(spec: ExperimentSpec) -> ResolvedLinearTrial:
    """Build the env's exact model and the agent's problem, or raise `SpecError`."""
    where = f"experiment {spec.name}"
    agent = spec.agent
    assert isinstance(agent, LinearAgentSpec)
    env = instantiate_env(spec.env, where).unwrapped
    if not isinstance(env, rlharness_envs.FiniteMDPEnv):
        allowed = ", ".join(sorted(rlharness_envs.TRIAD_ENVS))
        raise SpecError(
            where, [f"env.id: linear learners need an env with an exact model; allowed: {allowed}"]
        )
    model = env.model
    problems = check_rule(agent, spec.triad, model.episodic)
    if problems:
        raise SpecError(where, problems)
    control = RULES[agent.name].control
    try:
        triad = spec.triad
        problem = build_problem(
            model,
            triad.features,
            triad.off_policy,
            control,
            triad.feature_width,
            triad.feature_seed,
        )
        criterion = divergence_criterion(model, spec.diagnostics, control)
    except np.linalg.LinAlgError as error:
        # the env's arguments made a model without a solution (e.g. an episode that never ends)
        field = "env.kwargs" if spec.env.kwargs else "env.id"
        raise SpecError(
            where, [f"{field}: the exact model of {spec.env.id} has no solution here: {error}"]
        ) from None
    except ValueError as error:
        raise SpecError(where, [f"env.id: {spec.env.id}: {error}"]) from None
    try:
        w0 = problem.initial_weights(agent.initial_weights)
    except ValueError as error:
        raise SpecError(where, [f"agent.initial_weights: {error}"]) from None
    memory = _memory_problem(spec, problem.n_features)
    if memory is not None:
        raise SpecError(where, [memory])
    return ResolvedLinearTrial(problem, w0, criterion)


def _memory_problem(spec: ExperimentSpec, n_features: int) -> str | None:
    """A message naming the run field to change if the trial's logs would not fit in memory."""
    run = spec.run
    logs = run.steps // run.log_every + 2
    needed = linear_metrics_bytes(run.seeds, min(run.seeds, SEED_BATCH), logs, n_features)
    field = "run.log_every" if logs >= run.seeds else "run.seeds"
    what = f"logging {n_features} weights of {run.seeds} seed(s) at {logs} steps"
    return memory_problem(field, what, needed)


def run_linear_trial(
    spec: ExperimentSpec,
    seeds: list[int],
    progress: Callable[[int], None] | None,
    point: PointObserver = SILENT,
) -> tuple[pd.DataFrame, pd.DataFrame, DivergenceCriterion]:
    """Metrics and outcomes of every seed, in batches of compiled calls, and the criterion.

    A batch computes its seeds' whole trajectories in one call, so their records go
    to ``point`` when the batch finishes, not step by step."""
    resolved = resolve_linear(spec)
    agent = spec.agent
    assert isinstance(agent, LinearAgentSpec)
    marks = logged_steps(spec.run.steps, spec.run.log_every)
    metrics, outcomes = [], []
    for start in range(0, len(seeds), SEED_BATCH):
        batch = seeds[start : start + SEED_BATCH]
        w0 = _initial_weights(resolved.initial_weights, batch, agent.initial_weight_noise)
        trace = run_linear(
            resolved.problem,
            agent,
            spec.triad,
            w0,
            batch,
            marks,
            resolved.criterion.hard_limits(w0),
        )
        batch_metrics = trace_metrics(resolved.problem, trace, batch)
        metrics.append(batch_metrics)
        _stream(point, batch_metrics)
        outcomes.append(classify_seeds(batch_metrics, trace, batch, resolved.criterion))
        if progress is not None:
            progress(len(batch))
    return (
        pd.concat(metrics, ignore_index=True),
        pd.concat(outcomes, ignore_index=True),
        resolved.criterion,
    )


def _stream(point: PointObserver, metrics: pd.DataFrame) -> None:
    """Each seed's records (every logged column but the seed), then its end, to ``point``."""
    columns = [name for name in metrics.columns if name != "seed"]
    for seed, rows in metrics.groupby("seed", sort=False):
        sink = point.sink(int(seed))
        for record in rows[columns].to_dict("records"):
            sink(record)
        point.finished(int(seed))


def _initial_weights(base: np.ndarray, seeds: list[int], noise: float) -> np.ndarray:
    """w0 for each seed: the base plus, if asked, Gaussian noise from the seed's own stream."""
    w0 = np.tile(base, (len(seeds), 1))
    if noise > 0:
        for row, seed in enumerate(seeds):
            w0[row] += noise * np.random.default_rng(seed).standard_normal(base.size)
    return w0
