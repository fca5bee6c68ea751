"""triad/Baird-v0: Baird's counterexample (Sutton & Barto, 2nd ed., section 11.2)."""

from __future__ import annotations

import numpy as np
import pytest

from rlharness_envs.baird import INITIAL_WEIGHTS
from tests.envs import conformance

ENV_ID = "triad/Baird-v0"
SETTINGS = [{}, {"gamma": 0.9}]
DASHED, SOLID = 0, 1
LOWER = 6

# Figure 11.1: x(i) = 2 e_i + e_8 for the upper states, x(7) = e_7 + 2 e_8.
BAIRD_FEATURES = np.array(
    [
        [2, 0, 0, 0, 0, 0, 0, 1],
        [0, 2, 0, 0, 0, 0, 0, 1],
        [0, 0, 2, 0, 0, 0, 0, 1],
        [0, 0, 0, 2, 0, 0, 0, 1],
        [0, 0, 0, 0, 2, 0, 0, 1],
        [0, 0, 0, 0, 0, 2, 0, 1],
        [0, 0, 0, 0, 0, 0, 1, 2],
    ],
    dtype=float,
)


@pytest.mark.parametrize("kwargs", SETTINGS, ids=conformance.kwargs_id)
@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
def test_conformance(check, kwargs):
    check(ENV_ID, kwargs)


@pytest.fixture
def model():
    return conformance.model_of(ENV_ID, {})


def test_features_are_figure_11_1(model):
    np.testing.assert_array_equal(model.features, BAIRD_FEATURES)
    for upper in range(6):
        expected = 2.0 * np.eye(8)[upper] + np.eye(8)[7]
        np.testing.assert_array_equal(model.features[upper], expected)
    np.testing.assert_array_equal(model.features[LOWER], np.eye(8)[6] + 2.0 * np.eye(8)[7])


def test_dynamics_policies_rewards_and_discount(model):
    assert (model.n_states, model.n_actions) == (7, 2)
    assert model.gamma == 0.99
    for state in range(7):
        np.testing.assert_allclose(model.transition[state, DASHED], [1 / 6] * 6 + [0.0])
        np.testing.assert_array_equal(model.transition[state, SOLID], [0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(model.behaviour_policy[:, SOLID], 1 / 7)
    np.testing.assert_allclose(model.behaviour_policy[:, DASHED], 6 / 7)
    np.testing.assert_array_equal(model.target_policy[:, SOLID], 1.0)
    np.testing.assert_array_equal(model.reward, 0.0)
    assert not model.terminal.any()
    assert model.action_features is None
    assert model.state_weighting is None


def test_behaviour_stationary_distribution_is_uniform(model):
    # Whatever the state, the next state is upper-uniform w.p. 6/7 and lower w.p. 1/7,
    # i.e. uniform over all seven states; so the stationary distribution is uniform.
    np.testing.assert_allclose(model.behaviour_distribution, np.full(7, 1 / 7), atol=1e-12)


def test_target_distribution_is_the_lower_state(model):
    np.testing.assert_allclose(model.target_distribution, np.eye(7)[LOWER], atol=1e-12)


def test_true_values_are_zero(model):
    np.testing.assert_array_equal(model.target_values, 0.0)
    np.testing.assert_array_equal(model.optimal_action_values, 0.0)


def test_max_return_uses_the_unit_reward_floor(model):
    assert model.max_return() == pytest.approx(100.0)
    assert model.max_return(reward_floor=2.0) == pytest.approx(200.0)


def test_zero_is_representable_with_nonzero_weights(model):
    features = model.features
    assert np.linalg.matrix_rank(features) == 7
    null_vector = np.array([1, 1, 1, 1, 1, 1, 4, -2], dtype=float)
    np.testing.assert_array_equal(features @ null_vector, 0.0)
    # The null space is one-dimensional and spanned by exactly that vector.
    _, singular_values, vt = np.linalg.svd(features)
    assert singular_values.min() > 1e-6
    basis = vt[-1]
    cosine = abs(basis @ null_vector) / np.linalg.norm(null_vector)
    assert cosine == pytest.approx(1.0)


def test_expected_semi_gradient_dp_diverges(model):
    # Expected off-policy semi-gradient TD(0)/DP under the uniform behaviour weighting:
    # w <- w + alpha X^T D (gamma P_pi X - X) w, with P_pi sending every state to LOWER.
    features = BAIRD_FEATURES
    p_pi = np.zeros((7, 7))
    p_pi[:, LOWER] = 1.0
    update = features.T @ np.diag(np.full(7, 1 / 7)) @ (0.99 * p_pi @ features - features)
    assert np.max(np.linalg.eigvals(update).real) > 0.0
    weights = np.array(INITIAL_WEIGHTS)
    for _ in range(1000):
        weights = weights + 0.01 * update @ weights
    assert np.linalg.norm(weights) > 10 * np.linalg.norm(INITIAL_WEIGHTS)


@pytest.mark.parametrize("gamma", [1.0, 1.5, -0.1])
def test_invalid_gamma_is_rejected(gamma):
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\)"):
        conformance.make(ENV_ID, {"gamma": gamma})


def test_gamma_kwarg_is_used():
    assert conformance.model_of(ENV_ID, {"gamma": 0.9}).gamma == 0.9
    assert conformance.model_of(ENV_ID, {"gamma": 0.9}).max_return() == pytest.approx(10.0)
