"""The RLlib DQN backend: refused settings, the four targets, a run, divergence, learning."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.dqn.dqn_learner import QF_NEXT_PREDS, QF_PREDS, QF_TARGET_NEXT_PREDS
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from torch.nn import functional

from rlharness.agents.deep.common import METRICS, classify
from rlharness.agents.deep.diagnostics import FEATURE_METRICS
from rlharness.agents.deep.overestimation import GREEDY_METRICS
from rlharness.agents.deep.rllib_dqn import (
    build_rllib_dqn_config,
    ensure_ray,
    rllib_unsupported,
    run_rllib_dqn,
)
from rlharness.outcomes import Outcome
from rlharness.spec import DQNAgentSpec, EnvSpec

CARTPOLE = EnvSpec(id="CartPole-v1")

# RLlib re-registers its env wrapper with Gymnasium whenever it builds an algorithm.
pytestmark = pytest.mark.filterwarnings("ignore:.*Overriding environment rllib-single-agent-env")


def rllib_agent(**fields: Any) -> DQNAgentSpec:
    """A DQN spec on the rllib backend with the given fields."""
    return DQNAgentSpec.model_validate({"name": "dqn", "backend": "rllib", **fields})


def drain_statistics(learner: Any, _: Any = None) -> list[list[float]]:
    """The learner's per-update statistics (for ``foreach_learner``)."""
    return learner.drain_statistics()


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"bootstrap_target": "q_learning"},
        {"bootstrap_target": "double_q", "n_step": 3},
        {"bootstrap_target": "inverse_double_q", "prioritized_replay": {"alpha": 0.6}},
        {"train_frequency": 1, "gradient_steps": 2, "target_update_period": 7},
        {"train_frequency": 8, "target_update_period": 2},
        {"target_update_period": 500, "target_update_tau": 0.05},
    ],
)
def test_supported_settings_give_no_messages(fields: dict[str, Any]) -> None:
    assert rllib_unsupported(rllib_agent(**fields)) == []


def test_target_period_off_the_rollout_grid_is_refused() -> None:
    (message,) = rllib_unsupported(rllib_agent(train_frequency=4, target_update_period=10))
    assert message.startswith("agent.target_update_period:")
    assert "multiple of 4" in message and "got 10" in message


def test_n_step_beyond_train_frequency_lengthens_the_rollout_grid() -> None:
    (message,) = rllib_unsupported(rllib_agent(train_frequency=4, n_step=6))
    assert message.startswith("agent.target_update_period:")
    assert "multiple of 8" in message and "got 500" in message


def test_short_period_needs_a_plain_copy() -> None:
    (message,) = rllib_unsupported(
        rllib_agent(train_frequency=4, target_update_period=2, target_update_tau=0.5)
    )
    assert message.startswith("agent.target_update_tau:")
    assert "got 0.5" in message


@pytest.fixture(scope="module")
def algo() -> Iterator[Algorithm]:
    """A built (untrained) algorithm whose learner the loss tests drive directly."""
    ensure_ray()
    config = build_rllib_dqn_config(rllib_agent(), CARTPOLE, 0, 1000, 4)
    built = config.build_algo()
    yield built
    built.stop()


# Next-state Q-values of the online and target networks for a batch of two.
ONLINE_NEXT = [[1.0, 5.0], [3.0, 2.0]]
TARGET_NEXT = [[4.0, 2.0], [1.0, 6.0]]
EXPECTED_BOOTSTRAP = {
    "q_learning": [5.0, 3.0],  # max_a online
    "target_q": [4.0, 6.0],  # max_a target
    "double_q": [2.0, 1.0],  # target at argmax online = (1, 0)
    "inverse_double_q": [1.0, 2.0],  # online at argmax target = (0, 1)
}


@pytest.mark.parametrize("target", sorted(EXPECTED_BOOTSTRAP))
def test_learner_loss_bootstraps_on_the_configured_target(algo: Algorithm, target: str) -> None:
    rewards = torch.tensor([0.5, -1.0])
    batch = {
        Columns.ACTIONS: torch.tensor([0, 1]),
        Columns.REWARDS: rewards,
        Columns.TERMINATEDS: torch.tensor([False, False]),
        "n_step": torch.tensor([1, 1]),
        "weights": torch.ones(2),
    }
    fwd_out = {
        QF_PREDS: torch.tensor([[0.25, 9.0], [9.0, -0.5]]),
        QF_NEXT_PREDS: torch.tensor(ONLINE_NEXT),
        QF_TARGET_NEXT_PREDS: torch.tensor(TARGET_NEXT),
    }

    def loss_and_statistics(learner: Any, _: Any = None) -> tuple[float, list[float]]:
        learner.bootstrap_target = target
        learner.drain_statistics()
        loss = learner.compute_loss_for_module(
            module_id=DEFAULT_MODULE_ID,
            config=learner.config.get_config_for_module(DEFAULT_MODULE_ID),
            batch=batch,
            fwd_out=fwd_out,
        )
        (statistics,) = learner.drain_statistics()
        return float(loss), statistics

    assert algo.learner_group is not None and algo.config is not None
    (result,) = algo.learner_group.foreach_learner(loss_and_statistics)
    loss, statistics = result.get()
    gamma = algo.config.gamma
    targets = rewards + gamma * torch.tensor(EXPECTED_BOOTSTRAP[target])
    chosen = torch.tensor([0.25, -0.5])
    assert loss == pytest.approx(float(functional.smooth_l1_loss(chosen, targets)))
    _, logged_loss, max_abs_q, td_mean, td_abs_mean = statistics
    assert logged_loss == pytest.approx(loss)
    assert max_abs_q == pytest.approx(9.0)
    assert td_mean == pytest.approx(float((targets - chosen).mean()))
    assert td_abs_mean == pytest.approx(float((targets - chosen).abs().mean()))


@pytest.mark.parametrize(("n_step", "first_update"), [(1, 10), (3, 12)])
def test_updates_follow_train_frequency_and_gradient_steps(n_step: int, first_update: int) -> None:
    # Two env steps per rollout (four when n_step = 3 needs it), three updates per two steps,
    # the first after the first rollout that ends beyond learning_starts = 9.
    agent = rllib_agent(train_frequency=2, gradient_steps=3, n_step=n_step, learning_starts=9)
    ensure_ray()
    algo = build_rllib_dqn_config(agent, CARTPOLE, 0, 100, 100).build_algo()
    try:
        algo.train()
        assert algo.learner_group is not None
        (result,) = algo.learner_group.foreach_learner(drain_statistics)
        update_steps = [int(row[0]) for row in result.get()]
    finally:
        algo.stop()
    # The rollouts from first_update to 100 hold env steps 9..100: 92 steps, 1.5 updates each.
    assert len(update_steps) == 138
    assert update_steps[0] == first_update and update_steps[-1] == 100


def test_short_run_logs_every_metric() -> None:
    agent = rllib_agent(learning_starts=200, exploration={"fraction": 0.5}, eval_episodes=2)
    trace = run_rllib_dqn(agent, CARTPOLE, seed=0, steps=1500, log_every=500, hard_limit=1e8)

    assert trace.hard_divergence_step is None
    assert [record["step"] for record in trace.records] == [0, 500, 1000, 1500]
    for record in trace.records:
        assert set(record) == {"step", *METRICS}
    unmeasured = (*GREEDY_METRICS, *FEATURE_METRICS)
    measured = [name for name in METRICS if name not in unmeasured]
    for record in trace.records[1:]:
        assert all(math.isfinite(record[name]) for name in measured), record
        # the rllib backend measures neither the greedy over-estimation nor the warnings
        assert all(math.isnan(record[name]) for name in unmeasured), record
    first, second = trace.records[:2]
    assert math.isnan(first["loss"]) and math.isfinite(first["eval_return"])
    # Linear decay from 1 to 0.05 over 750 steps; the last action of step 500 came at t = 499.
    assert second["exploration_rate"] == pytest.approx(1.0 - 0.95 * 499 / 750, abs=0.01)
    assert trace.records[-1]["exploration_rate"] == pytest.approx(0.05)


def test_huge_step_size_diverges_without_raising() -> None:
    agent = rllib_agent(
        bootstrap_target="q_learning",
        learning_rate=10.0,
        gamma=0.999,
        reward_clip=None,
        learning_starts=100,
        target_update_period=100,
        n_step=3,
        prioritized_replay={"alpha": 0.6},
        eval_episodes=1,
    )
    trace = run_rllib_dqn(agent, CARTPOLE, seed=0, steps=2000, log_every=500, hard_limit=1e6)

    outcome, first_beyond = classify(trace, bound=1.0 / (1.0 - agent.gamma))
    assert outcome in (Outcome.HARD_DIVERGED, Outcome.SOFT_DIVERGED)
    assert first_beyond is not None
    if outcome is Outcome.HARD_DIVERGED:
        assert trace.hard_divergence_step == trace.records[-1]["step"]
        assert trace.hard_divergence_reason


@pytest.mark.slow
def test_learns_cartpole_beyond_a_random_policy() -> None:
    agent = rllib_agent(
        learning_starts=1000,
        exploration={"fraction": 0.2},
        eval_episodes=10,
    )
    trace = run_rllib_dqn(agent, CARTPOLE, seed=0, steps=10_000, log_every=2_000, hard_limit=1e8)

    assert trace.hard_divergence_step is None
    # A uniformly random policy averages about 22 steps on CartPole.
    assert max(record["eval_return"] for record in trace.records) > 60
