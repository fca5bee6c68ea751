"""What a sweep optimises: a value per seed from a `TrialResult`, aggregated into the trial's value.

Which results each objective reads (linear learners; DQN):
- final_max_abs_value: outcomes.final_max_abs_value (max |v| at the last
  log); outcomes.final_probe_max_abs_q.
- final_sqrt_ve, final_sqrt_pbe: outcomes.final_sqrt_ve, final_sqrt_pbe; -.
- final_return: -; outcomes.final_eval_return (the last greedy evaluation).
- return_auc: -; metrics.eval_return, the trapezoid area over the logged
  steps divided by their span (the mean greedy return during training).
- divergence_rate: 1 for a seed whose outcome is soft-diverged, recovered or
  hard-diverged, else 0; the same.

A seed whose value is not a number (e.g. a metric of a diverged seed) counts
as the worst value for the study's direction: +inf when minimising, -inf
when maximising.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from rlharness.analysis.statistics import IQM_TRIM, curve_area
from rlharness.errors import SpecError
from rlharness.outcomes import DIVERGED
from rlharness.runner import TrialResult
from rlharness.spec import DeepAgentSpec, ExperimentSpec

_OUTCOME_COLUMNS: dict[str, dict[str, str]] = {
    "final_max_abs_value": {"linear": "final_max_abs_value", "dqn": "final_probe_max_abs_q"},
    "final_sqrt_ve": {"linear": "final_sqrt_ve"},
    "final_sqrt_pbe": {"linear": "final_sqrt_pbe"},
    "final_return": {"dqn": "final_eval_return"},
}
_DERIVED_KINDS: dict[str, tuple[str, ...]] = {
    "divergence_rate": ("linear", "dqn"),
    "return_auc": ("dqn",),
}


def agent_kind(spec: ExperimentSpec) -> str:
    """``dqn`` (DQN and PQN: the same columns) or ``linear``: which results a spec's trials
    produce."""
    return "dqn" if isinstance(spec.agent, DeepAgentSpec) else "linear"


def kinds(objective: str) -> tuple[str, ...]:
    """The agent kinds whose results measure ``objective``."""
    if objective in _OUTCOME_COLUMNS:
        return tuple(_OUTCOME_COLUMNS[objective])
    return _DERIVED_KINDS[objective]


def check_objective(objective: str, spec: ExperimentSpec, where: str) -> None:
    """Raise `SpecError` (sweep.objective) if ``spec``'s agent does not measure ``objective``."""
    kind = agent_kind(spec)
    if kind not in kinds(objective):
        allowed = ", ".join(
            name for name in (*_OUTCOME_COLUMNS, *_DERIVED_KINDS) if kind in kinds(name)
        )
        raise SpecError(
            where,
            [f"sweep.objective: {objective} is not measured for {kind} agents; allowed: {allowed}"],
        )


def per_seed_values(objective: str, result: TrialResult) -> list[float]:
    """The objective of each seed of ``result``, in the order of its outcomes table."""
    kind = agent_kind(result.config.spec)
    outcomes = result.outcomes
    if objective == "divergence_rate":
        return [float(outcome in DIVERGED) for outcome in outcomes["outcome"]]
    if objective == "return_auc":
        return [_return_auc(result.metrics, int(seed)) for seed in outcomes["seed"]]
    return [float(value) for value in outcomes[_OUTCOME_COLUMNS[objective][kind]]]


def aggregate(values: list[float], how: str, direction: str) -> float:
    """``mean``, ``median`` or ``iqm`` of ``values``, a non-number counting as the worst value."""
    worst = math.inf if direction == "minimize" else -math.inf
    array = np.array([worst if math.isnan(value) else value for value in values], dtype=float)
    reducers: dict[str, Callable[[np.ndarray], float]] = {
        "mean": lambda a: float(np.mean(a)),
        "median": lambda a: float(np.median(a)),
        "iqm": _interquartile_mean,
    }
    value = reducers[how](array)
    return worst if math.isnan(value) else value


def _interquartile_mean(values: np.ndarray) -> float:
    """The mean of the middle half (Agarwal et al. 2021)."""
    from scipy.stats import trim_mean

    return float(trim_mean(values, IQM_TRIM))


def _return_auc(metrics: pd.DataFrame, seed: int) -> float:
    history = metrics.loc[metrics["seed"] == seed, ["step", "eval_return"]].dropna()
    return curve_area(history["step"].to_numpy(), history["eval_return"].to_numpy())
