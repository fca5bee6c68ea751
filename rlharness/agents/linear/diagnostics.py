"""Divergence probes of linear learners: norms, max |v|, the max-norm error, exact VE and PBE.

Errors are measured under the env's own off-policy weighting mu (the
behaviour distribution, or the weighting the env declares), whatever
distribution the learner was trained under, so that the corners of a triad
grid are compared on one scale (Sutton & Barto, 2nd ed., sections 11.4-11.7):
    VE(w)  = sum_s mu(s) (v_hat(s) - v_pi(s))^2
    PBE(w) = || Pi delta_w ||^2_mu,  Pi = X (X^T D X)^+ X^T D,
where delta_w is the Bellman error of the learner's own operator (the target
policy's, or the optimality operator for action values). ``max_abs_error`` is
the error in max norm over non-terminal rows, max |v_hat(s) - v_pi(s)|, which
`rlharness.agents.linear.criterion` judges divergence by.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.types import FloatArray, LearnerTrace

METRICS = ("weight_norm", "max_abs_value", "max_abs_error", "sqrt_ve", "sqrt_pbe")
"""The exact metrics of each logged weight vector, in `_row_metrics`' order."""


def measurement_weighting(problem: LinearProblem) -> FloatArray:
    """The env's mu over value rows: mu(s), or mu(s) b(a|s) for action values."""
    model = problem.model
    mu = model.behaviour_distribution
    if problem.control:
        return (mu[:, None] * model.behaviour_policy).reshape(-1)
    return mu


def trace_metrics(problem: LinearProblem, trace: LearnerTrace, seeds: list[int]) -> pd.DataFrame:
    """One row per seed and logged step (seed-major), up to each seed's last finite log."""
    model = problem.model
    rows = problem.rows
    mu = measurement_weighting(problem)
    actions_per_state = model.n_actions if problem.control else 1
    if problem.control:
        row_reward = np.einsum("sat,sat->sa", model.transition, model.reward).reshape(-1)
        row_transition = model.transition.reshape(-1, model.n_states)
    else:
        row_reward = model.policy_reward(problem.target_policy)
        row_transition = problem.policy_transition
    weights = np.ascontiguousarray(trace.weights)
    n_logs, n_seeds, n_features = weights.shape
    columns = _row_metrics(
        weights,
        np.ascontiguousarray(rows),
        row_reward,
        np.ascontiguousarray(row_transition),
        actions_per_state,
        model.gamma,
        problem.target_values,
        mu,
        np.repeat(~model.terminal, actions_per_state),
        np.linalg.pinv(rows.T @ (mu[:, None] * rows)),
    )
    frame = {
        "seed": np.repeat(np.asarray(seeds)[None, :], n_logs, axis=0),
        "step": np.repeat(trace.logged_steps[:, None], n_seeds, axis=1),
        **dict(zip(METRICS, columns, strict=True)),
        "td_error_mean": trace.td_error_mean,
        "td_error_rms": trace.td_error_rms,
    }
    frame.update({f"w_{j}": weights[..., j] for j in range(n_features)})
    table = pd.DataFrame({name: np.asarray(column).T.reshape(-1) for name, column in frame.items()})
    logged = ~np.isnan(weights).any(axis=2).T.reshape(-1)
    return table[logged].reset_index(drop=True)


@numba.njit(parallel=True, cache=True)
def _row_metrics(
    weights, rows, row_reward, row_transition, actions_per_state, gamma, true_values, mu, live,
    gram_pinv,
):  # fmt: skip
    """Norm, max |v|, max |v - v_pi|, sqrt(VE) and sqrt(PBE) of every logged weight vector.

    Each entry is computed by the same sequential loops whatever the batch, so a
    seed's metrics are bitwise the same alone or among others.
    """
    n_logs, n_seeds, n_features = weights.shape
    n_rows, n_states = row_transition.shape
    norm = np.empty((n_logs, n_seeds))
    max_abs = np.empty((n_logs, n_seeds))
    max_error = np.empty((n_logs, n_seeds))
    sqrt_ve = np.empty((n_logs, n_seeds))
    sqrt_pbe = np.empty((n_logs, n_seeds))
    for s in numba.prange(n_seeds):
        values = np.empty(n_rows)
        next_values = np.empty(n_states)
        projected = np.empty(n_features)
        for k in range(n_logs):
            w = weights[k, s]
            squares = 0.0
            for f in range(n_features):
                squares += w[f] * w[f]
            norm[k, s] = np.sqrt(squares)
            largest, worst, ve = 0.0, 0.0, 0.0
            for r in range(n_rows):
                value = 0.0
                for f in range(n_features):
                    value += rows[r, f] * w[f]
                values[r] = value
                if live[r]:
                    largest = max(largest, abs(value))
                    worst = max(worst, abs(value - true_values[r]))
                ve += mu[r] * (value - true_values[r]) ** 2
            finite = np.isfinite(values).all()
            max_abs[k, s] = largest if finite else np.nan
            max_error[k, s] = worst if finite else np.nan
            sqrt_ve[k, s] = np.sqrt(ve)
            for state in range(n_states):
                best = values[state * actions_per_state]
                for a in range(1, actions_per_state):
                    best = max(best, values[state * actions_per_state + a])
                next_values[state] = best
            projected[:] = 0.0
            for r in range(n_rows):
                bellman = row_reward[r] - values[r]
                for state in range(n_states):
                    bellman += gamma * row_transition[r, state] * next_values[state]
                for f in range(n_features):
                    projected[f] += mu[r] * bellman * rows[r, f]
            pbe = 0.0
            for f in range(n_features):
                for g in range(n_features):
                    pbe += projected[f] * gram_pinv[f, g] * projected[g]
            sqrt_pbe[k, s] = np.sqrt(max(pbe, 0.0))
    return norm, max_abs, max_error, sqrt_ve, sqrt_pbe
