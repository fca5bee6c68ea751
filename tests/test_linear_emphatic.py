"""Expected emphatic TD's emphasis: interest at sweep 0, the stationary emphasis in the limit."""

from __future__ import annotations

import numpy as np
import pytest

from rlharness.agents.linear import build_problem
from rlharness.agents.linear.emphatic import expected_emphatic_td
from rlharness.agents.linear.types import Hyperparameters
from rlharness.environments import instantiate_env
from rlharness.spec import EnvSpec


@pytest.mark.parametrize(
    ("env_id", "kwargs", "off_policy"),
    [
        ("triad/Baird-v0", {}, True),
        ("triad/Baird-v0", {"gamma": 0.9}, False),
        ("triad/RandomWalk-v0", {"behaviour_right_probability": 0.3}, True),
    ],
)
def test_expected_emphasis_starts_at_interest_and_tends_to_the_stationary_emphasis(
    env_id: str, kwargs: dict[str, float], off_policy: bool
) -> None:
    """f_0 = mu * i; f_k -> (I - gamma P_pi^T)^-1 (mu * i) on live states, 0 on terminals."""
    model = instantiate_env(EnvSpec(id=env_id, kwargs=kwargs), "test").unwrapped.model
    problem = build_problem(model, "env", off_policy, control=False)
    step = expected_emphatic_td(problem, Hyperparameters(0.0, 0.0, 1, 1))
    W = np.zeros((2, problem.n_features))
    emphasis = np.zeros((2, model.n_states))
    live = ~model.terminal
    W, emphasis, _ = step(W, W, emphasis)
    np.testing.assert_array_equal(emphasis, np.tile(np.where(live, problem.weighting, 0.0), (2, 1)))
    for _ in range(5000):
        W, emphasis, _ = step(W, W, emphasis)
    p_live = problem.policy_transition[np.ix_(live, live)]
    stationary = np.linalg.solve(
        np.eye(int(live.sum())) - model.gamma * p_live.T, problem.weighting[live]
    )
    np.testing.assert_allclose(emphasis[:, live], np.tile(stationary, (2, 1)), rtol=1e-10)
    np.testing.assert_array_equal(emphasis[:, ~live], 0.0)
