"""The regularised TD fixed points of Zhang, Yao & Whiteson (ICML 2021), computed exactly.

With a target network w- and ridge weight eta, the expected update
    w <- w + alpha [X^T D (r + gamma P X w-) - X^T D X w - eta w]
pulls w towards the ridge regression of the bootstrapped target, and the
target towards w; at their common fixed point w = w-:
    (X^T D (X - gamma P X) + eta I) w = X^T D r,
the regularised TD fixed point (eta = 0: the TD fixed point). D = diag of the
row weighting (mu(s), or mu(s) b(a|s) for action values). For control, P is
the transition to the greedy action of the fixed point itself,
P[(s, a), (s', a')] = p(s'|s, a) [a' = argmax q_w(s', .)], so the fixed point
is a w whose greedy policy reproduces it: `regularised_q_fixed_point`
tries every deterministic policy (small models only).
"""

from __future__ import annotations

import itertools

import numpy as np

from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.types import FloatArray

MAX_POLICIES = 1 << 16
"""The most deterministic policies `regularised_q_fixed_point` enumerates."""


def regularised_td_fixed_point(problem: LinearProblem, ridge: float) -> FloatArray:
    """The w of (X^T D (X - gamma P_pi X) + eta I) w = X^T D r_pi, state values."""
    if problem.control:
        raise ValueError("state values only; use regularised_q_fixed_point for action values")
    model = problem.model
    X, D = problem.state_features, np.diag(problem.weighting)
    reward = model.policy_reward(problem.target_policy)
    A = X.T @ D @ (X - model.gamma * problem.policy_transition @ X) + ridge * np.eye(X.shape[1])
    return np.linalg.solve(A, X.T @ D @ reward)


def regularised_q_fixed_point(problem: LinearProblem, ridge: float) -> FloatArray:
    """The w whose greedy policy pi_w solves (X^T D (X - gamma P_{pi_w} X) + eta I) w = X^T D r.

    Raises ValueError if the model has more than `MAX_POLICIES` deterministic policies, or
    if no policy (or more than one) is consistent.
    """
    if not problem.control:
        raise ValueError("action values only; use regularised_td_fixed_point for state values")
    model = problem.model
    n_states, n_actions = model.n_states, model.n_actions
    if n_actions**n_states > MAX_POLICIES:
        raise ValueError(f"{n_actions}^{n_states} policies are too many to enumerate")
    X, D = problem.rows, np.diag(problem.row_weighting)
    reward = np.einsum("sat,sat->sa", model.transition, model.reward).reshape(-1)
    transition = model.transition.reshape(-1, n_states)
    found = []
    for policy in itertools.product(range(n_actions), repeat=n_states):
        greedy = np.zeros((n_states, n_states * n_actions))
        greedy[np.arange(n_states), np.arange(n_states) * n_actions + np.array(policy)] = 1.0
        next_rows = transition @ greedy @ X
        A = X.T @ D @ (X - model.gamma * next_rows) + ridge * np.eye(X.shape[1])
        try:
            w = np.linalg.solve(A, X.T @ D @ reward)
        except np.linalg.LinAlgError:
            continue
        q = (X @ w).reshape(n_states, n_actions)
        chosen = q[np.arange(n_states), policy]
        if np.all(chosen >= q.max(axis=1) - 1e-12 * max(1.0, float(np.abs(q).max()))):
            found.append(w)
    if not found:
        raise ValueError("no deterministic greedy policy is consistent with its fixed point")
    if any(not np.allclose(w, found[0]) for w in found[1:]):
        raise ValueError(f"{len(found)} distinct regularised fixed points")
    return found[0]
