"""Conformance checks that every ``triad/*`` environment must pass (bsuite style).

Each ``check_*`` function takes a registered env id and the keyword arguments to
pass to ``gymnasium.make``; the per-environment test files parametrise over
`CHECKS` and a few kwargs settings. Expected quantities are recomputed here with
plain numpy loops, independently of the `ExactModel` helpers they validate.
Every random draw is seeded, so the statistical checks are deterministic.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import rlharness_envs
from rlharness_envs import TRIAD_ENVS, ExactModel, FiniteMDPEnv

Kwargs = dict[str, Any]

ATOL = 1e-9
SIGMAS = 5.0
STOCHASTIC_SAMPLES = 2_000
DETERMINISTIC_SAMPLES = 100
MAX_EPISODE_STEPS = 100_000


def make(env_id: str, kwargs: Kwargs) -> gym.Env:
    """``gymnasium.make`` with the registered wrappers (TimeLimit for continuing envs)."""
    assert env_id in rlharness_envs.TRIAD_ENVS, f"{env_id} is not a registered triad env"
    return gym.make(env_id, **kwargs)


def unwrapped(env_id: str, kwargs: Kwargs) -> FiniteMDPEnv:
    """The raw `FiniteMDPEnv` behind ``gymnasium.make`` (no TimeLimit, no order checks)."""
    env = make(env_id, kwargs).unwrapped
    assert isinstance(env, FiniteMDPEnv)
    return env


def model_of(env_id: str, kwargs: Kwargs) -> ExactModel:
    """The exact model of a freshly made environment."""
    return unwrapped(env_id, kwargs).model


@contextmanager
def warnings_as_errors() -> Iterator[None]:
    """Escalate every warning: the triad envs are expected to pass the checkers silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# Independent numpy versions of the model's derived quantities.


def policy_transition(model: ExactModel, policy: np.ndarray) -> np.ndarray:
    """``P_pi[s, s'] = sum_a pi(a|s) P(s'|s, a)`` by explicit summation."""
    p_pi = np.zeros((model.n_states, model.n_states))
    for action in range(model.n_actions):
        p_pi += policy[:, action, None] * model.transition[:, action, :]
    return p_pi


def policy_reward(model: ExactModel, policy: np.ndarray) -> np.ndarray:
    """``r_pi[s] = sum_a pi(a|s) sum_s' P(s'|s, a) R(s, a, s')`` by explicit summation."""
    r_pi = np.zeros(model.n_states)
    for action in range(model.n_actions):
        expected = (model.transition[:, action, :] * model.reward[:, action, :]).sum(axis=1)
        r_pi += policy[:, action] * expected
    return r_pi


def live_states(model: ExactModel) -> np.ndarray:
    """Indices of the non-terminal states."""
    return np.flatnonzero(~model.terminal)


def is_continuing(env_id: str) -> bool:
    """Continuing envs are registered with a TimeLimit; episodic ones without."""
    return TRIAD_ENVS[env_id][1] is not None


# The checks.


def check_gymnasium_env_checker(env_id: str, kwargs: Kwargs) -> None:
    """Gymnasium's own checker passes on the raw env without a single warning."""
    env = unwrapped(env_id, kwargs)
    with warnings_as_errors():
        gymnasium_check_env(env)


def check_sb3_env_checker(env_id: str, kwargs: Kwargs) -> None:
    """Stable-Baselines3's checker passes on the made (wrapped) env without warnings."""
    env = make(env_id, kwargs)
    with warnings_as_errors():
        sb3_check_env(env, warn=True)


def check_registration(env_id: str, kwargs: Kwargs) -> None:
    """The id makes the registered class; continuing envs (and only they) get a TimeLimit."""
    env = make(env_id, kwargs)
    entry_point, max_steps = TRIAD_ENVS[env_id]
    assert env.spec is not None
    assert env.spec.max_episode_steps == max_steps
    assert type(env.unwrapped).__name__ == entry_point.split(":")[1]
    assert isinstance(env.unwrapped, FiniteMDPEnv)
    model = model_of(env_id, kwargs)
    assert model.episodic == (not is_continuing(env_id))


def check_spaces(env_id: str, kwargs: Kwargs) -> None:
    """Discrete actions match the model; the Box contains every feature row as float32."""
    env = unwrapped(env_id, kwargs)
    model = env.model
    assert isinstance(env.action_space, spaces.Discrete)
    assert env.action_space.n == model.n_actions
    assert int(env.action_space.start) == 0
    assert isinstance(env.observation_space, spaces.Box)
    assert env.observation_space.dtype == np.float32
    assert env.observation_space.shape == (model.features.shape[1],)
    for state in range(model.n_states):
        row = model.features[state].astype(np.float32)
        assert env.observation_space.contains(row), f"feature row {state} outside the Box"
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs, model.features[info["state"]].astype(np.float32))


def check_model_valid(env_id: str, kwargs: Kwargs) -> None:
    """The model re-validates on construction and satisfies the ExactModel contract."""
    model = model_of(env_id, kwargs)
    assert isinstance(model, ExactModel)
    dataclasses.replace(model)  # re-runs __post_init__ validation
    n_states, n_actions = model.n_states, model.n_actions
    assert model.transition.shape == (n_states, n_actions, n_states)
    assert model.reward.shape == model.transition.shape
    assert np.all(model.transition >= 0.0)
    np.testing.assert_allclose(model.transition.sum(axis=2), 1.0, atol=ATOL)
    for policy in (model.behaviour_policy, model.target_policy):
        assert policy.shape == (n_states, n_actions)
        assert np.all(policy >= 0.0)
        np.testing.assert_allclose(policy.sum(axis=1), 1.0, atol=ATOL)
    assert np.all(model.start_distribution >= 0.0)
    np.testing.assert_allclose(model.start_distribution.sum(), 1.0, atol=ATOL)
    assert np.all(model.start_distribution[model.terminal] == 0.0), "episodes start live"
    assert 0.0 <= model.gamma <= 1.0
    for terminal in np.flatnonzero(model.terminal):
        assert np.all(model.transition[terminal, :, terminal] == 1.0), "terminals absorb"
        assert np.all(model.reward[terminal] == 0.0), "terminals are reward-free"
        assert np.all(model.features[terminal] == 0.0), "terminal features are zero"
    if model.episodic:
        # Episodes end with probability 1 under both policies: P_live is transient.
        live = live_states(model)
        for policy in (model.behaviour_policy, model.target_policy):
            p_live = policy_transition(model, policy)[np.ix_(live, live)]
            assert np.max(np.abs(np.linalg.eigvals(p_live))) < 1.0
    else:
        assert model.gamma < 1.0, "continuing tasks need discounting"
    if model.action_features is not None:
        assert model.action_features.ndim == 3
        assert model.action_features.shape[:2] == (n_states, n_actions)
        assert np.all(model.action_features[model.terminal] == 0.0)
    if model.state_weighting is not None:
        assert model.state_weighting.shape == (n_states,)
        assert np.all(model.state_weighting >= 0.0)
        np.testing.assert_allclose(model.state_weighting.sum(), 1.0, atol=ATOL)
        assert np.all(model.state_weighting[model.terminal] == 0.0)


def check_sampling_matches_model(env_id: str, kwargs: Kwargs) -> None:
    """Empirical next-state frequencies match ``P[s, a, :]``; rewards equal ``R[s, a, s']``."""
    env = unwrapped(env_id, kwargs)
    model = env.model
    env.reset(seed=12345)
    for state in live_states(model):
        for action in range(model.n_actions):
            probabilities = model.transition[state, action]
            deterministic = bool(np.isclose(probabilities.max(), 1.0))
            n = DETERMINISTIC_SAMPLES if deterministic else STOCHASTIC_SAMPLES
            counts = np.zeros(model.n_states)
            for _ in range(n):
                env._state = int(state)
                obs, reward, terminated, truncated, info = env.step(action)
                next_state = info["state"]
                counts[next_state] += 1
                assert reward == model.reward[state, action, next_state]
                assert terminated == bool(model.terminal[next_state])
                assert truncated is False
                np.testing.assert_array_equal(obs, model.features[next_state].astype(np.float32))
            frequencies = counts / n
            standard_error = np.sqrt(probabilities * (1.0 - probabilities) / n)
            deviation = np.abs(frequencies - probabilities)
            assert np.all(deviation <= SIGMAS * standard_error + 1e-12), (
                f"state {state}, action {action}: frequencies {frequencies} "
                f"vs P {probabilities} (tolerance {SIGMAS * standard_error})"
            )


def check_start_distribution(env_id: str, kwargs: Kwargs) -> None:
    """Reset states follow the start distribution (within 5 binomial standard errors)."""
    env = unwrapped(env_id, kwargs)
    model = env.model
    n = STOCHASTIC_SAMPLES
    counts = np.zeros(model.n_states)
    env.reset(seed=2024)
    for _ in range(n):
        _, info = env.reset()
        counts[info["state"]] += 1
    p = model.start_distribution
    tolerance = SIGMAS * np.sqrt(p * (1.0 - p) / n) + 1e-12
    assert np.all(np.abs(counts / n - p) <= tolerance), f"{counts / n} vs {p}"


def _trajectory(env: gym.Env, seed: int, actions: np.ndarray) -> list[tuple[Any, ...]]:
    obs, info = env.reset(seed=seed)
    steps: list[tuple[Any, ...]] = [(obs.tobytes(), info["state"])]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(int(action))
        steps.append((obs.tobytes(), reward, terminated, truncated, info["state"]))
        if terminated or truncated:
            obs, info = env.reset()
            steps.append((obs.tobytes(), info["state"]))
    return steps


def check_seeding(env_id: str, kwargs: Kwargs) -> None:
    """``reset(seed=k)`` twice gives identical trajectories under a fixed action sequence."""
    model = model_of(env_id, kwargs)
    actions = np.random.default_rng(99).integers(model.n_actions, size=300)
    for seed in (0, 1, 123):
        env = make(env_id, kwargs)
        first = _trajectory(env, seed, actions)
        again = _trajectory(env, seed, actions)
        fresh = _trajectory(make(env_id, kwargs), seed, actions)
        assert first == again
        assert first == fresh


def _policy_action(rng: np.random.Generator, policy: np.ndarray, state: int) -> int:
    return int(rng.choice(policy.shape[1], p=policy[state]))


def check_termination(env_id: str, kwargs: Kwargs) -> None:
    """Terminal states terminate episodes; continuing envs only truncate at the time limit."""
    model = model_of(env_id, kwargs)
    rng = np.random.default_rng(7)
    if model.episodic:
        env = unwrapped(env_id, kwargs)
        for policy in (model.behaviour_policy, model.target_policy):
            for episode in range(20):
                _, info = env.reset(seed=episode)
                state = info["state"]
                for _ in range(MAX_EPISODE_STEPS):
                    _, _, terminated, truncated, info = env.step(_policy_action(rng, policy, state))
                    state = info["state"]
                    assert truncated is False
                    assert terminated == bool(model.terminal[state])
                    if terminated:
                        break
                else:
                    raise AssertionError("episode did not terminate")
    else:
        env = make(env_id, kwargs)
        assert env.spec is not None
        limit = env.spec.max_episode_steps
        assert limit is not None
        for policy in (model.behaviour_policy, model.target_policy):
            _, info = env.reset(seed=3)
            state = info["state"]
            for step in range(1, limit + 1):
                _, _, terminated, truncated, info = env.step(_policy_action(rng, policy, state))
                state = info["state"]
                assert terminated is False
                assert truncated == (step == limit)


def check_on_policy_distribution(env_id: str, kwargs: Kwargs) -> None:
    """The on-policy distribution is a fixed point (continuing) or solves the visits equation."""
    model = model_of(env_id, kwargs)
    live = live_states(model)
    for policy in (model.behaviour_policy, model.target_policy):
        mu = model.on_policy_distribution(policy)
        assert mu.shape == (model.n_states,)
        assert np.all(mu >= 0.0)
        np.testing.assert_allclose(mu.sum(), 1.0, atol=ATOL)
        assert np.all(mu[model.terminal] == 0.0)
        p_pi = policy_transition(model, policy)
        if model.episodic:
            # eta = start + eta P_live with eta = mu * (expected episode length L).
            p_live = p_pi[np.ix_(live, live)]
            residual = mu[live] - mu[live] @ p_live
            inverse_length = residual.sum()
            assert inverse_length > 0.0
            np.testing.assert_allclose(
                residual / inverse_length, model.start_distribution[live], atol=1e-9
            )
            # L is the expected number of live steps from the start, summed independently.
            steps = np.zeros(len(live))
            for _ in range(200_000):
                updated = 1.0 + p_live @ steps
                if np.max(np.abs(updated - steps)) < 1e-12:
                    break
                steps = updated
            expected_length = float(model.start_distribution[live] @ steps)
            np.testing.assert_allclose(1.0 / inverse_length, expected_length, rtol=1e-6)
        else:
            np.testing.assert_allclose(mu @ p_pi, mu, atol=1e-9)
    np.testing.assert_allclose(
        model.target_distribution, model.on_policy_distribution(model.target_policy)
    )
    expected_weighting = (
        model.state_weighting
        if model.state_weighting is not None
        else model.on_policy_distribution(model.behaviour_policy)
    )
    np.testing.assert_allclose(model.behaviour_distribution, expected_weighting)


def check_bellman(env_id: str, kwargs: Kwargs) -> None:
    """``v = r_pi + gamma P_pi v`` on live states, ``q*`` is Bellman-optimal, both bounded."""
    model = model_of(env_id, kwargs)
    live = live_states(model)
    for policy, values in (
        (model.target_policy, model.target_values),
        (model.behaviour_policy, model.state_values(model.behaviour_policy)),
    ):
        p_pi = policy_transition(model, policy)
        r_pi = policy_reward(model, policy)
        backup = r_pi + model.gamma * p_pi @ values
        np.testing.assert_allclose(values[live], backup[live], atol=1e-9)
        assert np.all(values[model.terminal] == 0.0)
        assert np.max(np.abs(values)) <= model.max_return() + 1e-9
    q_star = model.optimal_action_values
    expected_reward = (model.transition * model.reward).sum(axis=2)
    optimal_backup = expected_reward + model.gamma * model.transition @ q_star.max(axis=1)
    np.testing.assert_allclose(q_star, optimal_backup, atol=1e-9)
    np.testing.assert_allclose(q_star[model.terminal], 0.0, atol=1e-12)
    assert np.max(np.abs(q_star)) <= model.max_return() + 1e-9


CHECKS: tuple[Callable[[str, Kwargs], None], ...] = (
    check_gymnasium_env_checker,
    check_sb3_env_checker,
    check_registration,
    check_spaces,
    check_model_valid,
    check_sampling_matches_model,
    check_start_distribution,
    check_seeding,
    check_termination,
    check_on_policy_distribution,
    check_bellman,
)


def check_id(check: Callable[[str, Kwargs], None]) -> str:
    """A short pytest id for a check."""
    return check.__name__.removeprefix("check_")


def kwargs_id(kwargs: Kwargs) -> str:
    """A short pytest id for a kwargs setting."""
    return ",".join(f"{key}={value}" for key, value in kwargs.items()) or "default"
