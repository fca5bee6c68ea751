"""The expected n-step target T^n v: built by repeated squaring, equal to n applications of T."""

from __future__ import annotations

import numpy as np
import pytest

from rlharness.agents.linear.trial import resolve_linear
from tests.helpers import make_spec

ENVS = [
    ("triad/Baird-v0", {}),
    ("triad/RandomWalk-v0", {"n_states": 19}),
    ("triad/TsitsiklisVanRoy-v0", {"epsilon": 0.1, "gamma": 0.9}),
]


def problem_of(env_id: str, kwargs: dict) -> object:
    spec = make_spec(env_id, {"name": "semi_gradient_dp", "alpha": 0.01}, 1, env_kwargs=kwargs)
    return resolve_linear(spec).problem


@pytest.mark.parametrize(("env_id", "kwargs"), ENVS, ids=[env for env, _ in ENVS])
@pytest.mark.parametrize("n_step", [2, 3, 5, 8, 13, 64])
def test_operator_equals_n_applications_of_the_bellman_operator(env_id, kwargs, n_step):
    problem = problem_of(env_id, kwargs)
    values = np.random.default_rng(n_step).standard_normal((4, problem.model.n_states))
    applied = values
    for _ in range(n_step):
        applied = problem.expected_target(applied, 1)
    np.testing.assert_allclose(problem.expected_target(values, n_step), applied, atol=1e-12)


@pytest.mark.parametrize(("env_id", "kwargs"), ENVS, ids=[env for env, _ in ENVS])
def test_a_billion_steps_reach_the_monte_carlo_target(env_id, kwargs):
    """(gamma P_pi)^n -> 0 on live states (discounting, or absorption), so T^n v -> v_pi.

    Values of terminal states are zero, as x(terminal) = 0 makes them in every run.
    """
    problem = problem_of(env_id, kwargs)
    live = ~problem.model.terminal
    values = np.random.default_rng(0).standard_normal((2, problem.model.n_states)) * live
    _, discount_n = problem.n_step_operator(10**9)
    assert not discount_n[:, live].any(), "the weight on live states underflows to exactly zero"
    target = problem.expected_target(values, 10**9)
    np.testing.assert_allclose(target, problem.expected_target(values, None), atol=1e-12)
