"""triad/Kolter-v0: Kolter's counterexample (Kolter, NeurIPS 2011, section 3)."""

from __future__ import annotations

import numpy as np
import pytest

from rlharness_envs import EnvArgumentError
from tests.envs import conformance

ENV_ID = "triad/Kolter-v0"
SETTINGS = [{}, {"p": 0.9}, {"p": 0.2, "epsilon": 0.0}]


@pytest.mark.parametrize("kwargs", SETTINGS, ids=conformance.kwargs_id)
@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
def test_conformance(check, kwargs):
    check(ENV_ID, kwargs)


@pytest.mark.parametrize("epsilon", [0.01, 0.0, 0.3])
def test_the_chain_true_values_features_and_discount(epsilon):
    model = conformance.model_of(ENV_ID, {"epsilon": epsilon})
    np.testing.assert_array_equal(model.policy_transition(model.target_policy), 0.5)
    np.testing.assert_array_equal(model.features, [[1.0], [1.05 + epsilon]])
    assert model.gamma == 0.99
    np.testing.assert_allclose(model.target_values, [1.0, 1.05], rtol=1e-13)
    # r = (I - gamma P) v_pi = v_pi - 0.99 * 1.025.
    np.testing.assert_allclose(
        model.policy_reward(model.target_policy), [-0.01475, 0.03525], rtol=1e-12
    )


@pytest.mark.parametrize("p", [0.5, 0.1, 0.6844, 0.95])
def test_the_weighting_is_p_and_the_behaviour_visits_states_in_that_proportion(p):
    model = conformance.model_of(ENV_ID, {"p": p})
    np.testing.assert_array_equal(model.behaviour_distribution, [p, 1.0 - p])
    behaviour_stationary = model.on_policy_distribution(model.behaviour_policy)
    np.testing.assert_allclose(behaviour_stationary, [p, 1.0 - p], atol=1e-12)
    np.testing.assert_allclose(model.target_distribution, [0.5, 0.5], atol=1e-12)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5, "half"])
def test_a_weighting_outside_the_open_unit_interval_is_refused_by_name(p):
    with pytest.raises(EnvArgumentError, match=r"^p must be") as raised:
        conformance.make(ENV_ID, {"p": p})
    assert raised.value.argument == "p"


@pytest.mark.parametrize("epsilon", [-0.01, float("nan"), None])
def test_a_negative_or_non_numeric_epsilon_is_refused_by_name(epsilon):
    with pytest.raises(EnvArgumentError, match=r"^epsilon must be") as raised:
        conformance.make(ENV_ID, {"epsilon": epsilon})
    assert raised.value.argument == "epsilon"
