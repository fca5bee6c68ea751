"""The limit of over-parameterised target TD (Che et al., ICML 2024), computed exactly.

Che et al. ("Target Networks and Over-parameterization Stabilize Off-policy
Bootstrapping with Function Approximation") show that with features of full row
rank (at least as many features as states) a target network makes expected
semi-gradient TD converge under any state weighting: each inner regression
fits X w = r + gamma P X w- exactly, so the values follow the contraction
v <- r + gamma P v and reach v_pi. Every update lies in the row space of X, so
the weights keep w0's component in the null space of X:
    w_inf = (I - X^+ X) w0 + X^+ v_pi.
"""

from __future__ import annotations

import numpy as np

from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.types import FloatArray


def overparameterised_td_limit(problem: LinearProblem, w0: FloatArray) -> FloatArray:
    """(I - X^+ X) w0 + X^+ v_pi for state values; ValueError unless X has full row rank."""
    if problem.control:
        raise ValueError("state values only")
    X = problem.state_features
    live = ~problem.model.terminal
    rank = int(np.linalg.matrix_rank(X[live]))
    if rank < int(live.sum()):
        raise ValueError(
            f"the features have rank {rank} < {int(live.sum())} live states: not over-parameterised"
        )
    pseudo_inverse = np.linalg.pinv(X)
    return w0 - pseudo_inverse @ (X @ w0) + pseudo_inverse @ problem.target_values
