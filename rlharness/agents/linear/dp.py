"""Expected-update dynamic programming with linear values.

Semi-gradient DP (Sutton & Barto, 2nd ed., eq. 11.9), with the n-step
Bellman operator T^n of the target policy and a target copy w-:
    w <- w + alpha sum_s mu(s) [(T^n X w-)(s) - x(s)^T w] x(s)
With mu uniform this is eq. 11.9's (alpha / |S|) sum_s; n = inf uses v_pi
itself (a Monte Carlo target: gradient descent on VE).

Least-squares DP (Example 11.1, Tsitsiklis & Van Roy 1996) solves the
regression on the DP target exactly at every iteration:
    w_{k+1} = argmin_w sum_s mu(s) (x(s)^T w - (T^n X w_k)(s))^2
            = (X^T D X)^+ X^T D T^n(X w_k).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rlharness.agents.linear.expected import ExpectedStep
from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.types import FloatArray, Hyperparameters, per_row


def semi_gradient_dp(problem: LinearProblem, hyperparameters: Hyperparameters) -> ExpectedStep:
    """The expected semi-gradient TD update over all states, for all seeds at once.

    With a ridge weight eta (Zhang, Yao & Whiteson 2021) the update also
    subtracts alpha eta w: w <- w + alpha [sum_s mu(s) delta(s) x(s) - eta w].
    """
    alpha, ridge = hyperparameters.alpha, hyperparameters.ridge
    X = problem.state_features
    mu = problem.weighting
    target = _bellman_target(problem, hyperparameters.n_step)

    def step(
        W: FloatArray, W_target: FloatArray, auxiliary: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        td_error = target(per_row(W_target, X.T)) - per_row(W, X.T)
        update = per_row(td_error * mu, X)
        if ridge != 0.0:
            update = update - ridge * W
        return W + alpha * update, auxiliary, td_error

    return step


def least_squares_dp(problem: LinearProblem, hyperparameters: Hyperparameters) -> ExpectedStep:
    """The exact least-squares fit of the n-step DP target, for all seeds at once."""
    X = problem.state_features
    mu = problem.weighting
    solve = np.linalg.pinv(X.T @ (mu[:, None] * X))
    bellman_target = _bellman_target(problem, hyperparameters.n_step)

    def step(
        W: FloatArray, W_target: FloatArray, auxiliary: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        target = bellman_target(per_row(W_target, X.T))
        return per_row(per_row(target * mu, X), solve), auxiliary, target - per_row(W, X.T)

    return step


def _bellman_target(
    problem: LinearProblem, n_step: int | None
) -> Callable[[FloatArray], FloatArray]:
    """``v -> T^n v`` on rows of values; for n > 1 the n-step operator is built once, here."""
    if n_step is None or n_step == 1:
        return lambda values: problem.expected_target(values, n_step)
    reward_n, discount_n = problem.n_step_operator(n_step)
    return lambda values: reward_n + per_row(values, discount_n.T)
