"""The calibrated over-estimation measure: predicted Q of greedy states against their returns."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from rlharness.agents.deep.fleet.run import Member, run_fleet
from rlharness.agents.deep.overestimation import (
    GreedyEpisodes,
    discounted_returns,
    tail_steps,
)
from rlharness.spec import DQNAgentSpec, EnvSpec, parse_spec
from tests.helpers import run_one

CHAIN_ID = "TestChain-v0"
CHAIN_LENGTH = 5
GAMMA = 0.9


class Chain(gym.Env[np.ndarray, int]):
    """States 0..4 in a row; every action moves one to the right; reward 1 on reaching the end.

    From state t the only return is gamma^(4 - t): the true discounted return is known.
    """

    observation_space = spaces.Box(0.0, 1.0, (CHAIN_LENGTH,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self) -> None:
        self.position = 0

    def _observation(self) -> np.ndarray:
        return np.eye(CHAIN_LENGTH, dtype=np.float32)[self.position]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = 0
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.position += 1
        end = self.position == CHAIN_LENGTH
        observation = np.zeros(CHAIN_LENGTH, np.float32) if end else self._observation()
        return observation, 1.0 if end else 0.0, end, False, {}


def test_discounted_returns_by_hand() -> None:
    """Rewards (0, 0, 1, 2) with gamma 1/2: G = (1/4 + 2/8, 1/2 + 2/4, 1 + 1, 2)."""
    returns = discounted_returns(np.array([0.0, 0.0, 1.0, 2.0]), 0.5)
    assert returns.tolist() == [0.5, 1.0, 2.0, 2.0]


def test_rewards_are_clipped_to_the_training_scale() -> None:
    episodes = GreedyEpisodes(gamma=0.5, reward_clip=1.0)
    for value, reward in ((3.0, 0.0), (2.0, 5.0)):
        episodes.step(value, reward)
    episodes.end_episode(terminated=True)
    metrics = episodes.metrics()
    # returns (0.5, 1.0) against predictions (3, 2)
    assert metrics["greedy_return_mean"] == 0.75
    assert metrics["greedy_q_mean"] == 2.5
    assert metrics["overestimation"] == 1.75


def test_a_truncated_episode_keeps_only_states_whose_tail_is_negligible() -> None:
    gamma = 0.5
    cut = tail_steps(gamma)
    assert cut == math.ceil(math.log(1e-3) / math.log(0.5)) == 10
    episodes = GreedyEpisodes(gamma=gamma, reward_clip=None)
    for _ in range(cut + 3):
        episodes.step(1.0, 1.0)
    episodes.end_episode(terminated=False)
    assert len(episodes.returns) == 3
    # the kept states miss at most gamma^10 / (1 - gamma) of the infinite-horizon return 2
    assert all(2.0 - g <= 2.0 * gamma**cut + 1e-12 for g in episodes.returns)
    short = GreedyEpisodes(gamma=gamma, reward_clip=None)
    short.step(1.0, 1.0)
    short.end_episode(terminated=False)
    assert all(math.isnan(v) for v in short.metrics().values())


@pytest.fixture
def chain_env() -> EnvSpec:
    if CHAIN_ID not in gym.registry:
        gym.register(CHAIN_ID, entry_point=Chain)
    return EnvSpec(id=CHAIN_ID)


def test_the_fleet_measures_the_chains_known_returns(chain_env: EnvSpec) -> None:
    """Greedy episodes on the chain visit states 0..4; the mean return is sum_t gamma^t / 5."""
    agent = DQNAgentSpec.model_validate(
        {"name": "dqn", "backend": "fleet", "gamma": GAMMA, "learning_starts": 50,
         "target_update_period": 20, "batch_size": 8, "replay_capacity": 200,
         "eval_episodes": 2, "probe_states": 4, "reward_clip": 1.0}
    )  # fmt: skip
    traces = run_fleet(chain_env, [Member(agent, seed, 1e10) for seed in (0, 1)], 200, 100)
    expected = sum(GAMMA**t for t in range(CHAIN_LENGTH)) / CHAIN_LENGTH
    for trace in traces:
        for record in trace.records:
            assert record["greedy_return_mean"] == pytest.approx(expected, rel=1e-12)
            gap = record["greedy_q_mean"] - record["greedy_return_mean"]
            assert record["overestimation"] == pytest.approx(gap, rel=1e-12)
        assert len({r["greedy_q_mean"] for r in trace.records}) == len(trace.records)


@pytest.mark.parametrize("backend", ["sb3", "fleet"])
def test_cartpole_greedy_returns_follow_from_the_episode_length(backend: str) -> None:
    """CartPole pays 1 per step until the pole falls: one greedy episode of L steps has
    G_t = (1 - gamma^(L - t)) / (1 - gamma), so the measured mean follows from the logged return."""
    spec = parse_spec(
        {"name": "greedy_returns", "env": {"id": "CartPole-v1"},
         "agent": {"name": "dqn", "backend": backend, "learning_starts": 200,
                   "eval_episodes": 1, "gamma": 0.99},
         "run": {"steps": 600, "log_every": 300, "seeds": 2}}
    )  # fmt: skip
    metrics = run_one(spec).metrics
    for row in metrics.to_dict(orient="records"):
        length = int(row["eval_return"])
        assert length < 500  # terminated, not cut by the time limit
        steps_left = length - np.arange(length)
        expected = float(np.mean((1 - 0.99**steps_left) / (1 - 0.99)))
        assert row["greedy_return_mean"] == pytest.approx(expected, rel=1e-9)
        gap = row["greedy_q_mean"] - row["greedy_return_mean"]
        assert row["overestimation"] == pytest.approx(gap, rel=1e-9, abs=1e-12)
