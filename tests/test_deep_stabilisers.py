"""LayerNorm and the L2 penalty as fleet knobs, and the early-warning diagnostics."""

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
)
from rlharness.agents.deep.fleet.replay import Batch
from rlharness.agents.deep.fleet.run import Member, run_fleet
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
def test_sb3_refuses_the_fleet_only_knobs(tmp_path: Path, knob: dict[str, Any], field: str) -> None:
    spec = {
        "name": "sb3_stabiliser",
        "env": {"id": "CartPole-v1"},
        "agent": {**BASE, "backend": "sb3", **knob},
        "run": {"steps": 200},
    }
    shown = cli("validate", write_spec(tmp_path, spec))
    assert_bad_input(shown, field, "only the fleet backend")
