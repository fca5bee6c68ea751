"""The off-policy TD fixed point and its error, computed exactly (Kolter, NeurIPS 2011).

Linear TD(0) under a state weighting D = diag(mu) has its fixed point where the
expected update vanishes (Sutton & Barto, 2nd ed., eq. 9.12; Kolter 2011, section 2):
    X^T D (X - gamma P_pi X) w_TD = X^T D r_pi.
On-policy (mu = d_pi) the matrix is positive definite; off-policy it can be
singular, and near a singular weighting the fixed point's error grows without
bound (Kolter 2011, section 3). The best approximation in the D-norm is the
D-weighted projection of v_pi, w* = (X^T D X)^-1 X^T D v_pi.
"""

from __future__ import annotations

import numpy as np

from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.types import FloatArray


class SingularFixedPointError(ValueError):
    """The TD fixed-point equations have no unique solution under this weighting."""


def td_matrix(problem: LinearProblem) -> FloatArray:
    """``A = X^T D (X - gamma P_pi X)``, the TD fixed point's matrix, state values."""
    if problem.control:
        raise ValueError("state values only: the TD fixed point of a prediction problem")
    X, mu = problem.state_features, problem.weighting
    next_features = problem.model.gamma * problem.policy_transition @ X
    return np.asarray(X.T @ (mu[:, None] * (X - next_features)), dtype=np.float64)


def td_fixed_point(problem: LinearProblem) -> FloatArray:
    """The w solving ``X^T D (X - gamma P_pi X) w = X^T D r_pi``, D = diag(mu) of ``problem``.

    Raises `SingularFixedPointError` when the matrix is singular to working precision:
    its smallest singular value is within rounding error of the two terms it is the
    difference of, n eps (||X^T D X|| + gamma ||X^T D P_pi X||).
    """
    A = td_matrix(problem)
    X, mu = problem.state_features, problem.weighting
    weighted = mu[:, None] * X
    scale = np.linalg.norm(X.T @ weighted, 2) + problem.model.gamma * np.linalg.norm(
        weighted.T @ problem.policy_transition @ X, 2
    )
    smallest = float(np.linalg.svd(A, compute_uv=False).min())
    if smallest <= A.shape[0] * np.finfo(np.float64).eps * scale:
        raise SingularFixedPointError(
            f"X^T D (X - gamma P X) is singular under this state weighting (smallest "
            f"singular value {smallest:.3g}): no unique TD fixed point"
        )
    reward = problem.model.policy_reward(problem.target_policy)
    return np.asarray(np.linalg.solve(A, X.T @ (mu * reward)), dtype=np.float64)


def best_approximation(problem: LinearProblem) -> FloatArray:
    """``w* = argmin_w ||X w - v_pi||_D``, the D-weighted projection of the true values."""
    X, mu = problem.state_features, problem.weighting
    gram = X.T @ (mu[:, None] * X)
    return np.asarray(np.linalg.solve(gram, X.T @ (mu * problem.target_values)), dtype=np.float64)


def value_error(problem: LinearProblem, w: FloatArray) -> float:
    """``||X w - v_pi||_D = sqrt(sum_s mu(s) (x(s)^T w - v_pi(s))^2)``, the root of VE."""
    error = problem.state_features @ w - problem.target_values
    return float(np.sqrt(np.sum(problem.weighting * error**2)))


def euclidean_value_error(problem: LinearProblem, w: FloatArray) -> float:
    """``||X w - v_pi||_2``, unweighted, as Zhang, Yao & Whiteson (2021) plot Kolter's example."""
    return float(np.linalg.norm(problem.state_features @ w - problem.target_values))
