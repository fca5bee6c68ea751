"""SEEM (Yue et al. 2023) on kernel matrices with known eigenvalues, and the per-sample
gradients it is built from."""

from __future__ import annotations

import math

import pytest
import torch

from rlharness.agents.deep.diagnostics import self_excitation
from rlharness.agents.deep.fleet import run
from rlharness.agents.deep.fleet.networks import (
    NetworkShape,
    initial_parameters,
    q_values,
    value_gradients,
)
from rlharness.agents.deep.fleet.replay import Batch
from rlharness.agents.deep.fleet.run import LastTransitions

GAMMA = 0.9


def _rotation(angle: float) -> torch.Tensor:
    cos, sin = math.cos(angle), math.sin(angle)
    return torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)


def test_seem_of_a_triangular_kernel() -> None:
    """G = R orthogonal, G' = M R: A = (D M - I) / 2 has the eigenvalues of a triangular matrix.

    M sends s_1 to s_2 and s_2 to 2 s_2 (the w -> 2w example): with D = gamma I,
    A = [[-1, gamma], [0, 2 gamma - 1]] / 2, so SEEM = (2 gamma - 1) / ||2A||_F; with the
    second transition terminal (D = diag(gamma, 0)), A = [[-1, gamma], [0, -1]] / 2.
    """
    move = torch.tensor([[0.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    gradients = torch.stack([_rotation(0.3), _rotation(1.1), 7.0 * _rotation(0.3)])
    next_gradients = move @ gradients
    discounts = torch.tensor([[GAMMA, GAMMA], [GAMMA, 0.0], [GAMMA, GAMMA]], dtype=torch.float64)
    seem = self_excitation(gradients, next_gradients, discounts)
    bootstrapping = (2 * GAMMA - 1) / math.sqrt(1 + GAMMA**2 + (2 * GAMMA - 1) ** 2)
    terminal = -1.0 / math.sqrt(2 + GAMMA**2)
    assert seem.tolist() == pytest.approx([bootstrapping, terminal, bootstrapping], abs=1e-12)
    alone = [
        self_excitation(*(t[k : k + 1] for t in (gradients, next_gradients, discounts)))
        for k in range(3)
    ]
    assert [a.item() for a in alone] == seem.tolist()


@pytest.mark.parametrize(("gamma", "sign"), [(0.4, -1.0), (0.6, 1.0)])
def test_seem_changes_sign_where_w_to_2w_diverges(gamma: float, sign: float) -> None:
    """One transition x = 1 -> x' = 2 on one weight: A = 2 gamma - 1, positive iff gamma > 1/2,
    where semi-gradient TD on it diverges (Sutton & Barto 2018, section 11.2)."""
    one = torch.ones(1, 1, 1, dtype=torch.float64)
    seem = self_excitation(one, 2.0 * one, torch.full((1, 1), gamma, dtype=torch.float64))
    assert seem.item() == pytest.approx(sign, abs=1e-12)


def test_seem_of_zero_and_broken_gradients() -> None:
    """Three equal gradients: A = (gamma - 1) J has eigenvalues 3 (gamma - 1), 0, 0, so SEEM
    is 0 (no direction excites itself, none decays); a zero kernel gives 0, an infinite
    gradient NaN."""
    zeros = torch.zeros(2, 3, 4)
    broken = torch.ones(2, 3, 4)
    broken[1, 2, 0] = math.inf
    discounts = torch.full((2, 3), GAMMA)
    assert self_excitation(zeros, zeros, discounts).tolist() == [0.0, 0.0]
    seem = self_excitation(broken, broken, discounts)
    assert seem[0].item() == pytest.approx(0.0, abs=1e-12) and math.isnan(seem[1].item())


def test_value_gradients_of_a_linear_head_by_hand() -> None:
    """With no hidden layer Q(s, a) = x^T W[:, a] + b[a]: the gradient is x in column a of W
    (the row holds W row-major, [fan_in, fan_out]) and 1 in b[a]."""
    shape = NetworkShape(inputs=3, actions=2, width=4, depth=0)
    parameters = initial_parameters(shape, torch.tensor([0, 1]), torch.device("cpu"))
    observations = torch.tensor([[[1.0, -2.0, 0.5]], [[0.0, 3.0, 1.0]]])
    actions = torch.tensor([[1], [0]])
    gradients = value_gradients(parameters, shape, observations, actions)
    for member in range(2):
        expected = torch.zeros(3, 2)
        expected[:, actions[member, 0]] = observations[member, 0]
        bias = torch.zeros(2)
        bias[actions[member, 0]] = 1.0
        assert torch.equal(gradients[member, 0], torch.cat([expected.flatten(), bias]))


@pytest.mark.parametrize("layer_norm", [False, True])
def test_value_gradients_match_autograd_and_do_not_depend_on_the_fleet(layer_norm: bool) -> None:
    shape = NetworkShape(inputs=4, actions=3, width=8, depth=2, layer_norm=layer_norm)
    parameters = initial_parameters(shape, torch.arange(5), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    observations = torch.randn(5, 6, 4, generator=generator)
    actions = torch.randint(0, 3, (5, 6), generator=generator)
    gradients = value_gradients(parameters, shape, observations, actions)
    row = parameters[2:3].clone().requires_grad_()
    value = q_values(row, shape, observations[2:3, 4:5])[0, 0, actions[2, 4]]
    (reference,) = torch.autograd.grad(value, row)
    assert torch.allclose(gradients[2, 4], reference[0, : shape.parameter_count()], atol=1e-6)
    alone = value_gradients(parameters[2:3], shape, observations[2:3], actions[2:3])
    assert torch.equal(alone[0], gradients[2])


@pytest.mark.parametrize(("gamma", "sign"), [(0.6, -1.0), (0.7, 1.0)])
def test_fleet_seem_of_one_transition_by_hand(gamma: float, sign: float) -> None:
    """Q(s) = w x + b on one transition x = 1 -> x' = 2: G = [1, 1], G' = [2, 1], so
    A = (gamma (2 + 1) - (1 + 1)) / 2 turns positive at gamma = 2/3; a member not yet
    updated logs NaN."""
    shape = NetworkShape(inputs=1, actions=1, width=1, depth=0)
    parameters = initial_parameters(shape, torch.tensor([0, 1]), torch.device("cpu"))
    ones = torch.ones(2, 1, 1)
    batch = Batch(
        observations=ones,
        actions=torch.zeros(2, 1, dtype=torch.int64),
        returns=torch.zeros(2, 1),
        next_observations=2.0 * ones,
        bootstrap_discounts=torch.full((2, 1), gamma),
        weights=None,
        slots=torch.zeros(2, 1, dtype=torch.int64),
    )
    transitions = LastTransitions(2, torch.device("cpu"))
    assert math.isnan(transitions.self_excitation(parameters, shape)[0])
    transitions.keep(batch, torch.tensor([True, False]))
    seem = transitions.self_excitation(parameters, shape)
    assert seem[0] == pytest.approx(sign, abs=1e-12) and math.isnan(seem[1])


def test_fleet_seem_in_chunks_of_members_equals_all_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shape = NetworkShape(inputs=4, actions=3, width=8, depth=2, layer_norm=True)
    parameters = initial_parameters(shape, torch.arange(5), torch.device("cpu"))
    generator = torch.Generator().manual_seed(1)
    batch = Batch(
        observations=torch.randn(5, 40, 4, generator=generator),
        actions=torch.randint(0, 3, (5, 40), generator=generator),
        returns=torch.zeros(5, 40),
        next_observations=torch.randn(5, 40, 4, generator=generator),
        bootstrap_discounts=torch.full((5, 40), GAMMA),
        weights=None,
        slots=torch.zeros(5, 40, dtype=torch.int64),
    )
    transitions = LastTransitions(5, torch.device("cpu"))
    transitions.keep(batch, torch.ones(5, dtype=torch.bool))
    at_once = transitions.self_excitation(parameters, shape)
    monkeypatch.setattr(run, "SEEM_BYTES", 1)
    one_by_one = transitions.self_excitation(parameters, shape)
    assert at_once.tobytes() == one_by_one.tobytes()
    assert all(-1.0 <= value <= 1.0 for value in at_once)
