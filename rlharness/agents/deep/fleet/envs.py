"""Batched environments: one env per member, stepped together, reset as stable-baselines3 does.

`step` returns the observation to act on next (a fresh reset where an episode
ended) and, separately, the true final observation of every member, so that
replay stores transitions that never cross an episode boundary: a terminated
episode's last transition does not bootstrap, a truncated one (a time limit)
bootstraps from its final observation, as SB3's buffers do with
``handle_timeout_termination``.

`CartPoleBatch` steps every member's cart-pole in a few NumPy array
operations (Gymnasium's CartPole-v1 equations, its reset distribution drawn
from each member's own stream); `GymEnvs` holds one Gymnasium env per member
and serves every other id. `make_batched_env` picks one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rlharness.agents.deep.fleet import streams
from rlharness.environments import register_optional_envs
from rlharness.spec import EnvSpec


class Step(NamedTuple):
    """One step of every member: rewards as the env gives them (clipping is the learner's)."""

    observations: np.ndarray
    final_observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


class BatchedEnv(ABC):
    """K environments of one id; members in ``active`` step, the others stand still."""

    observation_space: spaces.Box
    n_actions: int
    max_episode_steps: int | None

    def __init__(self, count: int) -> None:
        self.count = count

    @abstractmethod
    def reset(self, members: np.ndarray) -> np.ndarray:
        """Reset the members whose entry in the bool mask is set; every member's observation."""

    @abstractmethod
    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> Step:
        """Step the active members, resetting those whose episode ended."""

    @abstractmethod
    def close(self) -> None:
        """Release the envs' resources."""


class GymEnvs(BatchedEnv):
    """One Gymnasium env per member, each seeded once with its member's seed."""

    def __init__(self, env: EnvSpec, seeds: list[int]) -> None:
        super().__init__(len(seeds))
        register_optional_envs(env.id, "env")
        self.envs = [gym.make(env.id, **env.kwargs) for _ in seeds]
        first = self.envs[0]
        assert isinstance(first.observation_space, spaces.Box)
        assert isinstance(first.action_space, spaces.Discrete)
        self.observation_space = first.observation_space
        self.n_actions = int(first.action_space.n)
        self.max_episode_steps = first.spec.max_episode_steps if first.spec else None
        self.seeds: list[int | None] = list(seeds)
        shape = (self.count, *self.observation_space.shape)
        self.observations = np.zeros(shape, dtype=self.observation_space.dtype)

    def reset(self, members: np.ndarray) -> np.ndarray:
        """Reset the members in the mask (the first reset of each seeds it)."""
        for k in np.flatnonzero(members):
            self.observations[k], _ = self.envs[k].reset(seed=self.seeds[k])
            self.seeds[k] = None
        return self.observations.copy()

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> Step:
        """Step each active member's env; reset it where its episode ended."""
        final = self.observations.copy()
        rewards = np.zeros(self.count)
        terminated = np.zeros(self.count, dtype=bool)
        truncated = np.zeros(self.count, dtype=bool)
        members = range(self.count) if active is None else np.flatnonzero(active)
        for k in members:
            observation, reward, term, trunc, _ = self.envs[k].step(actions[k])
            final[k], rewards[k], terminated[k], truncated[k] = observation, reward, term, trunc
            self.observations[k] = observation
            if term or trunc:
                self.observations[k], _ = self.envs[k].reset()
        return Step(self.observations.copy(), final, rewards, terminated, truncated)

    def close(self) -> None:
        """Close every member's env."""
        for env in self.envs:
            env.close()


RESETS_DRAWN = 64
"""Resets per member whose initial-state draws `CartPoleBatch` computes at once."""


class CartPoleBatch(BatchedEnv):
    """Gymnasium's CartPole-v1 (Barto, Sutton & Anderson 1983) for K members as arrays.

    The dynamics are `gymnasium.envs.classic_control.cartpole.CartPoleEnv.step`
    (Euler integration, float64 state, float32 observations) with its
    TimeLimit of ``max_episode_steps``; each member's initial states are
    uniform in [-0.05, 0.05]^4 from its ``stream``.
    """

    GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    THETA_LIMIT, X_LIMIT = 12 * 2 * math.pi / 360, 2.4

    def __init__(self, seeds: list[int], stream: streams.Stream, max_episode_steps: int) -> None:
        super().__init__(len(seeds))
        high = np.array([self.X_LIMIT * 2, np.inf, self.THETA_LIMIT * 2, np.inf], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.n_actions = 2
        self.max_episode_steps = self.time_limit = max_episode_steps
        self.keys = streams.member_keys(torch.tensor(seeds), stream)
        self.resets = np.zeros(self.count, dtype=np.int64)
        self.first_drawn = self.resets.copy()
        self.draws = np.zeros((self.count, 0, 4))
        self.state = np.zeros((self.count, 4))
        self.elapsed = np.zeros(self.count, dtype=np.int64)

    def reset(self, members: np.ndarray) -> np.ndarray:
        """Draw fresh initial states for the members in the mask.

        Reset r of a member uses draws 4r ... 4r + 3 of its stream, computed
        `RESETS_DRAWN` resets at a time.
        """
        if members.any():
            if (self.resets - self.first_drawn).max() >= self.draws.shape[1]:
                self.first_drawn = self.resets.copy()
                first = torch.from_numpy(self.first_drawn * 4)[:, None]
                draws = streams.uniform(self.keys, first + torch.arange(4 * RESETS_DRAWN))
                self.draws = draws.numpy().reshape(self.count, RESETS_DRAWN, 4)
            uniform = self.draws[np.arange(self.count), self.resets - self.first_drawn]
            self.state = np.where(members[:, None], -0.05 + 0.1 * uniform, self.state)
            self.elapsed[members] = 0
            self.resets += members
        return self.state.astype(np.float32)

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> Step:
        """One Euler step of every active member's cart-pole, then the time limit and resets."""
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(actions == 1, self.FORCE, -self.FORCE)
        cos, sin = np.cos(theta), np.sin(theta)
        total_mass = self.MASS_POLE + self.MASS_CART
        pole_mass_length = self.MASS_POLE * self.HALF_LENGTH
        temp = (force + pole_mass_length * np.square(theta_dot) * sin) / total_mass
        theta_acc = (self.GRAVITY * sin - cos * temp) / (
            self.HALF_LENGTH * (4.0 / 3.0 - self.MASS_POLE * np.square(cos) / total_mass)
        )
        x_acc = temp - pole_mass_length * theta_acc * cos / total_mass
        stepped = np.stack(
            (
                x + self.TAU * x_dot,
                x_dot + self.TAU * x_acc,
                theta + self.TAU * theta_dot,
                theta_dot + self.TAU * theta_acc,
            ),
            axis=1,
        )
        moving = np.ones(self.count, dtype=bool) if active is None else active
        self.state = np.where(moving[:, None], stepped, self.state)
        self.elapsed += moving
        x, theta = self.state[:, 0], self.state[:, 2]
        terminated = moving & (
            (x < -self.X_LIMIT)
            | (x > self.X_LIMIT)
            | (theta < -self.THETA_LIMIT)
            | (theta > self.THETA_LIMIT)
        )
        truncated = moving & (self.elapsed >= self.time_limit)
        final = self.state.astype(np.float32)
        observations = self.reset(terminated | truncated)
        return Step(observations, final, moving.astype(np.float64), terminated, truncated)

    def close(self) -> None:
        """Nothing to release: the state is arrays."""


BATCHED_PHYSICS: dict[str, int] = {"CartPole-v1": 500, "CartPole-v0": 200}
"""Ids stepped as arrays (with their time limits) when given no kwargs; others use `GymEnvs`."""


def make_batched_env(env: EnvSpec, seeds: list[int], evaluation: bool = False) -> BatchedEnv:
    """The members' envs: batched physics where the id has it, else one Gymnasium env each."""
    if env.id in BATCHED_PHYSICS and not env.kwargs:
        stream = streams.Stream.EVAL_RESET if evaluation else streams.Stream.ENV_RESET
        return CartPoleBatch(seeds, stream, BATCHED_PHYSICS[env.id])
    seed_of = streams.eval_env_seed if evaluation else streams.env_seed
    return GymEnvs(env, [seed_of(seed) for seed in seeds])


def describe(env: EnvSpec) -> dict[str, Any]:
    """The observation space, action count and time limit of an env id, from one made env."""
    register_optional_envs(env.id, "env")
    made = gym.make(env.id, **env.kwargs)
    try:
        return {
            "observation_space": made.observation_space,
            "action_space": made.action_space,
            "max_episode_steps": made.spec.max_episode_steps if made.spec else None,
        }
    finally:
        made.close()
