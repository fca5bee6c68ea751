"""triad/BairdControl-v0: Baird's counterexample with action-value features."""

from __future__ import annotations

import numpy as np
import pytest

from tests.envs import conformance

ENV_ID = "triad/BairdControl-v0"
SETTINGS = [{}, {"gamma": 0.5}]
DASHED, SOLID = 0, 1
LOWER = 6

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


def test_action_features_have_block_structure(model):
    assert model.action_features is not None
    assert model.action_features.shape == (7, 2, 16)
    zeros = np.zeros(8)
    for state in range(7):
        x = BAIRD_FEATURES[state]
        np.testing.assert_array_equal(model.action_features[state, DASHED], np.r_[x, zeros])
        np.testing.assert_array_equal(model.action_features[state, SOLID], np.r_[zeros, x])
        for action in (DASHED, SOLID):
            expected = np.kron(np.eye(2)[action], x)
            np.testing.assert_array_equal(model.action_features[state, action], expected)


def test_state_action_features_have_full_row_rank(model):
    assert model.action_features is not None
    assert np.linalg.matrix_rank(model.action_features.reshape(14, 16)) == 14


def test_same_dynamics_as_the_prediction_form(model):
    np.testing.assert_array_equal(model.features, BAIRD_FEATURES)
    assert model.gamma == 0.99
    for state in range(7):
        np.testing.assert_allclose(model.transition[state, DASHED], [1 / 6] * 6 + [0.0])
        np.testing.assert_array_equal(model.transition[state, SOLID], np.eye(7)[LOWER])
    np.testing.assert_array_equal(model.reward, 0.0)
    np.testing.assert_allclose(model.behaviour_policy, np.tile([6 / 7, 1 / 7], (7, 1)))
    np.testing.assert_array_equal(model.target_policy, np.tile([0.0, 1.0], (7, 1)))


def test_optimal_action_values_are_zero(model):
    np.testing.assert_array_equal(model.optimal_action_values, 0.0)
    assert model.max_return() == pytest.approx(100.0)


@pytest.mark.parametrize("gamma", [1.0, -0.5])
def test_invalid_gamma_is_rejected(gamma):
    with pytest.raises(ValueError, match="gamma must be in"):
        conformance.make(ENV_ID, {"gamma": gamma})
