"""The driver of expected (DP-style) updates, batched over seeds with NumPy.

An expected update replaces the sampled transition by its expectation under
the state weighting, so a run is deterministic given w0; seeds differ only
through ``initial_weight_noise``. Each rule supplies one `ExpectedStep`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.types import (
    FloatArray,
    Hyperparameters,
    IntArray,
    LearnerTrace,
    per_row,
)

ExpectedStep = Callable[
    [FloatArray, FloatArray, FloatArray], tuple[FloatArray, FloatArray, FloatArray]
]
"""(W, W_target, auxiliary) -> (W_next, auxiliary_next, expected TD errors per row)."""

ExpectedBuilder = Callable[[LinearProblem, Hyperparameters], ExpectedStep]
"""(problem, hyperparameters) -> the rule's expected update for all seeds at once."""


def target_update(W_target: FloatArray, W: FloatArray, tau: float, radius: float) -> FloatArray:
    """w- + tau (Proj_R(w) - w-) per row: Zhang, Yao & Whiteson (2021)'s target update.

    Proj_R scales w onto the ball ||w|| <= R where it lies outside. The paper
    projects twice, w before and w- after the Polyak step; with one radius and
    w0 inside the ball the second projection never acts (w- stays a convex
    combination of points of the ball), so it is left out: a w0 outside the
    ball enters it only as tau pulls w- in. tau = 1 without a radius is DQN's copy.
    """
    if radius != float("inf"):
        norms = np.linalg.norm(W, axis=1, keepdims=True)
        W = W * np.minimum(1.0, radius / np.where(norms > 0, norms, 1.0))
    if tau == 1.0:
        return W.copy()
    return W_target + tau * (W - W_target)


def run_expected(
    step: ExpectedStep,
    w0: FloatArray,
    auxiliary: FloatArray,
    row_weighting: FloatArray,
    target_update_period: int,
    marks: IntArray,
    hard_limits: FloatArray,
    auxiliary_weights: bool = False,
    target_update_tau: float = 1.0,
    projection_radius: float = float("inf"),
) -> LearnerTrace:
    """Apply ``step`` for ``marks[-1]`` sweeps, logging at ``marks``; every
    ``target_update_period`` sweeps the target moves by `target_update`.

    The TD-error statistics are the ``row_weighting``-weighted mean and root
    mean square of the expected TD errors, averaged over the sweeps since the
    previous log. Seed i stops once a weight (or, with ``auxiliary_weights``, a
    secondary weight: TDC's and GTD2's v, not emphatic TD's emphasis) is
    non-finite or beyond ``hard_limits[i]``, and is NaN afterwards.
    """
    n_seeds = w0.shape[0]
    weights = np.full((marks.size, *w0.shape), np.nan)
    weights[0] = w0
    td_mean = np.full((marks.size, n_seeds), np.nan)
    td_rms = np.full((marks.size, n_seeds), np.nan)
    hard_step = np.full(n_seeds, -1, dtype=np.int64)
    W, W_target = w0.copy(), w0.copy()
    alive = np.ones(n_seeds, dtype=bool)
    limits = hard_limits[:, None]
    td_sum, td_square_sum, log = np.zeros(n_seeds), np.zeros(n_seeds), 1
    has_target = target_update_period > 1 or target_update_tau < 1.0
    with np.errstate(all="ignore"):
        for t in range(marks[-1]):
            W, auxiliary, td_error = step(W, W_target if has_target else W, auxiliary)
            if has_target and (t + 1) % target_update_period == 0:
                W_target = target_update(W_target, W, target_update_tau, projection_radius)
            td_sum += per_row(td_error, row_weighting)
            td_square_sum += per_row(td_error * td_error, row_weighting)
            newly_diverged = alive & ~np.all(np.abs(W) <= limits, axis=1)
            if auxiliary_weights:
                newly_diverged |= alive & ~np.all(np.abs(auxiliary) <= limits, axis=1)
            hard_step[newly_diverged] = t + 1
            alive &= ~newly_diverged
            W[~alive] = np.nan
            if t + 1 == marks[log]:
                count = marks[log] - marks[log - 1]
                weights[log] = W
                td_mean[log] = np.where(alive, td_sum / count, np.nan)
                td_rms[log] = np.where(alive, np.sqrt(td_square_sum / count), np.nan)
                td_sum[:], td_square_sum[:], log = 0.0, 0.0, log + 1
    return LearnerTrace(marks, weights, td_mean, td_rms, hard_step)
