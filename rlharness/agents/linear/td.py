"""Semi-gradient off-policy n-step TD with importance sampling, batched over seeds.

Sutton & Barto (2nd ed.), eq. 7.9 with linear function approximation
(section 11.1): for the n-step return
    G_{t:t+n} = R_{t+1} + gamma R_{t+2} + ... + gamma^{n-1} R_{t+n} + gamma^n x(S_{t+n})^T w-,
    w <- w + alpha rho_{t:t+n-1} [G_{t:t+n} - x(S_t)^T w] x(S_t),
with rho_{t:h} = prod_k pi(A_k|S_k) / b(A_k|S_k). n = 1 is semi-gradient
off-policy TD(0) (eq. 11.2); n beyond the episode is a Monte Carlo target.
The bootstrap uses w-, a copy of w refreshed every ``target_update_period``
updates (w- = w when the period is 1).
"""

from __future__ import annotations

import numba
import numpy as np

from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.sampling import (
    allocate_trace,
    axpy,
    axpy_exploded,
    cumulative,
    dot,
    draw,
    exploded,
    new_stream,
    record,
    seed_keys,
)
from rlharness.agents.linear.types import FloatArray, IntArray, LearnerTrace


def semi_gradient_td(
    problem: LinearProblem,
    w0: FloatArray,
    seeds: list[int],
    alpha: float,
    n_step: int,
    target_update_period: int,
    marks: IntArray,
    hard_limit: float,
) -> LearnerTrace:
    """Run n-step off-policy TD for every seed (rows of ``w0``) for ``marks[-1]`` transitions."""
    model = problem.model
    weights, td_mean, td_rms, hard_step = allocate_trace(marks, len(seeds), w0)
    kernel = _one_step_td_kernel if n_step == 1 else _n_step_td_kernel
    kernel(
        seed_keys(seeds),
        np.ascontiguousarray(w0),
        np.ascontiguousarray(problem.state_features),
        cumulative(problem.behaviour_policy),
        cumulative(model.transition),
        np.ascontiguousarray(model.reward),
        problem.importance_ratio,
        cumulative(model.start_distribution),
        model.terminal,
        model.gamma,
        alpha,
        n_step,
        target_update_period,
        marks,
        hard_limit,
        weights,
        td_mean,
        td_rms,
        hard_step,
    )
    return LearnerTrace(marks, weights, td_mean, td_rms, hard_step)


@numba.njit(parallel=True, cache=True, nogil=True)
def _one_step_td_kernel(
    keys, w0, X, behaviour_cum, transition_cum, reward, importance_ratio, start_cum, terminal,
    gamma, alpha, n, target_update_period, marks, hard_limit,
    out_weights, out_td_mean, out_td_rms, out_hard_step,
):  # fmt: skip
    """Semi-gradient off-policy TD(0), eq. 11.2: the n = 1 case without the n-step buffers."""
    n_seeds = w0.shape[0]
    steps = marks[-1]
    for i in numba.prange(n_seeds):
        rng = new_stream(keys[i])
        w = w0[i].copy()
        w_target = w0[i].copy()
        w_bootstrap = w if target_update_period == 1 else w_target
        td_sum, td_square_sum, td_count, log = 0.0, 0.0, 0, 1
        s = draw(start_cum, rng)
        for t in range(steps):
            a = draw(behaviour_cum[s], rng)
            s_next = draw(transition_cum[s, a], rng)
            rho = importance_ratio[s, a]
            td_error = reward[s, a, s_next] + gamma * dot(X[s_next], w_bootstrap) - dot(X[s], w)
            diverged = axpy_exploded(w, alpha * rho * td_error, X[s], hard_limit)
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


@numba.njit(parallel=True, cache=True, nogil=True)
def _n_step_td_kernel(
    keys, w0, X, behaviour_cum, transition_cum, reward, importance_ratio, start_cum, terminal,
    gamma, alpha, n, target_update_period, marks, hard_limit,
    out_weights, out_td_mean, out_td_rms, out_hard_step,
):  # fmt: skip
    n_seeds = w0.shape[0]
    steps = marks[-1]
    capacity = min(n, steps)
    for i in numba.prange(n_seeds):
        rng = new_stream(keys[i])
        w = w0[i].copy()
        w_target = w0[i].copy()
        w_bootstrap = w if target_update_period == 1 else w_target
        states = np.empty(capacity, dtype=np.int64)
        rewards = np.empty(capacity)
        ratios = np.empty(capacity)
        td_sum, td_square_sum, td_count, updates, log = 0.0, 0.0, 0, 0, 1
        s = draw(start_cum, rng)
        k = 0  # time within the current episode
        previous_slot = 0
        for t in range(steps):
            a = draw(behaviour_cum[s], rng)
            s_next = draw(transition_cum[s, a], rng)
            slot = k if k < capacity else _ring_index(previous_slot + 1, capacity, capacity)
            states[slot] = s
            rewards[slot] = reward[s, a, s_next]
            ratios[slot] = importance_ratio[s, a]
            if terminal[s_next]:
                first, last, bootstrap = max(0, k - n + 1), k, False
            else:
                first, last, bootstrap = max(0, k - n + 1), k - n + 1, True
            for tau in range(first, last + 1):
                # G_{tau:h} and rho_{tau:h-1} over the stored transitions tau..k
                target, discount, rho = 0.0, 1.0, 1.0
                for j in range(tau, k + 1):
                    index = _ring_index(slot, k - j, capacity)
                    target += discount * rewards[index]
                    rho *= ratios[index]
                    discount *= gamma
                if bootstrap:
                    target += discount * dot(X[s_next], w_bootstrap)
                x = X[states[_ring_index(slot, k - tau, capacity)]]
                td_error = target - dot(x, w)
                axpy(w, alpha * rho * td_error, x)
                td_sum += td_error
                td_square_sum += td_error * td_error
                td_count += 1
                updates += 1
                if target_update_period > 1 and updates % target_update_period == 0:
                    w_target[:] = w
            if terminal[s_next]:
                s, k = draw(start_cum, rng), 0
            else:
                s, k = s_next, k + 1
            previous_slot = slot
            if exploded(w, hard_limit):
                out_hard_step[i] = t + 1
                break
            if t + 1 == marks[log]:
                record(
                    out_weights, out_td_mean, out_td_rms, log, i, w, td_sum, td_square_sum, td_count
                )
                td_sum, td_square_sum, td_count, log = 0.0, 0.0, 0, log + 1


@numba.njit(inline="always", cache=True, nogil=True)
def _ring_index(slot: int, age: int, capacity: int) -> int:
    """Where the transition ``age`` steps older than the one in ``slot`` is stored."""
    index = slot - age
    return index + capacity if index < 0 else index
