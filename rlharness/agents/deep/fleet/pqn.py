"""PQN as a fleet: many members, each with its own parallel envs, no target network, no replay.

Gallici et al. (ICLR 2025, "Simplifying Deep Temporal Difference Learning"),
following CleanRL's pqn.py, for every member k at once. One iteration:

1. act epsilon-greedily in the member's ``num_envs`` envs for ``num_steps`` steps;
2. Peng's Q(lambda) returns, backwards over the rollout (`q_lambda_returns`):
       R_t = r_t + gamma (1 - terminated_t) [(1 - lambda) max_a Q(s'_t, a) + lambda R_{t+1}]
   with R_{t+1} replaced by max_a Q(s'_t, a) where the episode ended at t or t is the
   rollout's last step (the paper's Eq. 9 and Algorithm 1);
3. ``update_epochs`` passes over the rollout in ``num_minibatches`` minibatches, each
       L_k = mean_i (Q_k(s_i, a_i) - R_i)^2,  g_k clipped to norm max_grad_norm_k,
       theta_k <- RAdam(theta_k, g_k; learning_rate_k, annealed linearly to 0 if asked).

Steps count env steps of one member summed over its envs (CleanRL's
``global_step``): an iteration is ``num_envs * num_steps`` of them, and
``run.steps // (num_envs * num_steps)`` iterations run. A member logs
`common.METRICS` at step 0 and after each iteration that passes a multiple of
``log_every`` (and the last one), with the step reached, and is judged and
frozen by `common.hard_divergence` as a DQN fleet member is.

Independence: member k's env j is seeded from ``k``'s seed alone (`env_seeds`), its
exploration and minibatch orders come from its own streams, its loss is summed
with the others' only so that autograd returns each member's own gradient, and
RAdam and clipping act row by row, so a member's metrics are the same bits
whatever else is in its fleet.

Where CleanRL differs: it counts a time-limit truncation as a termination (no
bootstrap); here a truncated step bootstraps from its true final observation,
as the DQN fleet's replay does. CleanRL's versions before its PR #494 also let
R_{t+1} of the next episode leak into R_t across episode ends; this does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces

from rlharness.agents.deep.common import (
    DeepTrace,
    checkpoint_due,
    probe_observations,
)
from rlharness.agents.deep.diagnostics import SEEM_TRANSITIONS, feature_cosine
from rlharness.agents.deep.fleet import streams
from rlharness.agents.deep.fleet.envs import make_batched_env
from rlharness.agents.deep.fleet.learner import CLIP_EPSILON, UpdateResult, l2_penalty
from rlharness.agents.deep.fleet.modules import state_dict_bytes
from rlharness.agents.deep.fleet.networks import (
    NetworkShape,
    features,
    forward,
    initial_parameters,
    layers,
    q_values,
)
from rlharness.agents.deep.fleet.run import (
    BatchStatistics,
    divergence_reasons,
    greedy_evaluation,
    log_members,
    member_measures,
    member_self_excitation,
)
from rlharness.agents.deep.overestimation import GreedyEpisodes
from rlharness.live import RecordSink
from rlharness.spec import EnvSpec, PQNAgentSpec


@dataclass(frozen=True)
class PQNMember:
    """One member: a grid point's agent, one of its seeds, its hard-divergence threshold, and
    where its records go as they are logged."""

    agent: PQNAgentSpec
    seed: int
    hard_limit: float
    on_record: RecordSink | None = None


class PQNFleetKey(NamedTuple):
    """What members of one PQN fleet share: shapes, the update schedule, run length, logging
    and checkpoint periods, device.

    The update schedule (envs, rollout, minibatches, epochs) is shared so that every
    member takes its RAdam steps together; gamma, lambda, step sizes, clipping,
    exploration, reward clip and evaluation may differ member by member.
    """

    env_id: str
    env_kwargs: str
    width: int
    depth: int
    layer_norm: bool
    num_envs: int
    num_steps: int
    num_minibatches: int
    update_epochs: int
    probe_states: int
    steps: int
    log_every: int
    device: str
    checkpoint_every: int | None = None


def fleet_key(
    env: EnvSpec,
    agent: PQNAgentSpec,
    steps: int,
    log_every: int,
    device: str,
    checkpoint_every: int | None = None,
) -> PQNFleetKey:
    """The PQN fleet a grid point's seeds join."""
    network = agent.network
    return PQNFleetKey(
        env.id,
        repr(sorted(env.kwargs.items())),
        network.width,
        network.depth,
        network.layer_norm,
        agent.num_envs,
        agent.num_steps,
        agent.num_minibatches,
        agent.update_epochs,
        agent.probe_states,
        steps,
        log_every,
        device,
        checkpoint_every,
    )


def env_seeds(seed: int, num_envs: int) -> list[int]:
    """The seeds of a member's envs: seed * num_envs + j, distinct across members of a fleet
    (CleanRL's seed + j would give two members with adjacent seeds the same env)."""
    return [seed * num_envs + j for j in range(num_envs)]


class Rollout(NamedTuple):
    """One rollout of every member, [K, T, E, ...]: s_t, a_t, clipped r_t, whether s'_t is
    terminal, whether the episode ended at t (terminated or truncated), and the true s'_t."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    ended: torch.Tensor
    next_observations: torch.Tensor


def q_lambda_returns(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    ended: torch.Tensor,
    next_values: torch.Tensor,
    gamma: torch.Tensor,
    q_lambda: torch.Tensor,
) -> torch.Tensor:
    """Peng's Q(lambda) returns R_t [K, T, E] of a rollout, computed backwards (PQN, Eq. 9).

    ``next_values`` is max_a Q(s'_t, a) [K, T, E]; ``gamma`` and ``q_lambda`` are per member
    [K]. lambda = 0 gives one-step Q-learning targets, lambda = 1 the discounted rewards to
    the episode's end, bootstrapped where the rollout or a time limit cuts it.
    """
    discount, trace = gamma[:, None], q_lambda[:, None]
    returns = torch.empty_like(rewards)
    following = next_values[:, -1]
    for t in reversed(range(rewards.shape[1])):
        tail = torch.where(ended[:, t], next_values[:, t], following)
        mixed = (1.0 - trace) * next_values[:, t] + trace * tail
        returns[:, t] = rewards[:, t] + discount * (~terminated[:, t]) * mixed
        following = returns[:, t]
    return returns


def loss_gradient(
    parameters: torch.Tensor,
    shape: NetworkShape,
    observations: torch.Tensor,
    actions: torch.Tensor,
    returns: torch.Tensor,
    l2: torch.Tensor,
) -> tuple[UpdateResult, torch.Tensor]:
    """Each member's mean squared error (Q(s, a) - R)^2 on its minibatch [K, M] and the
    gradient row [K, row] (zero on the padding) of it plus l2_k / 2 ||theta_k||^2."""
    online = parameters.detach().requires_grad_()
    network = layers(online, shape)
    q = forward(network, observations)
    chosen = torch.gather(q, 2, actions[..., None]).squeeze(2)
    loss = (chosen - returns).square().mean(dim=1)
    tensors = [tensor for layer in network for tensor in layer]
    members = online.shape[0]
    gradients = torch.autograd.grad(loss.sum() + l2_penalty(tensors, l2), tensors)
    padding = online.shape[1] - shape.parameter_count()
    gradient = torch.cat(
        [g.reshape(members, -1) for g in gradients] + [online.new_zeros(members, padding)], dim=1
    )
    result = UpdateResult(
        loss.detach(), q.detach().abs().amax(dim=(1, 2)), (returns - chosen).detach()
    )
    return result, gradient


class RowwiseRAdam:
    """torch.optim.RAdam (Liu et al. 2020, CleanRL's optimiser) with a step size per member.

    RAdam runs with step size 1 on a zeroed copy of the rows, which yields each
    row's step; the member's own step size then scales it (RAdam's step is linear in
    it without weight decay). Every operation is elementwise on rows padded to whole
    SIMD vectors, and all members share the step count, so rows stay independent.
    """

    def __init__(self, parameters: torch.Tensor) -> None:
        self.step_direction = torch.zeros_like(parameters)
        self.optimizer = torch.optim.RAdam([self.step_direction], lr=1.0, foreach=False)

    def step(
        self, parameters: torch.Tensor, gradient: torch.Tensor, learning_rate: torch.Tensor
    ) -> None:
        """theta_k <- theta_k + learning_rate_k * RAdam's step for gradient row k, in place."""
        self.step_direction.zero_()
        self.step_direction.grad = gradient
        self.optimizer.step()
        parameters.add_(self.step_direction * learning_rate[:, None])


class PQNFleet:
    """The state of a PQN fleet and its per-member bookkeeping."""

    def __init__(
        self,
        env: EnvSpec,
        members: list[PQNMember],
        steps: int,
        log_every: int,
        device: str,
        checkpoint_every: int | None = None,
    ) -> None:
        self.members, self.steps, self.log_every = members, steps, log_every
        self.checkpoint_every = checkpoint_every
        self.device = torch.device(device)
        agents = [m.agent for m in members]
        first = agents[0]
        seeds = [m.seed for m in members]
        self.count, self.num_envs, self.num_steps = len(members), first.num_envs, first.num_steps
        self.update_epochs = first.update_epochs
        self.batch_size = self.num_envs * self.num_steps
        self.minibatch_size = self.batch_size // first.num_minibatches
        self.iterations = steps // self.batch_size
        self.envs = make_batched_env(
            env, [s for seed in seeds for s in env_seeds(seed, self.num_envs)]
        )
        self.eval_envs = make_batched_env(env, seeds, evaluation=True)
        assert isinstance(self.envs.observation_space, spaces.Box)
        self.observation_shape = self.envs.observation_space.shape
        network = first.network
        inputs = int(np.prod(self.observation_shape))
        self.n_actions = self.envs.n_actions
        self.shape = NetworkShape(
            inputs, self.n_actions, network.width, network.depth, network.layer_norm
        )
        seed_tensor = torch.tensor(seeds)
        self.parameters = initial_parameters(self.shape, seed_tensor, self.device)
        self.optimizer = RowwiseRAdam(self.parameters)

        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=self.device)

        self.gamma = column([a.gamma for a in agents])
        self.q_lambda = column([a.q_lambda for a in agents])
        self.learning_rate = column([a.learning_rate for a in agents])
        self.anneal = column([float(a.anneal_lr) for a in agents])
        self.max_grad_norm = column([a.max_grad_norm for a in agents])
        self.l2 = column([a.l2 for a in agents])
        self.reward_clip = torch.tensor(
            [math.inf if a.reward_clip is None else a.reward_clip for a in agents],
            dtype=torch.float64,
        )
        self.epsilon_initial = np.array([a.exploration.initial_epsilon for a in agents])
        self.epsilon_final = np.array([a.exploration.final_epsilon for a in agents])
        self.epsilon_fraction = np.array([a.exploration.fraction for a in agents])
        self.eval_episodes = np.array([a.eval_episodes for a in agents])
        self.exploration_keys = streams.member_keys(seed_tensor, streams.Stream.EXPLORATION)
        self.minibatch_keys = streams.member_keys(seed_tensor, streams.Stream.MINIBATCH)
        probes = {seed: probe_observations(env, first.probe_states, seed) for seed in seeds}
        self.probes = torch.from_numpy(np.stack([probes[s] for s in seeds])).to(self.device)
        self.alive = np.ones(self.count, dtype=bool)
        self.traces = [DeepTrace(on_record=m.on_record) for m in members]
        self.statistics = BatchStatistics(self.count, self.minibatch_size, self.device)
        self.last_rollout: Rollout | None = None

    def epsilon(self, global_step: int) -> np.ndarray:
        """CleanRL's linear schedule: initial to final over fraction * steps, per member."""
        duration = self.epsilon_fraction * self.steps
        decayed = self.epsilon_initial + (self.epsilon_final - self.epsilon_initial) * (
            global_step / duration
        )
        return np.where(global_step > duration, self.epsilon_final, decayed)

    def rollout(self, iteration: int, observations: torch.Tensor) -> tuple[Rollout, torch.Tensor]:
        """``num_steps`` epsilon-greedy steps in every member's envs; the next observations.

        Env step (iteration, t) of member env j uses draws 2i and 2i + 1 of the member's
        exploration stream, i = (iteration * num_steps + t) * num_envs + j: explore or not,
        and which random action.
        """
        members, envs, length = self.count, self.num_envs, self.num_steps
        first = 2 * iteration * length * envs
        counters = torch.arange(first, first + 2 * length * envs).expand(members, -1)
        draws = streams.uniform(self.exploration_keys, counters).numpy()
        draws = draws.reshape(members, length, envs, 2)
        random_actions = (draws[..., 1] * self.n_actions).astype(np.int64)
        steps: list[tuple[torch.Tensor, ...]] = []
        for t in range(length):
            global_step = (iteration * length + t + 1) * envs
            with torch.no_grad():
                greedy = q_values(self.parameters, self.shape, observations).argmax(dim=2)
            explore = draws[:, t, :, 0] < self.epsilon(global_step)[:, None]
            actions = np.where(explore, random_actions[:, t], greedy.cpu().numpy())
            result = self.envs.step(actions.reshape(-1))
            rewards = torch.from_numpy(result.rewards).view(members, envs)
            limit = self.reward_clip[:, None]
            clipped = torch.minimum(torch.maximum(rewards, -limit), limit)
            steps.append(
                (
                    observations,
                    torch.from_numpy(actions).to(self.device),
                    clipped.to(torch.float32).to(self.device),
                    self._member_view(result.terminated),
                    self._member_view(result.terminated | result.truncated),
                    self._member_view(result.final_observations),
                )
            )
            observations = self._member_view(result.observations)
        stacked = Rollout(*(torch.stack(parts, dim=1) for parts in zip(*steps, strict=True)))
        return stacked, observations

    def _member_view(self, array: np.ndarray) -> torch.Tensor:
        """An array over the fleet's K * E envs as a [K, E, ...] tensor on the device."""
        tensor = torch.from_numpy(array).to(self.device)
        return tensor.view(self.count, self.num_envs, *tensor.shape[1:])

    def returns(self, rollout: Rollout) -> torch.Tensor:
        """`q_lambda_returns` of the rollout with max_a Q(s'_t, a) under the current network."""
        members, length, envs = rollout.rewards.shape
        with torch.no_grad():
            successors = rollout.next_observations.reshape(members, length * envs, -1)
            next_values = q_values(self.parameters, self.shape, successors).amax(dim=2)
        return q_lambda_returns(
            rollout.rewards,
            rollout.terminated,
            rollout.ended,
            next_values.view(members, length, envs),
            self.gamma,
            self.q_lambda,
        )

    def learn(self, iteration: int, rollout: Rollout, returns: torch.Tensor) -> None:
        """``update_epochs`` passes of minibatch steps, each pass in an order drawn from every
        member's minibatch stream (draws iteration * update_epochs + epoch of length B)."""
        members, size = self.count, self.batch_size
        observations = rollout.observations.reshape(members, size, *self.observation_shape)
        actions = rollout.actions.reshape(members, size)
        targets = returns.reshape(members, size)
        fraction = 1.0 - iteration / self.iterations
        learning_rate = self.learning_rate * (1.0 - self.anneal * (1.0 - fraction))
        rows = torch.arange(members, device=self.device)[:, None]
        everyone = torch.ones(members, dtype=torch.bool, device=self.device)
        for epoch in range(self.update_epochs):
            first = (iteration * self.update_epochs + epoch) * size
            counters = torch.arange(first, first + size).expand(members, -1)
            order = streams.uniform(self.minibatch_keys, counters).argsort(dim=1, stable=True)
            for start in range(0, size, self.minibatch_size):
                chosen = order[:, start : start + self.minibatch_size].to(self.device)
                result, gradient = loss_gradient(
                    self.parameters,
                    self.shape,
                    observations[rows, chosen],
                    actions[rows, chosen],
                    targets[rows, chosen],
                    self.l2,
                )
                norm = torch.linalg.vector_norm(gradient, dim=1)
                scale = (self.max_grad_norm / (norm + CLIP_EPSILON)).clamp(max=1.0)
                self.optimizer.step(self.parameters, gradient.mul_(scale[:, None]), learning_rate)
                self.statistics.add(everyone, result)
                non_finite = self.alive & ~torch.isfinite(result.loss).cpu().numpy()
                if non_finite.any():
                    self.log((iteration + 1) * size, non_finite, loss_finite=False)

    def feature_cosines(self) -> np.ndarray:
        """`diagnostics.feature_cosine` on the last rollout's bootstrapping transitions."""
        if self.last_rollout is None:
            return np.full(self.count, math.nan)
        rollout = self.last_rollout
        flat = (self.count, self.batch_size, *self.observation_shape)
        phi = features(self.parameters, self.shape, rollout.observations.reshape(flat))
        phi_next = features(self.parameters, self.shape, rollout.next_observations.reshape(flat))
        bootstraps = ~rollout.terminated.reshape(self.count, self.batch_size)
        return feature_cosine(phi, phi_next, bootstraps).cpu().numpy()

    def self_excitation(self) -> np.ndarray:
        """`member_self_excitation` on the first `SEEM_TRANSITIONS` one-step transitions of
        the last rollout (SEEM is defined for the one-step target; each of them is a link of
        the Q(lambda) return)."""
        if self.last_rollout is None:
            return np.full(self.count, math.nan)
        rollout = self.last_rollout

        def head(tensor: torch.Tensor) -> torch.Tensor:
            flat = tensor.reshape(self.count, self.batch_size, *tensor.shape[3:])
            return flat[:, :SEEM_TRANSITIONS]

        discounts = self.gamma[:, None] * (~head(rollout.terminated)).to(torch.float32)
        seem = member_self_excitation(
            self.parameters,
            self.shape,
            head(rollout.observations),
            head(rollout.actions),
            head(rollout.next_observations),
            discounts,
        )
        return seem.cpu().numpy()

    def log(self, step: int, members: np.ndarray, loss_finite: bool = True) -> None:
        """A record for each member in the mask; members that hard-diverged are frozen."""
        with torch.no_grad():
            cosine = self.feature_cosines()
        seem = self.self_excitation()
        batch = self.statistics.pop(members)
        measured, parameters = member_measures(
            self.parameters, self.shape, self.probes, batch, self.epsilon(step), cosine, seem
        )
        limits = [member.hard_limit for member in self.members]
        reasons = divergence_reasons(members, loss_finite, parameters, measured, limits)
        healthy = np.zeros(self.count, dtype=bool)
        healthy[[k for k, reason in reasons.items() if reason is None]] = True
        returns = np.full(self.count, math.nan)
        greedy: list[dict[str, float]] = [{} for _ in range(self.count)]
        if healthy.any():
            episodes = [GreedyEpisodes(m.agent.gamma, m.agent.reward_clip) for m in self.members]
            returns, greedy = greedy_evaluation(
                self.eval_envs, self.parameters, self.shape, healthy, self.eval_episodes, episodes
            )
        log_members(step, reasons, measured, returns, greedy, self.traces, self.alive)
        self.save(step, parameters, reasons)

    def save(self, step: int, parameters: torch.Tensor, reasons: dict[int, str | None]) -> None:
        """Keep the logged members' state dicts: a checkpoint at the first log at or after each
        multiple of ``checkpoint_every`` (named by the step reached), the final one when a
        member's training ends (hard divergence or the last iteration)."""
        checkpoint = checkpoint_due(step, step - self.batch_size, self.checkpoint_every)
        last = self.iterations * self.batch_size
        for k, reason in reasons.items():
            names = [f"step{step}.pt"] if checkpoint else []
            if reason is not None or step == last:
                names.append("final.pt")
            if names:
                saved = state_dict_bytes(parameters[k], self.shape)
                self.traces[k].networks.update(dict.fromkeys(names, saved))

    def run(self) -> list[DeepTrace]:
        """Train every member for ``iterations`` rollouts and updates; one trace per member."""
        reset = self.envs.reset(np.ones(self.count * self.num_envs, dtype=bool))
        observations = self._member_view(reset)
        self.log(0, self.alive.copy())
        for iteration in range(self.iterations):
            rollout, observations = self.rollout(iteration, observations)
            self.learn(iteration, rollout, self.returns(rollout))
            self.last_rollout = rollout
            if not self.alive.any():
                break
            step = (iteration + 1) * self.batch_size
            passed = step // self.log_every > (step - self.batch_size) // self.log_every
            if passed or iteration + 1 == self.iterations:
                self.log(step, self.alive.copy())
        self.envs.close()
        self.eval_envs.close()
        return self.traces


def run_pqn_fleet(
    env: EnvSpec,
    members: list[PQNMember],
    steps: int,
    log_every: int,
    device: str = "cpu",
    checkpoint_every: int | None = None,
) -> list[DeepTrace]:
    """Train ``members`` as one PQN fleet for ``steps`` env steps each (summed over its envs),
    logging every ``log_every`` and saving networks (`PQNFleet.save`) every
    ``checkpoint_every``; one `DeepTrace` per member, in order. Subnormals are flushed to zero,
    as in `run.run_fleet`."""
    torch.set_flush_denormal(True)
    try:
        return PQNFleet(env, members, steps, log_every, device, checkpoint_every).run()
    finally:
        torch.set_flush_denormal(False)
