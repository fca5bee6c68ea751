"""triad/TsitsiklisVanRoy-v0: Example 11.1 of Sutton & Barto (2nd ed.)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.envs import conformance

ENV_ID = "triad/TsitsiklisVanRoy-v0"
SETTINGS = [{}, {"epsilon": 0.5, "gamma": 0.9}, {"epsilon": 1.0, "gamma": 1.0}]
FIRST, SECOND, TERMINAL = 0, 1, 2


@pytest.mark.parametrize("kwargs", SETTINGS, ids=conformance.kwargs_id)
@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
def test_conformance(check, kwargs):
    check(ENV_ID, kwargs)


def test_structure():
    model = conformance.model_of(ENV_ID, {})
    assert model.gamma == 0.99
    np.testing.assert_array_equal(model.features, [[1.0], [2.0], [0.0]])
    np.testing.assert_array_equal(model.terminal, [False, False, True])
    np.testing.assert_array_equal(model.transition[FIRST, 0], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(model.transition[SECOND, 0], [0.0, 0.99, 0.01])
    np.testing.assert_array_equal(model.reward, 0.0)
    np.testing.assert_array_equal(model.start_distribution, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(model.target_values, 0.0)


def test_state_weighting_is_uniform_over_live_states():
    model = conformance.model_of(ENV_ID, {})
    assert model.state_weighting is not None
    np.testing.assert_array_equal(model.state_weighting, [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(model.behaviour_distribution, [0.5, 0.5, 0.0])


@pytest.mark.parametrize("epsilon", [0.01, 0.1, 0.5, 1.0])
def test_target_distribution(epsilon):
    # One visit to the first state, 1/epsilon expected visits to the second.
    model = conformance.model_of(ENV_ID, {"epsilon": epsilon})
    expected = [epsilon / (1 + epsilon), 1 / (1 + epsilon), 0.0]
    np.testing.assert_allclose(model.target_distribution, expected, atol=1e-12)


def _least_squares_dp_factor(model, weighting):
    # w_{k+1} = argmin_w sum_s d(s) (x(s) w - gamma E[x(S')|s] w_k)^2 = factor * w_k.
    live = [FIRST, SECOND]
    x = model.features[live, 0]
    next_x = model.transition[live, 0, :] @ model.features[:, 0]
    d = np.asarray(weighting)[live]
    return model.gamma * float(np.sum(d * x * next_x) / np.sum(d * x * x))


@pytest.mark.parametrize(("epsilon", "gamma"), [(0.01, 0.99), (0.1, 0.9), (0.5, 0.5)])
def test_uniform_least_squares_dp_factor(epsilon, gamma):
    model = conformance.model_of(ENV_ID, {"epsilon": epsilon, "gamma": gamma})
    factor = _least_squares_dp_factor(model, model.state_weighting)
    assert factor == pytest.approx((6 - 4 * epsilon) * gamma / 5)
    assert (factor > 1) == (gamma > 5 / (6 - 4 * epsilon))


def test_default_setting_diverges_uniformly_but_converges_on_policy():
    model = conformance.model_of(ENV_ID, {})
    assert _least_squares_dp_factor(model, model.state_weighting) > 1.0
    on_policy = _least_squares_dp_factor(model, [0.01 / 1.01, 1 / 1.01, 0.0])
    assert on_policy == pytest.approx(0.99 * (4 - 2 * 0.01) / (4 + 0.01))
    assert on_policy < 1.0


def test_expected_episode_length():
    model = conformance.model_of(ENV_ID, {"epsilon": 0.5, "gamma": 1.0})
    # 1 step from the first state plus a geometric 1/epsilon from the second.
    assert model.max_return() == pytest.approx(1 + 1 / 0.5)


@pytest.mark.parametrize("epsilon", [0.0, 1.5, -0.1])
def test_invalid_epsilon_is_rejected(epsilon):
    with pytest.raises(ValueError, match=r"epsilon must be in \(0, 1\]"):
        conformance.make(ENV_ID, {"epsilon": epsilon})


@pytest.mark.parametrize("gamma", [1.5, -0.1])
def test_invalid_gamma_is_rejected(gamma):
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        conformance.make(ENV_ID, {"gamma": gamma})
