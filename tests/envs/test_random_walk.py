"""triad/RandomWalk-v0: the random walk of Sutton & Barto (2nd ed.), Example 6.2."""

from __future__ import annotations

import numpy as np
import pytest

from tests.envs import conformance

ENV_ID = "triad/RandomWalk-v0"
SETTINGS = [
    {},
    {"n_states": 19},
    {"n_states": 7, "behaviour_right_probability": 0.7, "features": "one_hot"},
]
LEFT, RIGHT = 0, 1


@pytest.mark.parametrize("kwargs", SETTINGS, ids=conformance.kwargs_id)
@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
def test_conformance(check, kwargs):
    check(ENV_ID, kwargs)


def test_structure_of_the_five_state_walk():
    model = conformance.model_of(ENV_ID, {})
    assert (model.n_states, model.n_actions) == (6, 2)
    assert model.gamma == 1.0
    np.testing.assert_array_equal(model.terminal, [False] * 5 + [True])
    np.testing.assert_array_equal(model.start_distribution, [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(model.target_policy, 0.5)
    np.testing.assert_array_equal(model.behaviour_policy, 0.5)
    # Only leaving on the right pays.
    rewarded = np.argwhere(model.reward != 0.0)
    np.testing.assert_array_equal(rewarded, [[4, RIGHT, 5]])
    assert model.reward[4, RIGHT, 5] == 1.0
    assert model.transition[0, LEFT, 5] == 1.0
    for state in range(1, 5):
        assert model.transition[state, LEFT, state - 1] == 1.0
    for state in range(4):
        assert model.transition[state, RIGHT, state + 1] == 1.0


@pytest.mark.parametrize("n_states", [5, 19])
def test_true_values(n_states):
    model = conformance.model_of(ENV_ID, {"n_states": n_states})
    expected = np.r_[np.arange(1, n_states + 1) / (n_states + 1), 0.0]
    np.testing.assert_allclose(model.target_values, expected, atol=1e-12)


@pytest.mark.parametrize("n_states", [5, 19])
def test_affine_features_represent_the_true_values(n_states):
    model = conformance.model_of(ENV_ID, {"n_states": n_states})
    positions = np.arange(1, n_states + 1) / (n_states + 1)
    np.testing.assert_allclose(
        model.features[:n_states], np.column_stack([np.ones(n_states), positions])
    )
    np.testing.assert_array_equal(model.features[n_states], 0.0)
    values = np.arange(1, n_states + 1) / (n_states + 1)
    weights, *_ = np.linalg.lstsq(model.features, np.r_[values, 0.0], rcond=None)
    residual = model.features @ weights - np.r_[values, 0.0]
    assert np.max(np.abs(residual)) < 1e-12
    np.testing.assert_allclose(weights, [0.0, 1.0], atol=1e-12)


def test_one_hot_features():
    model = conformance.model_of(ENV_ID, {"features": "one_hot"})
    np.testing.assert_array_equal(model.features, np.vstack([np.eye(5), np.zeros((1, 5))]))


@pytest.mark.parametrize("n_states", [5, 19])
def test_expected_episode_length_and_max_return(n_states):
    # Gambler's ruin: the expected exit time from position i is i (n + 1 - i).
    model = conformance.model_of(ENV_ID, {"n_states": n_states})
    positions = np.arange(1, n_states + 1)
    exit_times = positions * (n_states + 1 - positions)
    middle = (n_states + 1) // 2
    p_live = 0.5 * (np.eye(n_states, k=1) + np.eye(n_states, k=-1))
    steps = np.linalg.solve(np.eye(n_states) - p_live, np.ones(n_states))
    np.testing.assert_allclose(steps, exit_times)
    assert exit_times[middle - 1] == middle**2
    assert model.max_return() == pytest.approx(middle**2)
    if n_states == 5:
        assert model.max_return() == pytest.approx(9.0)


def test_sampled_episode_length_from_the_middle():
    env = conformance.unwrapped(ENV_ID, {})
    rng = np.random.default_rng(5)
    lengths = []
    env.reset(seed=5)
    for _ in range(2000):
        env.reset()
        length, terminated = 0, False
        while not terminated:
            _, _, terminated, _, _ = env.step(int(rng.integers(2)))
            length += 1
        lengths.append(length)
    lengths = np.asarray(lengths, dtype=float)
    standard_error = lengths.std(ddof=1) / np.sqrt(len(lengths))
    assert abs(lengths.mean() - 9.0) < 5 * standard_error


@pytest.mark.parametrize("n_states", [4, 6, 1, 0, -1])
def test_invalid_n_states_is_rejected(n_states):
    with pytest.raises(ValueError, match="n_states must be an odd integer >= 3"):
        conformance.make(ENV_ID, {"n_states": n_states})


@pytest.mark.parametrize("probability", [0.0, 1.0, -0.2, 1.3])
def test_invalid_behaviour_probability_is_rejected(probability):
    with pytest.raises(ValueError, match="behaviour_right_probability"):
        conformance.make(ENV_ID, {"behaviour_right_probability": probability})


def test_invalid_features_are_rejected():
    with pytest.raises(ValueError, match="features must be"):
        conformance.make(ENV_ID, {"features": "tile"})


def test_off_policy_behaviour_differs_from_target():
    on_policy = conformance.model_of(ENV_ID, {})
    np.testing.assert_array_equal(on_policy.behaviour_policy, on_policy.target_policy)
    np.testing.assert_allclose(on_policy.behaviour_distribution, on_policy.target_distribution)
    model = conformance.model_of(ENV_ID, {"behaviour_right_probability": 0.7})
    np.testing.assert_allclose(model.behaviour_policy[:5], np.tile([0.3, 0.7], (5, 1)))
    np.testing.assert_array_equal(model.target_policy, 0.5)
    assert not np.allclose(model.behaviour_distribution, model.target_distribution)
    # The target's values are unchanged by the behaviour policy.
    np.testing.assert_allclose(model.target_values[:5], np.arange(1, 6) / 6, atol=1e-12)
    # Drifting right, the behaviour's values exceed the target's in every live state.
    behaviour_values = model.state_values(model.behaviour_policy)
    assert np.all(behaviour_values[:5] > model.target_values[:5])
