"""Semi-gradient Q-learning with linear action values (Sutton & Barto, 2nd ed., eq. 10.1 / 6.8).

    delta = R + gamma max_a' x(S', a')^T w- - x(S, A)^T w
    w    <- w + alpha delta x(S, A) - alpha eta w
with eta the ridge weight of Zhang, Yao & Whiteson (2021)'s Q-learning with a
target network (0: plain Q-learning), whose target moves by `move_target`.
Actions come from the fixed behaviour policy; the target policy is greedy, so
no importance sampling is needed. w- is refreshed every
``target_update_period`` updates, the linear analogue of DQN's target network.
The expected form is semi-gradient Q-value iteration under mu(s) b(a|s).
"""

from __future__ import annotations

import numba

from rlharness.agents.linear.expected import ExpectedStep
from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.sampling import (
    NO_TD_ERRORS,
    add_td_error,
    axpy_exploded,
    behave,
    continue_from,
    dot,
    draw,
    move_target,
    new_stream,
    record,
    run_sampled,
)
from rlharness.agents.linear.types import (
    FloatArray,
    Hyperparameters,
    IntArray,
    LearnerTrace,
    per_row,
)


def sampled_q_learning(
    problem: LinearProblem,
    w0: FloatArray,
    seeds: list[int],
    hyperparameters: Hyperparameters,
    marks: IntArray,
    hard_limits: FloatArray,
) -> LearnerTrace:
    """Run semi-gradient Q-learning for every seed."""
    assert problem.action_features is not None
    h = hyperparameters
    return run_sampled(
        _q_learning_kernel, problem, w0, seeds, marks, hard_limits, h.alpha,
        h.target_update_period, h.target_update_tau, h.ridge, h.projection_radius,
    )  # fmt: skip


@numba.njit(parallel=True, cache=True, nogil=True)
def _q_learning_kernel(
    keys, w0, model, marks, hard_limits, out_weights, out_td_mean, out_td_rms, out_hard_step,
    alpha, target_update_period, tau, ridge, radius,
):  # fmt: skip
    XA, gamma = model.features, model.gamma
    n_actions = XA.shape[1]
    has_target = target_update_period > 1 or tau < 1.0
    for i in numba.prange(w0.shape[0]):
        rng = new_stream(keys[i])
        w = w0[i].copy()
        w_target = w0[i].copy()
        w_bootstrap = w_target if has_target else w
        statistics, log = NO_TD_ERRORS, 1
        s = draw(model.start_cum, rng)
        for t in range(marks[-1]):
            a, s_next = behave(model, s, rng)
            best_next = dot(XA[s_next, 0], w_bootstrap)
            for a_next in range(1, n_actions):
                best_next = max(best_next, dot(XA[s_next, a_next], w_bootstrap))
            td_error = model.reward[s, a, s_next] + gamma * best_next - dot(XA[s, a], w)
            if ridge != 0.0:
                w *= 1.0 - alpha * ridge
            diverged = axpy_exploded(w, alpha * td_error, XA[s, a], hard_limits[i])
            statistics = add_td_error(statistics, td_error)
            if has_target and (t + 1) % target_update_period == 0:
                move_target(w_target, w, tau, radius)
            s = continue_from(model, s_next, rng)
            if diverged:
                out_hard_step[i] = t + 1
                break
            if t + 1 == marks[log]:
                record(out_weights, out_td_mean, out_td_rms, log, i, w, statistics)
                statistics, log = NO_TD_ERRORS, log + 1


def expected_q_learning(problem: LinearProblem, hyperparameters: Hyperparameters) -> ExpectedStep:
    """Semi-gradient Q-value iteration under mu(s) b(a|s), for all seeds at once.

    w <- w + alpha [sum_{s,a} mu(s) b(a|s) delta(s, a) x(s, a) - eta w], eta the ridge weight.
    """
    alpha, ridge = hyperparameters.alpha, hyperparameters.ridge
    rows = problem.rows
    weighting = problem.row_weighting

    def step(
        W: FloatArray, W_target: FloatArray, auxiliary: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        td_error = problem.expected_target(per_row(W_target, rows.T), 1) - per_row(W, rows.T)
        update = per_row(td_error * weighting, rows)
        if ridge != 0.0:
            update = update - ridge * W
        return W + alpha * update, auxiliary, td_error

    return step
