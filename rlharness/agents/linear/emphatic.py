"""One-step emphatic TD with interest I = 1 (Sutton & Barto, 2nd ed., section 11.8).

    delta_t = R_{t+1} + gamma x(S_{t+1})^T w - x(S_t)^T w
    M_t     = gamma rho_{t-1} M_{t-1} + I_t                    (eq. 11.25, lambda = 0)
    w      <- w + alpha M_t rho_t delta_t x(S_t)
In expectation (Figure 11.6) the states are drawn from mu and the emphasis starts
at 0. The expected emphasis of state s at sweep k, f_k(s) = E[M_k 1{S_k = s}], then
follows (E_b[rho 1{S' = s} | S = s'] = P_pi(s', s))
    f_k = mu * i + gamma P_pi^T f_{k-1},   f_{-1} = 0     (0 on terminal states)
and, as M_k does not depend on the action taken in S_k, the expected update of sweep k
is w <- w + alpha sum_s f_k(s) E_pi[delta | s] x(s), over all states at once. f_k tends
to the stationary emphasis (I - gamma P_pi^T)^-1 (mu * i) (Sutton, Mahmood & White
2016); on Baird's counterexample the transient on the way makes sqrt(VE) rise first.
"""

from __future__ import annotations

import numba
import numpy as np

from rlharness.agents.linear.expected import ExpectedStep
from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.sampling import (
    NO_TD_ERRORS,
    add_td_error,
    axpy_exploded,
    behave,
    dot,
    draw,
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

INTEREST = 1.0


def sampled_emphatic_td(
    problem: LinearProblem,
    w0: FloatArray,
    seeds: list[int],
    hyperparameters: Hyperparameters,
    marks: IntArray,
    hard_limits: FloatArray,
) -> LearnerTrace:
    """Run sampled one-step emphatic TD for every seed."""
    alpha = hyperparameters.alpha
    return run_sampled(_emphatic_td_kernel, problem, w0, seeds, marks, hard_limits, alpha)


@numba.njit(parallel=True, cache=True, nogil=True)
def _emphatic_td_kernel(
    keys, w0, model, marks, hard_limits, out_weights, out_td_mean, out_td_rms, out_hard_step,
    alpha,
):  # fmt: skip
    X, gamma = model.features, model.gamma
    for i in numba.prange(w0.shape[0]):
        rng = new_stream(keys[i])
        w = w0[i].copy()
        statistics, log = NO_TD_ERRORS, 1
        s = draw(model.start_cum, rng)
        emphasis, previous_rho = 0.0, 0.0
        for t in range(marks[-1]):
            a, s_next = behave(model, s, rng)
            rho = model.importance_ratio[s, a]
            emphasis = gamma * previous_rho * emphasis + INTEREST
            td_error = model.reward[s, a, s_next] + gamma * dot(X[s_next], w) - dot(X[s], w)
            diverged = axpy_exploded(w, alpha * emphasis * rho * td_error, X[s], hard_limits[i])
            statistics = add_td_error(statistics, td_error)
            if model.terminal[s_next]:
                s, previous_rho = draw(model.start_cum, rng), 0.0
            else:
                s, previous_rho = s_next, rho
            if diverged:
                out_hard_step[i] = t + 1
                break
            if t + 1 == marks[log]:
                record(out_weights, out_td_mean, out_td_rms, log, i, w, statistics)
                statistics, log = NO_TD_ERRORS, log + 1


def expected_emphatic_td(problem: LinearProblem, hyperparameters: Hyperparameters) -> ExpectedStep:
    """The expected emphatic TD update, for all seeds at once.

    Its auxiliary state is the expected emphasis f_{k-1}, one row per seed over the
    states (zeros before the first sweep); each sweep steps f first, then w with it.
    """
    alpha = hyperparameters.alpha
    X = problem.state_features
    live = ~problem.model.terminal
    interest = np.where(live, problem.weighting * INTEREST, 0.0)  # mu(s) i(s)
    follow_on = problem.model.gamma * problem.policy_transition * live  # [s, s']: gamma P_pi

    def step(
        W: FloatArray, W_target: FloatArray, emphasis: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        emphasis = interest + per_row(emphasis, follow_on)
        td_error = problem.expected_target(per_row(W_target, X.T), 1) - per_row(W, X.T)
        return W + alpha * per_row(td_error * emphasis, X), emphasis, td_error

    return step
