"""triad/TwoState-v0: the w -> 2w example (Sutton & Barto, 2nd ed., section 11.2)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.envs import conformance

ENV_ID = "triad/TwoState-v0"
SETTINGS = [{}, {"gamma": 0.4}]
FIRST, SECOND = 0, 1
STAY, RESET = 0, 1


@pytest.mark.parametrize("kwargs", SETTINGS, ids=conformance.kwargs_id)
@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
def test_conformance(check, kwargs):
    check(ENV_ID, kwargs)


@pytest.fixture
def model():
    return conformance.model_of(ENV_ID, {})


def test_features_are_one_and_two(model):
    np.testing.assert_array_equal(model.features, [[1.0], [2.0]])
    assert model.gamma == 0.9


def test_dynamics(model):
    np.testing.assert_array_equal(model.transition[FIRST, :, SECOND], 1.0)
    np.testing.assert_array_equal(model.transition[SECOND, STAY], [0.0, 1.0])
    np.testing.assert_array_equal(model.transition[SECOND, RESET], [1.0, 0.0])
    np.testing.assert_array_equal(model.reward, 0.0)
    np.testing.assert_array_equal(model.start_distribution, [1.0, 0.0])


def test_importance_ratio_is_one_then_zero(model):
    # rho = pi(A|s) / b(A|s) for the actions the behaviour policy actually takes.
    expected = {FIRST: 1.0, SECOND: 0.0}
    for state, ratio in expected.items():
        for action in np.flatnonzero(model.behaviour_policy[state] > 0):
            rho = model.target_policy[state, action] / model.behaviour_policy[state, action]
            assert rho == ratio


def test_state_distributions(model):
    np.testing.assert_allclose(model.behaviour_distribution, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(model.target_distribution, [0.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(model.target_values, 0.0)


@pytest.mark.parametrize("gamma", [0.9, 0.6, 0.5, 0.4])
def test_expected_off_policy_td_grows_iff_gamma_above_half(gamma):
    # Expected off-policy TD(0) update per unit w: sum_s mu(s) sum_a b rho sum_s' P x(s)
    # (gamma x(s') - x(s)) = 0.5 (2 gamma - 1), i.e. only the w -> 2w transition counts.
    model = conformance.model_of(ENV_ID, {"gamma": gamma})
    x = model.features[:, 0]
    mu = np.array([0.5, 0.5])
    slope = 0.0
    for s in range(2):
        for a in range(2):
            b = model.behaviour_policy[s, a]
            if b == 0.0:
                continue
            rho = model.target_policy[s, a] / b
            for s_next in range(2):
                td = gamma * x[s_next] - x[s]
                slope += mu[s] * b * rho * model.transition[s, a, s_next] * td * x[s]
    assert slope == pytest.approx(0.5 * (2 * gamma - 1))
    assert (slope > 0) == (gamma > 0.5)


@pytest.mark.parametrize("gamma", [1.0, 1.01, -0.1])
def test_invalid_gamma_is_rejected_with_a_clear_message(gamma):
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\) for this continuing task"):
        conformance.make(ENV_ID, {"gamma": gamma})
