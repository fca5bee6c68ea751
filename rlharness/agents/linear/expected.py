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


def run_expected(
    step: ExpectedStep,
    w0: FloatArray,
    auxiliary: FloatArray,
    row_weighting: FloatArray,
    target_update_period: int,
    marks: IntArray,
    hard_limits: FloatArray,
    auxiliary_weights: bool = False,
) -> LearnerTrace:
    """Apply ``step`` for ``marks[-1]`` sweeps, logging at ``marks``.

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
    with np.errstate(all="ignore"):
        for t in range(marks[-1]):
            W, auxiliary, td_error = step(W, W_target if target_update_period > 1 else W, auxiliary)
            if target_update_period > 1 and (t + 1) % target_update_period == 0:
                W_target = W.copy()
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
