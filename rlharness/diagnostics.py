"""Divergence probes of linear learners: norms, max |v|, exact VE and PBE, outcome classes.

Errors are measured under the env's own off-policy weighting mu (the
behaviour distribution, or the weighting the env declares), whatever
distribution the learner was trained under, so that the corners of a triad
grid are compared on one scale (Sutton & Barto, 2nd ed., sections 11.4-11.7):
    VE(w)  = sum_s mu(s) (v_hat(s) - v_pi(s))^2
    PBE(w) = || Pi delta_w ||^2_mu,  Pi = X (X^T D X)^+ X^T D,
where delta_w is the Bellman error of the learner's own operator (the target
policy's, or the optimality operator for action values).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd

from rlharness.agents.linear import LearnerTrace, LinearProblem
from rlharness.agents.linear.types import FloatArray


class Outcome(StrEnum):
    """How a seed ended."""

    CONVERGED = "converged"
    SOFT_DIVERGED = "soft-diverged"
    HARD_DIVERGED = "hard-diverged"


def measurement_weighting(problem: LinearProblem) -> FloatArray:
    """The env's mu over value rows: mu(s), or mu(s) b(a|s) for action values."""
    model = problem.model
    mu = model.behaviour_distribution
    if problem.control:
        return (mu[:, None] * model.behaviour_policy).reshape(-1)
    return mu


def trace_metrics(problem: LinearProblem, trace: LearnerTrace, seeds: list[int]) -> pd.DataFrame:
    """One row per seed and logged step, up to each seed's last finite log."""
    rows = problem.rows
    mu = measurement_weighting(problem)
    live_rows = mu > 0
    weights = trace.weights
    n_logs, n_seeds, n_features = weights.shape
    with np.errstate(all="ignore"):
        values = weights @ rows.T
        error = values - problem.target_values
        bellman_error = (
            problem.expected_target(values.reshape(-1, rows.shape[0]), 1).reshape(values.shape)
            - values
        )
        projected = (bellman_error * mu) @ rows
        gram_inverse = np.linalg.pinv(rows.T @ (mu[:, None] * rows))
        pbe = np.einsum("lsf,fg,lsg->ls", projected, gram_inverse, projected)
        frame = {
            "seed": np.repeat(np.asarray(seeds)[None, :], n_logs, axis=0),
            "step": np.repeat(trace.logged_steps[:, None], n_seeds, axis=1),
            "weight_norm": np.linalg.norm(weights, axis=2),
            "max_abs_value": np.abs(values[..., live_rows]).max(axis=2),
            "sqrt_ve": np.sqrt((error * error) @ mu),
            "sqrt_pbe": np.sqrt(np.clip(pbe, 0.0, None)),
            "td_error_mean": trace.td_error_mean,
            "td_error_rms": trace.td_error_rms,
        }
        frame.update({f"w_{j}": weights[..., j] for j in range(n_features)})
    table = pd.DataFrame({name: np.asarray(column).reshape(-1) for name, column in frame.items()})
    logged = ~np.isnan(weights).any(axis=2).reshape(-1)
    return table[logged].reset_index(drop=True)


def classify_seeds(
    metrics: pd.DataFrame, trace: LearnerTrace, seeds: list[int], soft_threshold: float
) -> pd.DataFrame:
    """The outcome of each seed, with the steps at which it diverged.

    hard-diverged: weights became non-finite or exceeded the hard threshold
    (at ``hard_divergence_step``). soft-diverged: at the last step, max |v| is
    beyond ``soft_threshold`` (first logged crossing: ``soft_divergence_step``).
    converged: neither.
    """
    records = []
    for index, seed in enumerate(seeds):
        history = metrics[metrics["seed"] == seed]
        final = history.iloc[-1]
        beyond = history.loc[history["max_abs_value"] > soft_threshold, "step"]
        hard_step = int(trace.hard_divergence_step[index])
        if hard_step >= 0:
            outcome = Outcome.HARD_DIVERGED
        elif final["max_abs_value"] > soft_threshold:
            outcome = Outcome.SOFT_DIVERGED
        else:
            outcome = Outcome.CONVERGED
        records.append(
            {
                "seed": seed,
                "outcome": str(outcome),
                "hard_divergence_step": hard_step if hard_step >= 0 else None,
                "soft_divergence_step": int(beyond.iloc[0]) if len(beyond) else None,
                "last_logged_step": int(final["step"]),
                "final_max_abs_value": float(final["max_abs_value"]),
                "final_sqrt_ve": float(final["sqrt_ve"]),
                "final_sqrt_pbe": float(final["sqrt_pbe"]),
                "final_weight_norm": float(final["weight_norm"]),
                "weight_norm_growth_rate": _log_growth_rate(history),
            }
        )
    return pd.DataFrame.from_records(records)


def _log_growth_rate(history: pd.DataFrame) -> float:
    """Slope per step of log ||w|| over the second half of the logged steps (how fast it grows)."""
    if len(history) < 2:
        return float("nan")
    half = history.iloc[(len(history) - 1) // 2 :]
    first, last = half.iloc[0], half.iloc[-1]
    span = last["step"] - first["step"]
    if span <= 0 or first["weight_norm"] <= 0 or last["weight_norm"] <= 0:
        return float("nan")
    return float(np.log(last["weight_norm"] / first["weight_norm"]) / span)
