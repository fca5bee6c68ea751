"""Data passed between the linear learners, the runner and the diagnostics."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class Hyperparameters(NamedTuple):
    """A rule's settings, the same for every seed of a trial.

    ``alpha`` is the step size (0 for least-squares DP, which has none), ``beta``
    the step size of gradient TD's secondary weights (0 for other rules),
    ``n_step`` the n of the n-step return (None: the Monte Carlo return, n = inf),
    ``target_update_period`` how many updates pass between target updates, each
    w- <- w- + ``target_update_tau`` (Proj_R(w) - w-) with R the
    ``projection_radius`` (inf: none), ``ridge`` the eta of the update's
    -alpha eta w term, and ``correction_regularisation`` TDRC's kappa (0 for
    every other rule).
    """

    alpha: float
    beta: float
    n_step: int | None
    target_update_period: int
    correction_regularisation: float = 0.0
    target_update_tau: float = 1.0
    ridge: float = 0.0
    projection_radius: float = float("inf")


class LearnerTrace(NamedTuple):
    """What a batched learner logged, seeds along axis 1 (axis 0 of the step-free arrays).

    ``weights[k, i]`` is seed i's weight vector at ``logged_steps[k]`` (NaN once
    it has hard-diverged); the TD-error statistics summarise the steps since
    the previous log. ``hard_divergence_step[i]`` is the step at which seed i's
    weights became non-finite or exceeded its hard limit, or -1.
    """

    logged_steps: IntArray
    weights: FloatArray
    td_error_mean: FloatArray
    td_error_rms: FloatArray
    hard_divergence_step: IntArray


def logged_steps(steps: int, log_every: int) -> IntArray:
    """Step 0, every ``log_every`` steps, and the last step."""
    marks = np.arange(0, steps + 1, log_every, dtype=np.int64)
    if marks[-1] != steps:
        marks = np.append(marks, np.int64(steps))
    return marks


def per_row(rows: FloatArray, matrix: NDArray[np.floating[Any]]) -> FloatArray:
    """``rows @ matrix`` with each row's result independent of how many rows there are.

    BLAS picks different kernels for one row (a matrix-vector product) and for
    many (blocked matrix products), and they round differently; einsum's own
    loop sums every output element over the shared axis in one fixed order, so
    a seed's expected trajectory is the same bits batched or alone.
    """
    return np.einsum("ij,j...->i...", rows, matrix)
