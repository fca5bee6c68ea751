"""Gradient-TD methods: TDC, GTD2 (Sutton & Barto, 2nd ed., section 11.7) and TDRC.

All minimise the projected Bellman error with a second weight vector v that
estimates E[x x^T]^-1 E[rho delta x]:
    v <- v + beta rho (delta - v^T x) x                    (eq. 11.29's v)
    TDC:  w <- w + alpha rho (delta x - gamma x' (x^T v))
    GTD2: w <- w + alpha rho (x - gamma x') (x^T v)
with delta = R + gamma x'^T w - x^T w. TDRC (Ghiassian, Patterson, Garg,
Precup & White, ICML 2020, "Gradient Temporal-Difference Learning with
Regularized Corrections", Algorithm 1 and the authors' code) is TDC whose
secondary weights carry a ridge term kappa (the paper's beta):
    v <- v + beta [(rho delta - v^T x) x - kappa v],
the paper's secondary step beta = eta alpha (eta = 1 by default). The ridge
pulls v towards 0, so TDRC behaves like TD where TD is stable and like TDC
where it is not; its fixed point is still the TD fixed point (v = 0 there).
The paper weights only delta by rho in the v update (as Maei 2011), where the
book's TDC weights (delta - v^T x); the two agree in expectation and on-policy,
so TDRC with kappa = 0 is TDC exactly in both cases. The expected forms replace
each sample by its expectation under the state weighting mu (Figure 11.5, right).
"""

from __future__ import annotations

import numba
import numpy as np

from rlharness.agents.linear.expected import ExpectedStep
from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.sampling import (
    NO_TD_ERRORS,
    add_td_error,
    axpy,
    behave,
    continue_from,
    dot,
    draw,
    exploded,
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

TDC, GTD2, TDRC = 0, 1, 2
"""The sampled kernel's ``form``: which w update, and which v update (TDRC's or the book's)."""


def sampled_tdc(
    problem: LinearProblem,
    w0: FloatArray,
    seeds: list[int],
    hyperparameters: Hyperparameters,
    marks: IntArray,
    hard_limits: FloatArray,
) -> LearnerTrace:
    """Run sampled TDC for every seed, v starting at 0."""
    alpha, beta = hyperparameters.alpha, hyperparameters.beta
    return run_sampled(
        _gradient_td_kernel, problem, w0, seeds, marks, hard_limits, alpha, beta, 0.0, TDC
    )


def sampled_tdrc(
    problem: LinearProblem,
    w0: FloatArray,
    seeds: list[int],
    hyperparameters: Hyperparameters,
    marks: IntArray,
    hard_limits: FloatArray,
) -> LearnerTrace:
    """Run sampled TDRC for every seed, v starting at 0."""
    alpha, beta = hyperparameters.alpha, hyperparameters.beta
    kappa = hyperparameters.correction_regularisation
    return run_sampled(
        _gradient_td_kernel, problem, w0, seeds, marks, hard_limits, alpha, beta, kappa, TDRC
    )


def sampled_gtd2(
    problem: LinearProblem,
    w0: FloatArray,
    seeds: list[int],
    hyperparameters: Hyperparameters,
    marks: IntArray,
    hard_limits: FloatArray,
) -> LearnerTrace:
    """Run sampled GTD2 for every seed, v starting at 0."""
    alpha, beta = hyperparameters.alpha, hyperparameters.beta
    return run_sampled(
        _gradient_td_kernel, problem, w0, seeds, marks, hard_limits, alpha, beta, 0.0, GTD2
    )


@numba.njit(parallel=True, cache=True, nogil=True)
def _gradient_td_kernel(
    keys, w0, model, marks, hard_limits, out_weights, out_td_mean, out_td_rms, out_hard_step,
    alpha, beta, kappa, form,
):  # fmt: skip
    X, gamma = model.features, model.gamma
    n_seeds, n_features = w0.shape
    for i in numba.prange(n_seeds):
        rng = new_stream(keys[i])
        w = w0[i].copy()
        v = np.zeros(n_features)
        statistics, log = NO_TD_ERRORS, 1
        s = draw(model.start_cum, rng)
        for t in range(marks[-1]):
            a, s_next = behave(model, s, rng)
            rho = model.importance_ratio[s, a]
            x, x_next = X[s], X[s_next]
            td_error = model.reward[s, a, s_next] + gamma * dot(x_next, w) - dot(x, w)
            x_v = dot(x, v)
            if form == GTD2:
                axpy(w, alpha * rho * x_v, x)
                axpy(w, -alpha * rho * gamma * x_v, x_next)
            else:
                axpy(w, alpha * rho * td_error, x)
                axpy(w, -alpha * rho * gamma * x_v, x_next)
            if form == TDRC:
                if kappa != 0.0:
                    v *= 1.0 - beta * kappa
                axpy(v, beta * (rho * td_error - x_v), x)
            else:
                axpy(v, beta * rho * (td_error - x_v), x)
            statistics = add_td_error(statistics, td_error)
            s = continue_from(model, s_next, rng)
            if exploded(w, hard_limits[i]) or exploded(v, hard_limits[i]):
                out_hard_step[i] = t + 1
                break
            if t + 1 == marks[log]:
                record(out_weights, out_td_mean, out_td_rms, log, i, w, statistics)
                statistics, log = NO_TD_ERRORS, log + 1


def expected_tdc(problem: LinearProblem, hyperparameters: Hyperparameters) -> ExpectedStep:
    """The expected TDC update under the weighting mu, for all seeds at once."""
    return _expected_gradient_td(problem, hyperparameters.alpha, hyperparameters.beta, gtd2=False)


def expected_tdrc(problem: LinearProblem, hyperparameters: Hyperparameters) -> ExpectedStep:
    """The expected TDRC update under the weighting mu, for all seeds at once."""
    return _expected_gradient_td(
        problem,
        hyperparameters.alpha,
        hyperparameters.beta,
        gtd2=False,
        kappa=hyperparameters.correction_regularisation,
    )


def expected_gtd2(problem: LinearProblem, hyperparameters: Hyperparameters) -> ExpectedStep:
    """The expected GTD2 update under the weighting mu, for all seeds at once."""
    return _expected_gradient_td(problem, hyperparameters.alpha, hyperparameters.beta, gtd2=True)


def _expected_gradient_td(
    problem: LinearProblem, alpha: float, beta: float, gtd2: bool, kappa: float = 0.0
) -> ExpectedStep:
    X = problem.state_features
    next_features = problem.policy_transition @ X  # row s: E_pi[x(S') | S = s]
    mu = problem.weighting

    def step(
        W: FloatArray, W_target: FloatArray, V: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        td_error = problem.expected_target(per_row(W_target, X.T), 1) - per_row(W, X.T)
        x_v = per_row(V, X.T) * mu  # mu(s) x(s)^T v
        expected_rho_delta_x = per_row(td_error * mu, X)
        if gtd2:
            W_next = W + alpha * per_row(x_v, X - problem.model.gamma * next_features)
        else:
            W_next = W + alpha * (
                expected_rho_delta_x - problem.model.gamma * per_row(x_v, next_features)
            )
        V_next = V + beta * (expected_rho_delta_x - per_row(x_v, X))
        if kappa != 0.0:
            V_next = V_next - beta * kappa * V
        return W_next, V_next, td_error

    return step
