"""PQN on the fleet: hand-computed Q(lambda) returns, RAdam per row, determinism, independence,
logging, learning CartPole, and field-named errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from rlharness.agents.deep.common import METRICS, DeepTrace
from rlharness.agents.deep.fleet.networks import NetworkShape, initial_parameters
from rlharness.agents.deep.fleet.pqn import (
    PQNMember,
    RowwiseRAdam,
    env_seeds,
    q_lambda_returns,
    run_pqn_fleet,
)
from rlharness.agents.deep.fleet.pqn import (
    loss_gradient as pqn_loss_gradient,
)
from rlharness.errors import SpecError
from rlharness.runner import check_experiment, plan_trials, run_trials
from rlharness.spec import EnvSpec, PQNAgentSpec
from tests.helpers import make_spec, run_one

CARTPOLE = EnvSpec(id="CartPole-v1")
SMALL = {
    "name": "pqn",
    "num_envs": 2,
    "num_steps": 16,
    "num_minibatches": 2,
    "update_epochs": 2,
    "network": {"width": 16, "depth": 2, "layer_norm": True},
    "eval_episodes": 1,
    "probe_states": 32,
}


def agent(**knobs: Any) -> PQNAgentSpec:
    return PQNAgentSpec.model_validate({**SMALL, **knobs})


def same_bits(left: DeepTrace, right: DeepTrace) -> bool:
    """Every logged value bitwise equal (NaN equal to NaN), and the same ending."""
    records = len(left.records) == len(right.records) and all(
        np.array(list(a.values())).tobytes() == np.array(list(b.values())).tobytes()
        for a, b in zip(left.records, right.records, strict=True)
    )
    return records and left.hard_divergence_step == right.hard_divergence_step


def returns_of(
    q_lambda: float, terminated: list[bool], ended: list[bool], gamma: float = 0.5
) -> list[float]:
    """Q(lambda) returns of one 3-step rollout: rewards 1, 2, 3; max Q(s'_t) 10, 20, 30."""

    def tensor(values: list[Any], dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).view(1, 3, 1)  # [K, T, E]

    returns = q_lambda_returns(
        tensor([1.0, 2.0, 3.0], torch.float32),
        tensor(terminated, torch.bool),
        tensor(ended, torch.bool),
        tensor([10.0, 20.0, 30.0], torch.float32),
        torch.tensor([gamma]),
        torch.tensor([q_lambda]),
    )
    return returns.flatten().tolist()


def test_q_lambda_returns_on_a_rollout_with_a_terminal() -> None:
    """The episode terminates at t = 1; gamma = lambda = 1/2, by hand:
    R_2 = 3 + 1/2 (1/2 30 + 1/2 30) = 18 (the rollout's end bootstraps), R_1 = 2 (terminal),
    R_0 = 1 + 1/2 (1/2 10 + 1/2 R_1) = 4 (nothing of the next episode leaks in)."""
    terminal = [False, True, False]
    assert returns_of(0.5, terminal, terminal) == [4.0, 2.0, 18.0]
    # lambda = 0: one-step Q-learning targets r + gamma (1 - terminated) max Q(s')
    assert returns_of(0.0, terminal, terminal) == [1 + 0.5 * 10, 2.0, 3 + 0.5 * 30]
    # lambda = 1: discounted rewards to the episode's end, bootstrapped at the rollout's end
    assert returns_of(1.0, terminal, terminal) == [1 + 0.5 * 2, 2.0, 3 + 0.5 * 30]
    assert returns_of(1.0, [False] * 3, [False] * 3) == [1 + 0.5 * (2 + 0.5 * 18), 11.0, 18.0]


def test_q_lambda_returns_bootstrap_a_time_limit_from_the_final_state() -> None:
    """Truncated at t = 1: R_1 = 2 + 1/2 max Q(s'_1) = 12 whatever lambda; R_0 mixes it in."""
    truncated = [False, True, False]
    assert returns_of(0.5, [False] * 3, truncated) == [1 + 0.5 * (5 + 6), 12.0, 18.0]


def test_q_lambda_returns_take_each_members_gamma_and_lambda() -> None:
    rewards = torch.ones(2, 3, 1)
    flags = torch.zeros(2, 3, 1, dtype=torch.bool)
    values = torch.full((2, 3, 1), 4.0)
    returns = q_lambda_returns(
        rewards, flags, flags, values, torch.tensor([0.5, 0.0]), torch.tensor([0.0, 1.0])
    )
    assert returns[0].flatten().tolist() == [3.0, 3.0, 3.0]
    assert returns[1].flatten().tolist() == [1.0, 1.0, 1.0]


def test_rowwise_radam_is_torch_radam_with_each_members_step_size() -> None:
    """Each row follows torch.optim.RAdam with its own learning rate (to rounding), through
    RAdam's first (unrectified) steps and beyond."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(2, 64, generator=generator)
    rates = torch.tensor([1e-2, 3e-3])
    rows = start.clone()
    optimiser = RowwiseRAdam(rows)
    references = [start[k].clone().requires_grad_() for k in range(2)]
    torch_optimisers = [torch.optim.RAdam([references[k]], lr=float(rates[k])) for k in range(2)]
    for _ in range(8):
        gradient = torch.randn(2, 64, generator=generator)
        optimiser.step(rows, gradient.clone(), rates)
        for k in range(2):
            references[k].grad = gradient[k].clone()
            torch_optimisers[k].step()
    for k in range(2):
        torch.testing.assert_close(rows[k], references[k].detach(), rtol=1e-6, atol=1e-7)
        assert not torch.equal(rows[k], start[k])


def test_env_seeds_of_members_never_collide() -> None:
    seeds = [s for member in range(50) for s in env_seeds(member, 4)]
    assert len(set(seeds)) == len(seeds)
    assert env_seeds(7, 1) == [7]


def test_same_seed_same_bits() -> None:
    members = [PQNMember(agent(), seed, 1e10) for seed in (0, 1)]
    first = run_pqn_fleet(CARTPOLE, members, 192, 64)
    second = run_pqn_fleet(CARTPOLE, members, 192, 64)
    assert all(same_bits(a, b) for a, b in zip(first, second, strict=True))
    assert not same_bits(first[0], first[1])


def test_a_member_does_not_depend_on_its_fleet() -> None:
    """Seed 3 alone, or beside members with other seeds, step sizes, lambdas and exploration."""
    alone = run_pqn_fleet(CARTPOLE, [PQNMember(agent(), 3, 1e10)], 192, 64)
    others = [
        PQNMember(agent(learning_rate=1e-2, q_lambda=0.0), 0, 1e10),
        PQNMember(agent(), 3, 1e10),
        PQNMember(agent(exploration={"final_epsilon": 0.5}, gamma=0.9), 8, 1e10),
    ]
    together = run_pqn_fleet(CARTPOLE, others, 192, 64)
    assert same_bits(alone[0], together[1])


def test_a_short_run_logs_every_metric() -> None:
    """Logs at 0 and where each 32-step iteration passes a multiple of log_every (or ends)."""
    spec = make_spec("CartPole-v1", SMALL, steps=200, log_every=70, seeds=2)
    result = run_one(spec)
    metrics = result.metrics
    assert list(metrics.columns) == ["seed", "step", *METRICS]
    assert metrics[metrics.seed == 0].step.tolist() == [0, 96, 160, 192]
    trained = metrics[metrics.step > 0]
    for column in ("eval_return", "probe_max_abs_q", "loss", "td_error_abs_mean", "param_norm"):
        assert np.isfinite(trained[column]).all(), column
    assert (trained.exploration_rate < 1.0).all()
    assert trained.seem.between(-1.0, 1.0).all() and trained.feature_cosine.between(-1, 1).all()
    assert metrics[metrics.step == 0].seem.isna().all()
    assert set(result.outcomes.outcome) <= {"stable", "soft-diverged", "recovered"}
    assert result.soft_divergence_threshold == pytest.approx(100.0)


def test_grid_points_train_as_one_fleet_and_match_alone() -> None:
    """Two learning rates run as one fleet through run_trials; each equals its own trial."""
    spec = make_spec(
        "CartPole-v1", SMALL, steps=64, log_every=32, grid={"agent.learning_rate": [1e-3, 1e-2]}
    )
    configs = plan_trials(spec)
    together = run_trials(configs)
    alone = run_one(make_spec("CartPole-v1", {**SMALL, "learning_rate": 1e-2}, 64, 32))
    assert together[1].metrics.equals(alone.metrics)
    assert not together[0].metrics.equals(together[1].metrics)


def test_bad_input_names_the_field() -> None:
    with pytest.raises(SpecError, match=r"agent.num_minibatches: .*must divide num_envs"):
        make_spec("CartPole-v1", {**SMALL, "num_minibatches": 3}, steps=64)
    with pytest.raises(SpecError, match=r"run.steps: pqn .* num_envs \* num_steps = 32"):
        check_experiment(make_spec("CartPole-v1", SMALL, steps=31))
    with pytest.raises(SpecError, match=r"agent.backend"):
        make_spec("CartPole-v1", {**SMALL, "backend": "sb3"}, steps=64)
    with pytest.raises(SpecError, match=r"agent.q_lambda"):
        make_spec("CartPole-v1", {**SMALL, "q_lambda": 1.5}, steps=64)


@pytest.mark.slow
def test_pqn_learns_cart_pole() -> None:
    """Measured: seeds 0 and 1 reach greedy returns 445-500 by 41k steps (random: ~22); the
    mean of each seed's last three evaluations must pass 150."""
    knobs = {"name": "pqn", "learning_rate": 3e-3, "num_envs": 8, "num_steps": 32}
    members = [PQNMember(PQNAgentSpec.model_validate(knobs), seed, 1e10) for seed in (0, 1)]
    traces = run_pqn_fleet(CARTPOLE, members, 40_960, 4096)
    for trace in traces:
        last = [record["eval_return"] for record in trace.records[-3:]]
        assert math.fsum(last) / 3 > 150.0
        assert trace.hard_divergence_step is None


def test_a_hard_diverged_member_is_frozen_and_the_others_carry_on() -> None:
    """A hard threshold of 1.0 is passed once a weight grows beyond 1 (LayerNorm gains start at
    1): that member's log ends there with NaN evaluations; its neighbour is as if alone."""
    limited = PQNMember(agent(learning_rate=1e-1), 5, 1.0)
    free = PQNMember(agent(), 3, 1e10)
    limited_trace, free_trace = run_pqn_fleet(CARTPOLE, [limited, free], 192, 32)
    assert limited_trace.hard_divergence_reason == "a parameter beyond the hard threshold"
    assert limited_trace.records[-1]["step"] == limited_trace.hard_divergence_step > 0
    assert math.isnan(limited_trace.records[-1]["eval_return"])
    alone = run_pqn_fleet(CARTPOLE, [free], 192, 32)
    assert same_bits(alone[0], free_trace)


def test_l2_adds_l2_theta_to_the_gradient_and_not_to_the_logged_loss() -> None:
    """PQN's L2 penalty: each member's gradient gains its own l2_k theta_k; the loss is TD's."""
    shape = NetworkShape(3, 2, 4, 2, True)
    parameters = initial_parameters(shape, torch.tensor([5, 6]), torch.device("cpu"))
    observations = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]]).expand(2, -1, -1)
    actions = torch.tensor([[0, 1], [1, 0]])
    returns = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    plain, without = pqn_loss_gradient(
        parameters, shape, observations, actions, returns, torch.zeros(2)
    )
    l2 = torch.tensor([0.25, 0.0])
    penalised, with_l2 = pqn_loss_gradient(parameters, shape, observations, actions, returns, l2)
    assert torch.equal(plain.loss, penalised.loss)
    count = shape.parameter_count()
    expected = without[:, :count] + l2[:, None] * parameters[:, :count]
    assert torch.allclose(with_l2[:, :count], expected, atol=1e-6)
    assert torch.equal(with_l2[1], without[1])
    assert torch.count_nonzero(with_l2[:, count:]) == 0
