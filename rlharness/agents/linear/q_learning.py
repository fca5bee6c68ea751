"""Semi-gradient Q-learning with linear action values (Sutton & Barto, 2nd ed., eq. 10.1 / 6.8).

    delta = R + gamma max_a' x(S', a')^T w- - x(S, A)^T w
    w    <- w + alpha delta x(S, A)
Actions come from the fixed behaviour policy; the target policy is greedy, so
no importance sampling is needed. w- is refreshed every
``target_update_period`` updates, the linear analogue of DQN's target network.
The expected form is semi-gradient Q-value iteration under mu(s) b(a|s).
"""

from __future__ import annotations

import numba
import numpy as np

from rlharness.agents.linear.expected import ExpectedStep
from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.sampling import (
    allocate_trace,
    axpy_exploded,
    cumulative,
    dot,
    draw,
    new_stream,
    record,
    seed_keys,
)
from rlharness.agents.linear.types import FloatArray, IntArray, LearnerTrace


def sampled_q_learning(
    problem: LinearProblem,
    w0: FloatArray,
    seeds: list[int],
    alpha: float,
    target_update_period: int,
    marks: IntArray,
    hard_limit: float,
) -> LearnerTrace:
    """Run semi-gradient Q-learning for every seed."""
    model = problem.model
    assert problem.action_features is not None
    weights, td_mean, td_rms, hard_step = allocate_trace(marks, len(seeds), w0)
    _q_learning_kernel(
        seed_keys(seeds), np.ascontiguousarray(w0), np.ascontiguousarray(problem.action_features),
        cumulative(problem.behaviour_policy), cumulative(model.transition),
        np.ascontiguousarray(model.reward), cumulative(model.start_distribution), model.terminal,
        model.gamma, alpha, target_update_period, marks, hard_limit,
        weights, td_mean, td_rms, hard_step,
    )  # fmt: skip
    return LearnerTrace(marks, weights, td_mean, td_rms, hard_step)


@numba.njit(parallel=True, cache=True, nogil=True)
def _q_learning_kernel(
    keys, w0, XA, behaviour_cum, transition_cum, reward, start_cum, terminal,
    gamma, alpha, target_update_period, marks, hard_limit,
    out_weights, out_td_mean, out_td_rms, out_hard_step,
):  # fmt: skip
    n_actions = XA.shape[1]
    for i in numba.prange(w0.shape[0]):
        rng = new_stream(keys[i])
        w = w0[i].copy()
        w_target = w0[i].copy()
        w_bootstrap = w if target_update_period == 1 else w_target
        td_sum, td_square_sum, td_count, log = 0.0, 0.0, 0, 1
        s = draw(start_cum, rng)
        for t in range(marks[-1]):
            a = draw(behaviour_cum[s], rng)
            s_next = draw(transition_cum[s, a], rng)
            best_next = dot(XA[s_next, 0], w_bootstrap)
            for a_next in range(1, n_actions):
                best_next = max(best_next, dot(XA[s_next, a_next], w_bootstrap))
            td_error = reward[s, a, s_next] + gamma * best_next - dot(XA[s, a], w)
            diverged = axpy_exploded(w, alpha * td_error, XA[s, a], hard_limit)
            td_sum += td_error
            td_square_sum += td_error * td_error
            td_count += 1
            if target_update_period > 1 and (t + 1) % target_update_period == 0:
                w_target[:] = w
            s = draw(start_cum, rng) if terminal[s_next] else s_next
            if diverged:
                out_hard_step[i] = t + 1
                break
            if t + 1 == marks[log]:
                record(
                    out_weights, out_td_mean, out_td_rms, log, i, w, td_sum, td_square_sum, td_count
                )
                td_sum, td_square_sum, td_count, log = 0.0, 0.0, 0, log + 1


def expected_q_learning(problem: LinearProblem, alpha: float) -> ExpectedStep:
    """Semi-gradient Q-value iteration under mu(s) b(a|s), for all seeds at once.

    w <- w + alpha sum_{s,a} mu(s) b(a|s) delta(s, a) x(s, a).
    """
    rows = problem.rows
    weighting = problem.row_weighting

    def step(
        W: FloatArray, W_target: FloatArray, auxiliary: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        td_error = problem.expected_target(W_target @ rows.T, 1) - W @ rows.T
        return W + alpha * (td_error * weighting) @ rows, auxiliary, td_error

    return step
