"""The limit of over-parameterised target TD and Q-learning (Che et al., ICML 2024), exactly.

Che et al. ("Target Networks and Over-parameterization Stabilize Off-policy
Bootstrapping with Function Approximation") show that with features of full row
rank (at least as many features as value rows) a target network makes expected
semi-gradient TD converge under any weighting: each inner regression fits
X w = T(X w-) exactly, so the values follow the Bellman iteration v <- T v, a
gamma-contraction, to its fixed point (v_pi; q* for Q-learning, their control
extension). Every update lies in the row space of X, so the weights keep w0's
component in the null space of X:
    w_inf = (I - X^+ X) w0 + X^+ v*.
"""

from __future__ import annotations

import numpy as np

from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.types import FloatArray


def overparameterised_limit(problem: LinearProblem, w0: FloatArray) -> FloatArray:
    """(I - X^+ X) w0 + X^+ v* over the value rows; ValueError unless X has full row rank."""
    X = problem.rows
    live = np.repeat(~problem.model.terminal, X.shape[0] // problem.model.n_states)
    rank = int(np.linalg.matrix_rank(X[live]))
    if rank < int(live.sum()):
        raise ValueError(
            f"the features have rank {rank} < {int(live.sum())} live value rows: not "
            "over-parameterised"
        )
    pseudo_inverse = np.linalg.pinv(X)
    return w0 - pseudo_inverse @ (X @ w0) + pseudo_inverse @ problem.target_values
