"""The stable-baselines3 DQN backend: divergence as data, determinism, learning, spec checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rlharness.errors import SpecError
from rlharness.runner import check_experiment
from rlharness.spec import parse_spec
from tests.helpers import run_one

RANDOM_CARTPOLE_RETURN = 22.0


def dqn_spec(steps: int, log_every: int, seeds: int = 1, **agent: Any):
    return parse_spec(
        {
            "name": "dqn_test",
            "env": {"id": "CartPole-v1"},
            "agent": {"name": "dqn", "learning_starts": 200, "target_update_period": 250, **agent},
            "run": {"steps": steps, "log_every": log_every, "seeds": seeds},
        }
    )


def test_exploding_learning_rate_is_hard_diverged_with_its_step() -> None:
    """No target network, no reward clipping, a huge step size: the run ends, never crashes."""
    spec = dqn_spec(
        3000, 500, seeds=2, learning_rate=10.0, bootstrap_target="q_learning", reward_clip=None,
        gamma=0.999,
    )  # fmt: skip
    spec = spec.model_copy(
        update={
            "diagnostics": spec.diagnostics.model_copy(update={"soft_divergence_threshold": 1000.0})
        }
    )
    result = run_one(spec)
    outcomes = result.outcomes
    assert set(outcomes["outcome"]) == {"hard-diverged"}
    assert (outcomes["hard_divergence_step"] <= 1000).all()
    assert outcomes["hard_divergence_reason"].notna().all()
    last = result.metrics.groupby("seed")["step"].max()
    assert (last.to_numpy() == outcomes["hard_divergence_step"].to_numpy()).all()


def test_online_bootstrapping_without_a_target_network_soft_diverges() -> None:
    """q_learning target on CartPole at lr 1e-2: max |Q| passes 1 / (1 - 0.99) = 100."""
    result = run_one(dqn_spec(4000, 1000, learning_rate=1e-2, bootstrap_target="q_learning"))
    assert result.soft_divergence_threshold == pytest.approx(100.0)
    (outcome,) = result.outcomes.to_dict(orient="records")
    assert outcome["outcome"] in ("soft-diverged", "soft-diverged-then-recovered")
    assert outcome["peak_probe_max_abs_q"] > 100.0


def test_same_seed_gives_bitwise_identical_metrics() -> None:
    spec = dqn_spec(1500, 500, prioritized_replay={"alpha": 0.6}, n_step=3)
    first, second = run_one(spec), run_one(spec)
    for column in first.metrics.columns:
        left, right = first.metrics[column].to_numpy(), second.metrics[column].to_numpy()
        assert left.tobytes() == right.tobytes(), column


def test_metrics_are_logged_at_every_interval() -> None:
    result = run_one(dqn_spec(1000, 250))
    assert result.metrics["step"].tolist() == [0, 250, 500, 750, 1000]
    logged = result.metrics.iloc[1:]
    assert np.isfinite(logged[["probe_max_abs_q", "param_norm", "eval_return"]]).all().all()
    assert logged["exploration_rate"].is_monotonic_decreasing


@pytest.mark.slow
def test_sb3_dqn_learns_cartpole_above_random() -> None:
    result = run_one(dqn_spec(12_000, 4000, bootstrap_target="double_q"))
    assert result.outcomes["final_eval_return"].iloc[0] > 2.5 * RANDOM_CARTPOLE_RETURN


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        (
            {"n_step": 20, "replay_capacity": 10},
            "agent.n_step: must not exceed replay_capacity (10)",
        ),
        ({"bootstrap_target": "sarsa"}, "agent.bootstrap_target: Input should be 'q_learning'"),
        (
            {"network": {"width": 0}},
            "agent.network.width: Input should be greater than or equal to 1",
        ),
        (
            {"prioritized_replay": {"beta": 2}},
            "agent.prioritized_replay.beta: Input should be less",
        ),
        ({"backend": "tf"}, "agent.backend: Input should be 'sb3', 'rllib' or 'fleet'"),
        ({"alpha": 0.1}, "agent.alpha: unknown field; allowed fields here: backend, batch_size"),
    ],
)
def test_bad_dqn_knobs_name_the_field(agent: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as raised:
        dqn_spec(100, 50, **agent)
    assert any(m.startswith(message) for m in raised.value.messages), raised.value.messages


def test_dqn_needs_discrete_actions_and_no_linear_triad_section() -> None:
    spec = parse_spec(
        {
            "name": "bad",
            "env": {"id": "Pendulum-v1"},
            "agent": {"name": "dqn"},
            "triad": {"n_step": 3},
            "run": {"steps": 100},
        }
    )
    with pytest.raises(SpecError) as raised:
        check_experiment(spec)
    messages = " | ".join(raised.value.messages)
    assert "env.id: dqn needs discrete actions" in messages
    assert "triad: the triad section configures linear learners" in messages


@pytest.mark.parametrize("env_id", ["triad/BairdControl-v0", "Acrobot-v1", "MountainCar-v0"])
def test_dqn_runs_on_the_other_tasks(env_id: str) -> None:
    spec = parse_spec(
        {
            "name": "dqn_tasks",
            "env": {"id": env_id},
            "agent": {"name": "dqn", "learning_starts": 100, "eval_episodes": 1},
            "run": {"steps": 300, "log_every": 300},
        }
    )
    result = run_one(spec)
    assert result.metrics["step"].tolist() == [0, 300]
    assert np.isfinite(result.metrics["probe_max_abs_q"]).all()


def test_dqn_runs_on_minatar_when_installed() -> None:
    pytest.importorskip("minatar")
    spec = parse_spec(
        {
            "name": "dqn_minatar",
            "env": {"id": "MinAtar/Breakout-v1"},
            "agent": {"name": "dqn", "learning_starts": 100, "eval_episodes": 1},
            "run": {"steps": 300, "log_every": 300},
        }
    )
    result = run_one(spec)
    assert result.metrics["step"].tolist() == [0, 300]
    assert result.outcomes["outcome"].iloc[0] == "stable"
