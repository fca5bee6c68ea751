"""LayerNorm and the L2 penalty as fleet and SB3 knobs, and the early-warning diagnostics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from rlharness.agents.deep.diagnostics import effective_rank, feature_cosine
from rlharness.agents.deep.fleet.learner import Knobs, LearnerState, loss_gradient
from rlharness.agents.deep.fleet.networks import (
    NetworkShape,
    features,
    initial_parameters,
    layers,
    q_values,
    value_gradients,
)
from rlharness.agents.deep.fleet.replay import Batch
from rlharness.agents.deep.fleet.run import Member, run_fleet
from rlharness.agents.deep.sb3_dqn import (
    TriadDQN,
    build_sb3_dqn,
    l2_penalty,
    run_sb3_dqn,
)
from rlharness.agents.deep.sb3_dqn import value_gradients as sb3_value_gradients
from tests.test_cli import assert_bad_input, cli, write_spec
from tests.test_deep_fleet import BASE, CARTPOLE, agent, same_bits

TINY = NetworkShape(inputs=3, actions=2, width=4, depth=1, layer_norm=True)


def test_srank_of_known_singular_values() -> None:
    """srank_0.01 = the fewest singular values holding 99% of their sum (Kumar et al. 2021)."""
    u, _ = torch.linalg.qr(
        torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    )
    v, _ = torch.linalg.qr(
        torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    )

    def matrix(singular: list[float]) -> torch.Tensor:
        return u[:, :4] @ torch.diag(torch.tensor(singular, dtype=torch.float64)) @ v.T

    cases = {
        (10.0, 1.0, 0.01, 0.0): 2,  # 10 / 11.01 < 0.99 <= 11 / 11.01
        (1.0, 1.0, 1.0, 1.0): 4,
        (5.0, 0.0, 0.0, 0.0): 1,
        (97.0, 1.0, 1.0, 1.0): 3,  # 98 / 100 < 0.99 <= 99 / 100
        (0.0, 0.0, 0.0, 0.0): 0,
    }
    batch = torch.stack([matrix(list(singular)) for singular in cases])
    assert effective_rank(batch).tolist() == list(cases.values())
    alone = [effective_rank(m[None]).item() for m in batch]
    assert alone == list(cases.values())
    broken = batch.clone()
    broken[1, 0, 0] = math.nan
    assert math.isnan(effective_rank(broken)[1].item())
    assert effective_rank(broken)[0].item() == 2


def test_feature_cosine_of_known_angles() -> None:
    angles = torch.tensor([0.0, math.pi / 3, math.pi / 2, math.pi], dtype=torch.float64)
    phi = torch.stack([torch.ones(4), torch.zeros(4)], dim=1).double()[None]
    phi_next = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)[None]
    every = torch.ones(1, 4, dtype=torch.bool)
    expected = (1.0 + 0.5 + 0.0 - 1.0) / 4
    assert feature_cosine(phi, phi_next, every).item() == pytest.approx(expected, abs=1e-12)
    first_two = torch.tensor([[True, True, False, False]])
    assert feature_cosine(phi, phi_next, first_two).item() == pytest.approx(0.75, abs=1e-12)
    scaled = feature_cosine(7.0 * phi, 0.1 * phi_next, every)
    assert scaled.item() == pytest.approx(expected, abs=1e-12)
    assert math.isnan(feature_cosine(phi, phi_next, torch.zeros(1, 4, dtype=torch.bool)).item())


def test_layer_norm_network_by_hand_and_against_torch() -> None:
    """Linear -> LayerNorm (gain, bias) -> ReLU -> Linear, the parameters in row order."""
    parameters = initial_parameters(TINY, torch.tensor([3]), torch.device("cpu"))
    (weight, bias, gain, shift), (head_weight, head_bias) = layers(parameters, TINY)
    assert TINY.parameter_count() == 3 * 4 + 4 + 2 * 4 + 4 * 2 + 2
    assert gain.flatten().tolist() == [1.0] * 4 and shift.flatten().tolist() == [0.0] * 4
    with torch.no_grad():
        gain.copy_(torch.tensor([[[0.5, 2.0, -1.0, 1.5]]]))
        shift.copy_(torch.tensor([[[0.1, -0.2, 0.3, 0.0]]]))
    x = torch.tensor([[[1.0, -2.0, 0.5]]])
    pre = (x[0] @ weight[0] + bias[0]).double()[0]
    mean = pre.mean()
    variance = ((pre - mean) ** 2).mean()
    normalised = (pre - mean) / torch.sqrt(variance + 1e-5)
    hidden = torch.relu(normalised * gain[0, 0].double() + shift[0, 0].double())
    by_hand = hidden @ head_weight[0].double() + head_bias[0, 0].double()
    assert torch.allclose(q_values(parameters, TINY, x)[0, 0].double(), by_hand, atol=1e-6)
    assert torch.allclose(features(parameters, TINY, x)[0, 0].double(), hidden, atol=1e-6)
    reference = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )
    with torch.no_grad():
        reference[0].weight.copy_(weight[0].T)
        reference[0].bias.copy_(bias[0, 0])
        reference[1].weight.copy_(gain[0, 0])
        reference[1].bias.copy_(shift[0, 0])
        reference[3].weight.copy_(head_weight[0].T)
        reference[3].bias.copy_(head_bias[0, 0])
        assert torch.allclose(reference(x[0]), q_values(parameters, TINY, x)[0], atol=1e-6)


def _knobs(l2: float) -> Knobs:
    one = torch.ones(1)
    return Knobs(
        gamma=0.9 * one,
        learning_rate=1e-3 * one,
        max_grad_norm=10.0 * one,
        target_update_tau=one,
        l2=l2 * one,
        priority_alpha=torch.zeros(1, dtype=torch.float64),
        priority_beta=torch.zeros(1, dtype=torch.float64),
        priority_epsilon=torch.ones(1, dtype=torch.float64),
        targets={"target_q": torch.ones(1, dtype=torch.bool)},
    )


def test_l2_adds_l2_theta_to_the_gradient_and_not_to_the_logged_loss() -> None:
    parameters = initial_parameters(TINY, torch.tensor([5]), torch.device("cpu"))
    state = LearnerState.start(parameters)
    batch = Batch(
        observations=torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]]),
        actions=torch.tensor([[0, 1]]),
        returns=torch.tensor([[1.0, -1.0]]),
        next_observations=torch.tensor([[[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]]),
        bootstrap_discounts=torch.tensor([[0.9, 0.0]]),
        weights=None,
        slots=torch.tensor([[0, 1]]),
    )
    plain, without = loss_gradient(state, TINY, batch, _knobs(0.0))
    penalised, with_l2 = loss_gradient(state, TINY, batch, _knobs(0.25))
    assert torch.equal(plain.loss, penalised.loss)
    count = TINY.parameter_count()
    expected = without[:, :count] + 0.25 * parameters[:, :count]
    assert torch.allclose(with_l2[:, :count], expected, atol=1e-6)
    assert torch.count_nonzero(with_l2[:, count:]) == 0


def test_layer_norm_members_train_alike_alone_and_together() -> None:
    knobs: list[dict[str, Any]] = [
        {"network": {"layer_norm": True}},
        {"network": {"layer_norm": True}, "l2": 0.01, "bootstrap_target": "q_learning"},
        {"network": {"layer_norm": True}, "bootstrap_target": "double_q", "learning_rate": 3e-3},
    ]
    members = [Member(agent(**knobs[k % 3]), seed=k, hard_limit=1e10) for k in range(6)]
    fleet = run_fleet(CARTPOLE, members, steps=400, log_every=200)
    for index in (1, 5):
        (alone,) = run_fleet(CARTPOLE, [members[index]], steps=400, log_every=200)
        assert same_bits(alone, fleet[index])
    last = fleet[0].records[-1]
    assert 1 <= last["feature_srank"] <= 64
    assert -1.0 <= last["feature_cosine"] <= 1.0
    assert -1.0 <= last["seem"] <= 1.0
    first = fleet[0].records[0]
    assert math.isnan(first["feature_cosine"]) and math.isnan(first["seem"]), "no update yet"


@pytest.mark.parametrize(
    ("knob", "field"),
    [({"network": {"layer_norm": True}}, "agent.network.layer_norm"), ({"l2": 0.1}, "agent.l2")],
)
def test_rllib_refuses_the_stabilisers(tmp_path: Path, knob: dict[str, Any], field: str) -> None:
    spec = {
        "name": "rllib_stabiliser",
        "env": {"id": "CartPole-v1"},
        "agent": {**BASE, "backend": "rllib", **knob},
        "run": {"steps": 200},
    }
    shown = cli("validate", write_spec(tmp_path, spec))
    assert_bad_input(shown, field, "only the fleet and sb3 backends")


def _sb3(layer_norm: bool, l2: float = 0.0) -> TriadDQN:
    spec = agent(network={"width": 4, "depth": 2, "layer_norm": layer_norm}, l2=l2)
    return build_sb3_dqn(spec, CARTPOLE, seed=3)


def test_sb3_layer_norm_network_equals_the_fleets() -> None:
    """SB3's Q-network gains a LayerNorm after each hidden Linear, its linear layers initialised
    as without it; with the fleet member's parameters copied in, both give the same Q."""
    plain, normed = _sb3(False), _sb3(True)
    kinds = [type(m).__name__ for m in normed.q_net.q_net]
    assert kinds == ["Linear", "LayerNorm", "ReLU"] * 2 + ["Linear"]
    plain_linears = [m for m in plain.q_net.q_net if isinstance(m, torch.nn.Linear)]
    normed_linears = [m for m in normed.q_net.q_net if isinstance(m, torch.nn.Linear)]
    for a, b in zip(plain_linears, normed_linears, strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    optimised = {id(p) for group in normed.policy.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in normed.q_net.parameters()} <= optimised
    shape = NetworkShape(inputs=4, actions=2, width=4, depth=2, layer_norm=True)
    parameters = initial_parameters(shape, torch.tensor([7]), torch.device("cpu"))
    network = layers(parameters, shape)
    modules = [m for m in normed.q_net.q_net if not isinstance(m, torch.nn.ReLU)]
    with torch.no_grad():
        for linear, norm, (weight, bias, gain, shift) in zip(
            modules[0:4:2], modules[1:4:2], network[:2], strict=True
        ):
            linear.weight.copy_(weight[0].T)
            linear.bias.copy_(bias[0, 0])
            norm.weight.copy_(gain[0, 0] + 0.25)
            norm.bias.copy_(shift[0, 0] - 0.5)
            gain.add_(0.25)
            shift.sub_(0.5)
        head_weight, head_bias = network[2]
        modules[-1].weight.copy_(head_weight[0].T)
        modules[-1].bias.copy_(head_bias[0, 0])
        observations = torch.tensor([[0.1, -0.4, 0.03, 1.2], [-1.0, 0.5, 0.2, 0.0]])
        expected = q_values(parameters, shape, observations[None])[0]
        assert torch.allclose(normed.q_net(observations), expected, atol=1e-6)
    actions = torch.tensor([1, 0])
    sb3_gradients = sb3_value_gradients(normed.q_net, observations, actions)
    fleet_gradients = value_gradients(parameters, shape, observations[None], actions[None])[0]
    # the two order the parameters differently; the tangent kernel G G^T does not see order
    kernel = fleet_gradients @ fleet_gradients.T
    assert torch.allclose(sb3_gradients @ sb3_gradients.T, kernel, atol=1e-5)


def test_sb3_l2_penalty_by_hand() -> None:
    """l2 / 2 ||theta||^2 over every weight and bias (LayerNorm's too); gradient l2 theta."""
    model = _sb3(True, l2=0.3)
    assert model.l2 == 0.3
    parameters = list(model.q_net.parameters())
    assert len(parameters) == 3 * 2 + 2 * 2  # three Linear, two LayerNorm: weight and bias each
    squares = sum(float(p.detach().double().square().sum()) for p in parameters)
    penalty = l2_penalty(model.q_net, 0.3)
    assert penalty.item() == pytest.approx(0.15 * squares, rel=1e-6)
    gradients = torch.autograd.grad(penalty, parameters)
    for parameter, gradient in zip(parameters, gradients, strict=True):
        assert torch.allclose(gradient, 0.3 * parameter, atol=1e-7)


def test_sb3_trains_with_the_stabilisers() -> None:
    stabilised = agent(network={"layer_norm": True}, l2=0.01, backend="sb3")
    trace = run_sb3_dqn(stabilised, CARTPOLE, seed=0, steps=400, log_every=200, hard_limit=1e10)
    assert [r["step"] for r in trace.records] == [0, 200, 400]
    first, last = trace.records[0], trace.records[-1]
    assert math.isfinite(last["loss"]) and math.isfinite(last["param_norm"])
    assert math.isnan(first["feature_cosine"]) and math.isnan(first["seem"]), "no update yet"
    assert 1 <= first["feature_srank"] <= 64 and 1 <= last["feature_srank"] <= 64
    assert -1.0 <= last["feature_cosine"] <= 1.0 and -1.0 <= last["seem"] <= 1.0
