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
    NO_TD_ERRORS,
    add_td_error,
    axpy,
    axpy_exploded,
    behave,
    continue_from,
    dot,
    draw,
    exploded,
    move_target,
    new_stream,
    record,
    run_sampled,
)
from rlharness.agents.linear.types import FloatArray, Hyperparameters, IntArray, LearnerTrace


def semi_gradient_td(
    problem: LinearProblem,
    w0: FloatArray,
    seeds: list[int],
    hyperparameters: Hyperparameters,
    marks: IntArray,
    hard_limits: FloatArray,
) -> LearnerTrace:
    """Run n-step off-policy TD for every seed (rows of ``w0``) for ``marks[-1]`` transitions.

    A Monte Carlo target (``n_step`` None) is an n longer than the run.
    """
    alpha, period = hyperparameters.alpha, hyperparameters.target_update_period
    n = int(marks[-1]) + 1 if hyperparameters.n_step is None else hyperparameters.n_step
    if n == 1:
        h = hyperparameters
        return run_sampled(
            _one_step_td_kernel, problem, w0, seeds, marks, hard_limits, alpha, period,
            h.target_update_tau, h.ridge, h.projection_radius,
        )  # fmt: skip
    h = hyperparameters
    return run_sampled(
        _n_step_td_kernel, problem, w0, seeds, marks, hard_limits, alpha, n, period,
        h.target_update_tau, h.ridge, h.projection_radius,
    )  # fmt: skip


@numba.njit(parallel=True, cache=True, nogil=True)
def _one_step_td_kernel(
    keys, w0, model, marks, hard_limits, out_weights, out_td_mean, out_td_rms, out_hard_step,
    alpha, target_update_period, tau, ridge, radius,
):  # fmt: skip
    """Semi-gradient off-policy TD(0), eq. 11.2: the n = 1 case without the n-step buffers.

    With Zhang, Yao & Whiteson (2021)'s knobs: w <- (1 - alpha eta) w + alpha rho delta x,
    delta bootstrapping from w-, and every ``target_update_period`` steps `move_target`.
    """
    X, gamma = model.features, model.gamma
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
            rho = model.importance_ratio[s, a]
            td_error = (
                model.reward[s, a, s_next] + gamma * dot(X[s_next], w_bootstrap) - dot(X[s], w)
            )
            if ridge != 0.0:
                w *= 1.0 - alpha * ridge
            diverged = axpy_exploded(w, alpha * rho * td_error, X[s], hard_limits[i])
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


@numba.njit(parallel=True, cache=True, nogil=True)
def _n_step_td_kernel(
    keys, w0, model, marks, hard_limits, out_weights, out_td_mean, out_td_rms, out_hard_step,
    alpha, n, target_update_period, polyak_rate, ridge, radius,
):  # fmt: skip
    """Off-policy n-step semi-gradient TD: Sutton & Barto (2nd ed.) eq. 7.9 with linear v-hat.

    Each update is made once its n-step return is known, n transitions late. Per
    seed, block by block:
    - *store*: ring buffers of capacity min(n, steps) keep, for each recent time
      j of the episode (``k`` is the current one), S_j, R_{j+1} and the ratio
      rho_j = pi(A_j|S_j) / b(A_j|S_j) (eq. 7.10's factors).
    - *due*: after transition k the update of tau = k - n + 1 is due, whose
      return bootstraps from S_{tau+n} = S_{k+1}; when S_{k+1} is terminal
      (T = k + 1) every pending tau >= k - n + 1 is due, its return truncated
      at T (G_{tau:tau+n} = G_tau when tau + n >= T, below eq. 7.1).
    - *return*: the loop over j = tau..k sums
      G_{tau:h} = sum_{j=tau}^{h-1} gamma^{j-tau} R_{j+1} [+ gamma^n x(S_{tau+n})^T w-]
      (eq. 7.1 with v-hat = x^T w-) and multiplies rho_{tau:h-1} = prod_j rho_j
      (eq. 7.10, h = min(tau + n, T)).
    - *update*: w <- w + alpha rho_{tau:h-1} [G_{tau:h} - x(S_tau)^T w] x(S_tau),
      eq. 7.9 with the gradient x(S_tau) of linear v-hat (sections 9.4, 11.1),
      less alpha eta w with Zhang, Yao & Whiteson (2021)'s ridge eta; every
      ``target_update_period`` updates w- moves by `move_target`.
    """
    X, gamma = model.features, model.gamma
    capacity = min(n, marks[-1])
    has_target = target_update_period > 1 or polyak_rate < 1.0
    for i in numba.prange(w0.shape[0]):
        rng = new_stream(keys[i])
        w = w0[i].copy()
        w_target = w0[i].copy()
        w_bootstrap = w_target if has_target else w
        states = np.empty(capacity, dtype=np.int64)
        rewards = np.empty(capacity)
        ratios = np.empty(capacity)
        statistics, updates, log = NO_TD_ERRORS, 0, 1
        s = draw(model.start_cum, rng)
        k = 0  # time within the current episode
        previous_slot = 0
        for t in range(marks[-1]):
            a, s_next = behave(model, s, rng)
            # store
            slot = k if k < capacity else _ring_index(previous_slot + 1, capacity, capacity)
            states[slot] = s
            rewards[slot] = model.reward[s, a, s_next]
            ratios[slot] = model.importance_ratio[s, a]
            # due
            if model.terminal[s_next]:
                first, last, bootstrap = max(0, k - n + 1), k, False
            else:
                first, last, bootstrap = max(0, k - n + 1), k - n + 1, True
            for tau in range(first, last + 1):
                # return: G_{tau:h} and rho_{tau:h-1} over the stored transitions tau..k
                target, discount, rho = 0.0, 1.0, 1.0
                for j in range(tau, k + 1):
                    index = _ring_index(slot, k - j, capacity)
                    target += discount * rewards[index]
                    rho *= ratios[index]
                    discount *= gamma
                if bootstrap:
                    target += discount * dot(X[s_next], w_bootstrap)
                # update
                x = X[states[_ring_index(slot, k - tau, capacity)]]
                td_error = target - dot(x, w)
                if ridge != 0.0:
                    w *= 1.0 - alpha * ridge
                axpy(w, alpha * rho * td_error, x)
                statistics = add_td_error(statistics, td_error)
                updates += 1
                if has_target and updates % target_update_period == 0:
                    move_target(w_target, w, polyak_rate, radius)
            if model.terminal[s_next]:
                s, k = draw(model.start_cum, rng), 0
            else:
                s, k = s_next, k + 1
            previous_slot = slot
            if exploded(w, hard_limits[i]):
                out_hard_step[i] = t + 1
                break
            if t + 1 == marks[log]:
                record(out_weights, out_td_mean, out_td_rms, log, i, w, statistics)
                statistics, log = NO_TD_ERRORS, log + 1


@numba.njit(inline="always", cache=True, nogil=True)
def _ring_index(slot: int, age: int, capacity: int) -> int:
    """Where the transition ``age`` steps older than the one in ``slot`` is stored."""
    index = slot - age
    return index + capacity if index < 0 else index
