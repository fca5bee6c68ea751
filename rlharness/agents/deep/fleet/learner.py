"""The fleet's DQN update, member by member in one computation, in the order it runs.

For every member k (Mnih et al. 2015; van Hasselt et al. 2016, 2018):

    y_i = R^(n)_i + gamma_k^m_i (1 - terminated_i) bootstrap_k(s'_i)        (td_targets)
    L_k = 1/B sum_i w_i Huber(Q_k(s_i, a_i) - y_i)                            (loss)
    g_k = grad L_k, scaled to norm <= max_grad_norm_k                       (clip)
    theta_k <- Adam(theta_k, g_k; learning_rate_k)                           (adam)
    every target_update_period_k env steps: theta-_k <- tau_k theta_k + (1 - tau_k) theta-_k

with bootstrap_k one of the four targets of `common.bootstrap_values`,
w_i the prioritised-replay weights (1 for uniform replay, Schaul et al.
2016) and m_i the steps summed. With an L2 penalty l2_k > 0 (PQN, Gallici et
al. 2025) the minimised loss is L_k + l2_k / 2 ||theta_k||^2 over every weight
and bias (LayerNorm's included), so its gradient gains l2_k theta_k before
clipping; the logged loss stays the TD loss L_k. The members' losses are
summed before autograd, so member k's gradient is exactly its own; clipping
and Adam act row by row.

Knobs that are numbers (gamma, learning rate, tau, clip, exponents, ...)
are per-member tensors; `update` changes only the members in ``updating``,
which is how members with different train frequencies, learning starts and
gradient steps, and members frozen after hard divergence, share one fleet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional

from rlharness.agents.deep.common import bootstrap_values
from rlharness.agents.deep.fleet.networks import NetworkShape, forward, layers, q_values
from rlharness.agents.deep.fleet.replay import Batch

ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
"""torch.optim.Adam's defaults, which SB3's DQN uses."""
CLIP_EPSILON = 1e-6
"""torch.nn.utils.clip_grad_norm_'s: scale = max_norm / (norm + 1e-6), at most 1."""


@dataclass(frozen=True)
class Knobs:
    """The per-member numbers of the update, each a [K] tensor on the fleet's device.

    ``targets`` maps each bootstrap target present to the bool mask of its members.
    """

    gamma: torch.Tensor
    learning_rate: torch.Tensor
    max_grad_norm: torch.Tensor
    target_update_tau: torch.Tensor
    l2: torch.Tensor
    priority_alpha: torch.Tensor
    priority_beta: torch.Tensor
    priority_epsilon: torch.Tensor
    targets: dict[str, torch.Tensor]


@dataclass
class LearnerState:
    """Online and target parameter rows [K, row], Adam's moments and update counts [K]."""

    online: torch.Tensor
    target: torch.Tensor
    first_moment: torch.Tensor
    second_moment: torch.Tensor
    steps: torch.Tensor

    @classmethod
    def start(cls, parameters: torch.Tensor) -> LearnerState:
        """Fresh Adam state; the target network starts as a copy of the online one."""
        members = parameters.shape[0]
        return cls(
            parameters.clone(),
            parameters.clone(),
            torch.zeros_like(parameters),
            torch.zeros_like(parameters),
            torch.zeros(members, dtype=torch.float32, device=parameters.device),
        )


@dataclass(frozen=True)
class UpdateResult:
    """What one update measured per member: loss [K], batch max |Q| [K], TD errors [K, B]."""

    loss: torch.Tensor
    max_abs_q: torch.Tensor
    td_errors: torch.Tensor


def td_targets(
    state: LearnerState, shape: NetworkShape, batch: Batch, knobs: Knobs
) -> torch.Tensor:
    """y = R^(n) + gamma^m (1 - terminated) bootstrap(s'), [K, B], without gradients."""
    members, size = batch.returns.shape
    next_observations = batch.next_observations
    with torch.no_grad():
        needs_online = any(name != "target_q" for name in knobs.targets)
        needs_target = any(name != "q_learning" for name in knobs.targets)
        online_next = q_values(state.online, shape, next_observations) if needs_online else None
        target_next = q_values(state.target, shape, next_observations) if needs_target else None
        bootstrap = torch.zeros(members, size, device=batch.returns.device)
        for name, chosen in knobs.targets.items():
            values = bootstrap_values(
                name,
                None if online_next is None else online_next.reshape(members * size, -1),
                None if target_next is None else target_next.reshape(members * size, -1),
            ).reshape(members, size)
            bootstrap = (
                values
                if len(knobs.targets) == 1
                else torch.where(chosen[:, None], values, bootstrap)
            )
        return batch.returns + batch.bootstrap_discounts * bootstrap


def update(
    state: LearnerState,
    shape: NetworkShape,
    batch: Batch,
    knobs: Knobs,
    updating: list[int],
) -> UpdateResult:
    """One gradient step of the members listed in ``updating``; all members' losses.

    The online parameters change in place (views of them stay valid).
    """
    result, gradient = loss_gradient(state, shape, batch, knobs)
    norm = torch.linalg.vector_norm(gradient, dim=1)
    scale = (knobs.max_grad_norm / (norm + CLIP_EPSILON)).clamp(max=1.0)
    adam(state, gradient.mul_(scale[:, None]), knobs.learning_rate, updating)
    return result


def loss_gradient(
    state: LearnerState, shape: NetworkShape, batch: Batch, knobs: Knobs
) -> tuple[UpdateResult, torch.Tensor]:
    """What the update measures, and each member's gradient row [K, row] of its TD loss plus
    its L2 penalty l2 / 2 ||theta||^2 (zero on the padding), before clipping."""
    targets = td_targets(state, shape, batch, knobs)
    online = state.online.detach().requires_grad_()
    network = layers(online, shape)
    q = forward(network, batch.observations)
    chosen = torch.gather(q, 2, batch.actions[..., None]).squeeze(2)
    huber = functional.smooth_l1_loss(chosen, targets, reduction="none")
    if batch.weights is not None:
        huber = huber * batch.weights
    loss = huber.mean(dim=1)
    tensors = [tensor for layer in network for tensor in layer]
    members = online.shape[0]
    gradients = torch.autograd.grad(loss.sum() + l2_penalty(tensors, knobs.l2), tensors)
    padding = online.shape[1] - shape.parameter_count()
    gradient = torch.cat(
        [g.reshape(members, -1) for g in gradients] + [online.new_zeros(members, padding)], dim=1
    )
    result = UpdateResult(
        loss.detach(), q.detach().abs().amax(dim=(1, 2)), (targets - chosen).detach()
    )
    return result, gradient


def l2_penalty(tensors: list[torch.Tensor], l2: torch.Tensor) -> torch.Tensor:
    """sum_k l2_k / 2 ||theta_k||^2 over every member's parameter ``tensors`` (each [K, ...]);
    0 without a penalty."""
    if not bool((l2 > 0).any()):
        return l2.new_zeros(())
    members = l2.shape[0]
    squares = torch.stack([t.square().reshape(members, -1).sum(dim=1) for t in tensors])
    return (0.5 * l2 * squares.sum(dim=0)).sum()


def adam(
    state: LearnerState, gradient: torch.Tensor, learning_rate: torch.Tensor, updating: list[int]
) -> None:
    """torch.optim.Adam's step (Kingma & Ba 2015) on the rows of the members updating.

    torch's fused Adam kernel, one row per member with its own step count, run
    with learning rate 1 on a zero "parameter" to get each row's step
    -m_hat / (sqrt(v_hat) + eps), which is then scaled by the member's own
    learning rate. Rows are padded to whole vectors (`NetworkShape.row_length`),
    so each element takes the same path in the kernel whatever row it is in, and
    members at the same step count run as one tensor.
    """
    step = torch.zeros_like(state.online)
    members = state.online.shape[0]
    whole = len(updating) == members and bool((state.steps == state.steps[0]).all())
    if whole:
        state.steps += 1.0
    else:
        state.steps[updating] += 1.0

    def rows(tensor: torch.Tensor) -> list[torch.Tensor]:
        if whole:  # one call on the whole tensor: every row at the same step count
            return [tensor[0] if tensor.dim() == 1 else tensor]
        unbound = tensor.unbind(0)
        return [unbound[k] for k in updating]

    torch._fused_adam_(
        rows(step),
        rows(gradient),
        rows(state.first_moment),
        rows(state.second_moment),
        [],
        rows(state.steps),
        lr=1.0,
        beta1=ADAM_BETAS[0],
        beta2=ADAM_BETAS[1],
        weight_decay=0.0,
        eps=ADAM_EPSILON,
        amsgrad=False,
        maximize=False,
    )
    state.online.add_(step.mul_(learning_rate[:, None]))


def update_target(state: LearnerState, tau: torch.Tensor, members: torch.Tensor | None) -> None:
    """theta- <- tau theta + (1 - tau) theta- for the members given ([K] bool; None: all)."""
    rate = tau[:, None]
    blended = state.target * (1.0 - rate) + state.online * rate
    state.target = (
        blended if members is None else torch.where(members[:, None], blended, state.target)
    )
