"""Train a fleet: many DQN members in lockstep, each logged and judged as one SB3 seed is.

Per env step, for all members at once: act epsilon-greedily, step the
batched envs, store the transitions, update target networks that are due,
and take the gradient steps that are due (`learner.update`). Every
``log_every`` steps each live member logs the `common.METRICS` columns and
is checked with `common.hard_divergence`; a member whose loss goes
non-finite is logged and frozen at that step. A frozen member's rows in the
stacked tensors still flow through the computation, but nothing of it
reaches the other members or its own trace.

The schedule follows stable-baselines3's DQN: purely random actions before
``learning_starts``, then epsilon decayed linearly over ``exploration.fraction``
of the steps; after env step t, targets update when t is a multiple of
``target_update_period``, then ``gradient_steps`` updates run when t is a
multiple of ``train_frequency`` and t > ``learning_starts``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces

from rlharness.agents.deep.common import (
    METRICS,
    DeepTrace,
    checkpoint_due,
    hard_divergence,
    probe_observations,
)
from rlharness.agents.deep.diagnostics import (
    SEEM_TRANSITIONS,
    effective_rank,
    feature_cosine,
    self_excitation,
)
from rlharness.agents.deep.fleet import streams
from rlharness.agents.deep.fleet.envs import BatchedEnv, make_batched_env
from rlharness.agents.deep.fleet.learner import (
    Knobs,
    LearnerState,
    UpdateResult,
    update,
    update_target,
)
from rlharness.agents.deep.fleet.modules import state_dict_bytes
from rlharness.agents.deep.fleet.networks import (
    NetworkShape,
    features,
    forward,
    initial_parameters,
    layers,
    q_values,
    value_gradients,
)
from rlharness.agents.deep.fleet.replay import Batch, FleetReplay, replay_bytes
from rlharness.agents.deep.overestimation import GREEDY_METRICS, GreedyEpisodes
from rlharness.live import RecordSink
from rlharness.spec import DQNAgentSpec, EnvSpec

EXPLORATION_BLOCK = 1024
"""Env steps whose exploration draws are computed at once."""
SEEM_BYTES = 2**27
"""Memory for SEEM's per-sample gradients of the members computed at once (each member's
2 x 32 gradients of its row, and as much again for the copies of its row they come from)."""


@dataclass(frozen=True)
class Member:
    """One member: a grid point's agent, one of its seeds, its hard-divergence threshold, and
    where its records go as they are logged."""

    agent: DQNAgentSpec
    seed: int
    hard_limit: float
    on_record: RecordSink | None = None


class FleetKey(NamedTuple):
    """What members of one fleet share; members that differ here run as separate fleets.

    Shapes (env, network, batch, n-step window, replay, probe states), prioritised
    or uniform sampling, run length, logging and checkpoint periods and device. Every
    other knob may differ member by member.
    """

    env_id: str
    env_kwargs: str
    width: int
    depth: int
    layer_norm: bool
    batch_size: int
    n_step: int
    replay_capacity: int
    prioritized: bool
    probe_states: int
    steps: int
    log_every: int
    device: str
    checkpoint_every: int | None = None


def fleet_key(
    env: EnvSpec,
    agent: DQNAgentSpec,
    steps: int,
    log_every: int,
    device: str,
    checkpoint_every: int | None = None,
) -> FleetKey:
    """The fleet a grid point's seeds join."""
    return FleetKey(
        env.id,
        repr(sorted(env.kwargs.items())),
        agent.network.width,
        agent.network.depth,
        agent.network.layer_norm,
        agent.batch_size,
        agent.n_step,
        agent.replay_capacity,
        agent.prioritized_replay.alpha > 0,
        agent.probe_states,
        steps,
        log_every,
        device,
        checkpoint_every,
    )


def network_shape(
    observation_space: spaces.Box, n_actions: int, agent: DQNAgentSpec
) -> NetworkShape:
    """The MLP of the spec on the flattened observation."""
    inputs = int(np.prod(observation_space.shape))
    network = agent.network
    return NetworkShape(inputs, n_actions, network.width, network.depth, network.layer_norm)


def fleet_replay_bytes(
    members: int,
    agent: DQNAgentSpec,
    observation_space: spaces.Box,
    n_actions: int,
    max_episode_steps: int | None,
) -> int:
    """The replay memory a fleet of ``members`` members of this agent allocates."""
    observation_bytes = (
        int(np.prod(observation_space.shape)) * np.dtype(observation_space.dtype).itemsize
    )
    return replay_bytes(
        members,
        agent.replay_capacity,
        observation_bytes,
        n_actions,
        max_episode_steps,
        agent.prioritized_replay.alpha > 0,
    )


def size_text(n_bytes: int) -> str:
    """A byte count in KiB, MiB or GiB, whichever reads best."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n_bytes >= size:
            return f"{n_bytes / size:,.1f} {unit}"
    return f"{n_bytes / 2**10:,.1f} KiB"


def _knobs(agents: list[DQNAgentSpec], device: torch.device) -> Knobs:
    def column(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    names = [agent.bootstrap_target for agent in agents]
    return Knobs(
        gamma=column([a.gamma for a in agents]),
        learning_rate=column([a.learning_rate for a in agents]),
        max_grad_norm=column([a.max_grad_norm for a in agents]),
        target_update_tau=column([a.target_update_tau for a in agents]),
        l2=column([a.l2 for a in agents]),
        priority_alpha=torch.tensor(
            [a.prioritized_replay.alpha for a in agents], dtype=torch.float64, device=device
        ),
        priority_beta=torch.tensor(
            [a.prioritized_replay.beta for a in agents], dtype=torch.float64, device=device
        ),
        priority_epsilon=torch.tensor(
            [a.prioritized_replay.epsilon for a in agents], dtype=torch.float64, device=device
        ),
        targets={
            name: torch.tensor([n == name for n in names], device=device)
            for name in dict.fromkeys(names)
        },
    )


def _discount_powers(gamma: torch.Tensor, n_step: int) -> torch.Tensor:
    """gamma^0 ... gamma^n per member [K, n + 1], by repeated multiplication."""
    powers = [torch.ones_like(gamma)]
    for _ in range(n_step):
        powers.append(powers[-1] * gamma)
    return torch.stack(powers, dim=1)


class BatchStatistics:
    """Per member since its last log: summed losses and TD errors, updates, batch max |Q|."""

    def __init__(self, members: int, batch_size: int, device: torch.device) -> None:
        self.batch_size = batch_size
        zeros = torch.zeros(members, dtype=torch.float64, device=device)
        self.loss_sum, self.updates = zeros.clone(), zeros.clone()
        self.td_sum, self.td_abs_sum = zeros.clone(), zeros.clone()
        self.max_abs_q = torch.full_like(zeros, -math.inf)

    def add(self, updated: torch.Tensor, result: UpdateResult) -> None:
        """Count one update of the members in the mask."""
        td_errors = result.td_errors.to(torch.float64)
        self.loss_sum = torch.where(updated, self.loss_sum + result.loss, self.loss_sum)
        self.updates = self.updates + updated
        self.td_sum = torch.where(updated, self.td_sum + td_errors.sum(dim=1), self.td_sum)
        abs_sum = self.td_abs_sum + td_errors.abs().sum(dim=1)
        self.td_abs_sum = torch.where(updated, abs_sum, self.td_abs_sum)
        larger = torch.maximum(self.max_abs_q, result.max_abs_q.to(torch.float64))
        self.max_abs_q = torch.where(updated, larger, self.max_abs_q)

    def pop(self, members: np.ndarray) -> dict[str, np.ndarray]:
        """Mean loss, batch max |Q|, mean and mean |TD error| per member (NaN without updates);
        the members in the mask start afresh."""
        updates = self.updates.cpu().numpy()
        some = updates > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            values = {
                "loss": self.loss_sum.cpu().numpy() / updates,
                "batch_max_abs_q": self.max_abs_q.cpu().numpy(),
                "td_error_mean": self.td_sum.cpu().numpy() / (updates * self.batch_size),
                "td_error_abs_mean": self.td_abs_sum.cpu().numpy() / (updates * self.batch_size),
            }
        keep = torch.from_numpy(~members).to(self.updates.device)
        for name in ("loss_sum", "updates", "td_sum", "td_abs_sum"):
            setattr(self, name, getattr(self, name) * keep)
        self.max_abs_q = torch.where(keep, self.max_abs_q, -math.inf)
        return {name: np.where(some, value, math.nan) for name, value in values.items()}


class Transitions(NamedTuple):
    """The part of a batch the warnings read: [K, B, ...] tensors."""

    observations: torch.Tensor
    actions: torch.Tensor
    next_observations: torch.Tensor
    bootstrap_discounts: torch.Tensor


class LastTransitions:
    """Each member's latest training batch (s, a, s' and the bootstrap discounts), kept for the
    feature-cosine and SEEM warnings: measured on the data the member learns from, drawing
    nothing."""

    def __init__(self, members: int, device: torch.device) -> None:
        self.members = members
        self.batch: Transitions | None = None
        self.seen = torch.zeros(members, dtype=torch.bool, device=device)

    def keep(self, batch: Batch, updated: torch.Tensor) -> None:
        """Keep the batch's transitions of the members in the mask."""
        self.seen |= updated
        kept = Transitions(
            batch.observations, batch.actions, batch.next_observations, batch.bootstrap_discounts
        )
        if self.batch is None:
            self.batch = Transitions(*(tensor.clone() for tensor in kept))
            return

        def chosen(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
            return torch.where(updated.view(-1, *([1] * (new.dim() - 1))), new, old)

        self.batch = Transitions(
            *(chosen(new, old) for new, old in zip(kept, self.batch, strict=True))
        )

    def cosine(self, parameters: torch.Tensor, shape: NetworkShape) -> np.ndarray:
        """`diagnostics.feature_cosine` per member (NaN before its first update)."""
        if self.batch is None:
            return np.full(self.members, math.nan)
        phi = features(parameters, shape, self.batch.observations)
        phi_next = features(parameters, shape, self.batch.next_observations)
        bootstraps = (self.batch.bootstrap_discounts > 0) & self.seen[:, None]
        return feature_cosine(phi, phi_next, bootstraps).cpu().numpy()

    def self_excitation(self, parameters: torch.Tensor, shape: NetworkShape) -> np.ndarray:
        """`member_self_excitation` on the first `SEEM_TRANSITIONS` of each member's batch
        (NaN before its first update)."""
        if self.batch is None:
            return np.full(self.members, math.nan)
        head = slice(0, SEEM_TRANSITIONS)
        seem = member_self_excitation(
            parameters,
            shape,
            self.batch.observations[:, head],
            self.batch.actions[:, head],
            self.batch.next_observations[:, head],
            self.batch.bootstrap_discounts[:, head],
        )
        return torch.where(self.seen, seem, torch.nan).cpu().numpy()


def member_self_excitation(
    parameters: torch.Tensor,
    shape: NetworkShape,
    observations: torch.Tensor,
    actions: torch.Tensor,
    next_observations: torch.Tensor,
    discounts: torch.Tensor,
) -> torch.Tensor:
    """`diagnostics.self_excitation` per member over its transitions [K, N, ...], a*_i greedy
    for the member's network at s'_i; ``discounts`` [K, N] are the bootstrap discounts.

    Members go a few at a time, so the per-sample gradients stay within `SEEM_BYTES`.
    """
    with torch.no_grad():
        greedy = q_values(parameters, shape, next_observations).argmax(dim=2)
    gradient_bytes = 2 * observations.shape[1] * shape.row_length() * 4
    chunk = max(1, SEEM_BYTES // gradient_bytes)
    seem = []
    for start in range(0, parameters.shape[0], chunk):
        rows = slice(start, start + chunk)
        gradients = value_gradients(parameters[rows], shape, observations[rows], actions[rows])
        next_gradients = value_gradients(
            parameters[rows], shape, next_observations[rows], greedy[rows]
        )
        seem.append(self_excitation(gradients, next_gradients, discounts[rows]))
    return torch.cat(seem)


def member_measures(
    online: torch.Tensor,
    shape: NetworkShape,
    probes: torch.Tensor,
    batch: Mapping[str, np.ndarray],
    epsilon: np.ndarray,
    cosine: np.ndarray,
    seem: np.ndarray,
) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    """Every member's logged columns but the greedy ones: max and mean Q over its probe
    states, the ``batch`` statistics, the parameter norm, the exploration rate and the
    warnings (the srank here, ``cosine`` and ``seem`` as given); and the parameters on the CPU.
    """
    with torch.no_grad():
        probe_q = q_values(online, shape, probes)
        srank = effective_rank(features(online, shape, probes))
    parameters = online.cpu()
    measured = {
        "probe_max_abs_q": probe_q.abs().amax(dim=(1, 2)).cpu().numpy(),
        "probe_mean_q": probe_q.mean(dim=(1, 2)).cpu().numpy(),
        **batch,
        "param_norm": parameters.norm(dim=1).numpy(),
        "exploration_rate": epsilon,
        "feature_srank": srank.cpu().numpy(),
        "feature_cosine": cosine,
        "seem": seem,
    }
    return measured, parameters


def divergence_reasons(
    members: np.ndarray,
    loss_finite: bool,
    parameters: torch.Tensor,
    measured: Mapping[str, np.ndarray],
    hard_limits: Sequence[float],
) -> dict[int, str | None]:
    """For each member in the mask: why it hard-diverged (`hard_divergence`), or None."""
    indices = [int(k) for k in np.flatnonzero(members)]
    probe_max = measured["probe_max_abs_q"]
    return {
        k: hard_divergence(loss_finite, parameters[k], float(probe_max[k]), hard_limits[k])
        for k in indices
    }


def log_members(
    step: int,
    reasons: dict[int, str | None],
    measured: Mapping[str, Any],
    returns: np.ndarray,
    greedy: Sequence[dict[str, float]],
    traces: Sequence[DeepTrace],
    alive: np.ndarray,
) -> None:
    """One record at ``step`` for each member in ``reasons`` (None, or why it hard-diverged):
    its entry of each ``measured`` column, its greedy return and over-estimation (NaN for a
    member that diverged). A member that diverged is marked and no longer ``alive``."""
    for k, reason in reasons.items():
        record = {
            "step": step,
            "eval_return": float(returns[k]) if reason is None else math.nan,
            **{name: float(values[k]) for name, values in measured.items()},
            **(greedy[k] if reason is None else dict.fromkeys(GREEDY_METRICS, math.nan)),
        }
        trace = traces[k]
        trace.log({name: record[name] for name in ("step", *METRICS)})
        if reason is not None:
            trace.hard_divergence_step = step
            trace.hard_divergence_reason = reason
            alive[k] = False


class Fleet:
    """The state of a training fleet and its per-member bookkeeping."""

    def __init__(
        self,
        env: EnvSpec,
        members: list[Member],
        steps: int,
        log_every: int,
        device: str,
        checkpoint_every: int | None = None,
    ) -> None:
        self.env_spec, self.members, self.steps, self.log_every = env, members, steps, log_every
        self.checkpoint_every = checkpoint_every
        self.device = torch.device(device)
        agents = [m.agent for m in members]
        first = agents[0]
        seeds = [m.seed for m in members]
        self.count = len(members)
        self.envs = make_batched_env(env, seeds)
        self.eval_envs = make_batched_env(env, seeds, evaluation=True)
        space = self.envs.observation_space
        self.n_actions = self.envs.n_actions
        self.shape = network_shape(space, self.n_actions, first)
        self.batch_size, self.n_step = first.batch_size, first.n_step
        self.knobs = _knobs(agents, self.device)
        self.replay = FleetReplay(
            self.count,
            first.replay_capacity,
            space.shape,
            np.dtype(space.dtype),
            self.n_actions,
            self.envs.max_episode_steps,
            first.n_step,
            self.knobs.priority_alpha if first.prioritized_replay.alpha > 0 else None,
            self.device,
        )
        replay_size = fleet_replay_bytes(
            self.count, first, space, self.n_actions, self.envs.max_episode_steps
        )
        stored = str(self.replay.observations.dtype).removeprefix("torch.")
        print(
            f"fleet of {self.count} members on {env.id}: replay {size_text(replay_size)} "
            f"({first.replay_capacity:,} transitions each, observations {stored})",
            file=sys.stderr,
        )
        seed_tensor = torch.tensor(seeds)
        self.state = LearnerState.start(initial_parameters(self.shape, seed_tensor, self.device))
        self.acting_network = layers(self.state.online, self.shape)
        self.reward_clip = torch.tensor(
            [math.inf if a.reward_clip is None else a.reward_clip for a in agents],
            dtype=torch.float64,
        )
        self.discount_powers = _discount_powers(self.knobs.gamma, first.n_step)
        self.train_frequency = np.array([a.train_frequency for a in agents])
        self.learning_starts = np.array([a.learning_starts for a in agents])
        self.gradient_steps = np.array([a.gradient_steps for a in agents])
        self.target_period = np.array([a.target_update_period for a in agents])
        self.eval_episodes = np.array([a.eval_episodes for a in agents])
        self.epsilon_initial = np.array([a.exploration.initial_epsilon for a in agents])
        self.epsilon_final = np.array([a.exploration.final_epsilon for a in agents])
        self.epsilon_fraction = np.array([a.exploration.fraction for a in agents])
        self.exploration_keys = streams.member_keys(seed_tensor, streams.Stream.EXPLORATION)
        self.replay_keys = streams.member_keys(seed_tensor, streams.Stream.REPLAY).to(self.device)
        self.updates = torch.zeros(self.count, dtype=torch.int64, device=self.device)
        self.batch_counters = torch.arange(self.batch_size, device=self.device)
        probes: dict[int, np.ndarray] = {}
        for seed in seeds:
            if seed not in probes:
                probes[seed] = probe_observations(env, first.probe_states, seed)
        self.probes = torch.from_numpy(np.stack([probes[s] for s in seeds])).to(self.device)
        self.alive = np.ones(self.count, dtype=bool)
        self.traces = [DeepTrace(on_record=m.on_record) for m in members]
        self.statistics = BatchStatistics(self.count, self.batch_size, self.device)
        self.transitions = LastTransitions(self.count, self.device)

    def epsilon(self, step: int) -> np.ndarray:
        """SB3's linear schedule after ``step`` of ``steps`` env steps, per member."""
        return self.epsilons(np.array([step]))[:, 0]

    def epsilons(self, steps: np.ndarray) -> np.ndarray:
        """`epsilon` at each of ``steps`` [T], per member: [K, T]."""
        progress_remaining = 1.0 - steps.astype(np.float64) / float(self.steps)
        done = 1.0 - progress_remaining
        initial, final = self.epsilon_initial[:, None], self.epsilon_final[:, None]
        fraction = self.epsilon_fraction[:, None]
        decayed = initial + done * (final - initial) / fraction
        return np.where(done > fraction, final, decayed)

    def act(self, observations: torch.Tensor, step: int) -> np.ndarray:
        """Epsilon-greedy actions (uniform before learning starts), each from its member's stream.

        Step t uses draws 2t (explore or not) and 2t + 1 (which random action) of
        the exploration stream; the draws, and with them which members explore
        and their random actions, are computed a block of steps at a time.
        """
        with torch.no_grad():
            greedy = forward(self.acting_network, observations[:, None]).argmax(dim=2)[:, 0]
        offset = step % EXPLORATION_BLOCK
        if offset == 0:
            counters = torch.arange(2 * step, 2 * (step + EXPLORATION_BLOCK))
            draws = streams.uniform(self.exploration_keys, counters.expand(self.count, -1))
            draw, which = draws.numpy()[:, 0::2], draws.numpy()[:, 1::2]
            steps = np.arange(step, step + EXPLORATION_BLOCK)
            self.explore = (steps < self.learning_starts[:, None]) | (draw < self.epsilons(steps))
            self.random_actions = (which * self.n_actions).astype(np.int64)
        return np.where(
            self.explore[:, offset], self.random_actions[:, offset], greedy.cpu().numpy()
        )

    def train(self, step: int) -> None:
        """The gradient steps due after env step ``step``, for the live members due."""
        due = (step % self.train_frequency == 0) & (step > self.learning_starts) & self.alive
        for index in range(int(self.gradient_steps[due].max(initial=0))):
            updating = due & (index < self.gradient_steps) & self.alive
            if not updating.any():
                break
            mask = torch.from_numpy(updating).to(self.device)
            members = np.flatnonzero(updating).tolist()
            counters = self.updates[:, None] * self.batch_size + self.batch_counters
            slots, weights = self.replay.sample_slots(
                self.replay_keys, counters, self.knobs.priority_beta
            )
            batch = self.replay.batch(slots, weights, self.discount_powers)
            result = update(self.state, self.shape, batch, self.knobs, members)
            self.transitions.keep(batch, mask)
            if self.replay.priorities is not None:
                self.replay.update_priorities(
                    slots, result.td_errors, self.knobs.priority_epsilon, mask
                )
            self.updates += mask
            self.statistics.add(mask, result)
            non_finite = updating & ~torch.isfinite(result.loss).cpu().numpy()
            if non_finite.any():
                self.log(step, non_finite, loss_finite=False)

    def log(self, step: int, members: np.ndarray, loss_finite: bool = True) -> None:
        """A record for each member in the mask; members that hard-diverged are frozen."""
        with torch.no_grad():
            cosine = self.transitions.cosine(self.state.online, self.shape)
        seem = self.transitions.self_excitation(self.state.online, self.shape)
        batch = self.statistics.pop(members)
        measured, parameters = member_measures(
            self.state.online, self.shape, self.probes, batch, self.epsilon(step), cosine, seem
        )
        limits = [member.hard_limit for member in self.members]
        reasons = divergence_reasons(members, loss_finite, parameters, measured, limits)
        healthy = np.zeros(self.count, dtype=bool)
        healthy[[k for k, reason in reasons.items() if reason is None]] = True
        if healthy.any():
            returns, greedy = self.evaluate(healthy)
        else:
            returns, greedy = np.full(self.count, math.nan), []
        log_members(step, reasons, measured, returns, greedy, self.traces, self.alive)
        self.save(step, parameters, reasons)

    def save(self, step: int, parameters: torch.Tensor, reasons: dict[int, str | None]) -> None:
        """Keep the logged members' state dicts: a checkpoint when due, the final one when a
        member's training ends (hard divergence or the last step)."""
        checkpoint = checkpoint_due(step, step - 1, self.checkpoint_every)
        for k, reason in reasons.items():
            names = [f"step{step}.pt"] if checkpoint else []
            if reason is not None or step == self.steps:
                names.append("final.pt")
            if names:
                saved = state_dict_bytes(parameters[k], self.shape)
                self.traces[k].networks.update(dict.fromkeys(names, saved))

    def evaluate(self, members: np.ndarray) -> tuple[np.ndarray, list[dict[str, float]]]:
        """`greedy_evaluation` of the members in the mask."""
        episodes = [GreedyEpisodes(m.agent.gamma, m.agent.reward_clip) for m in self.members]
        return greedy_evaluation(
            self.eval_envs, self.state.online, self.shape, members, self.eval_episodes, episodes
        )

    def run(self) -> list[DeepTrace]:
        """Train every member for ``steps`` env steps; one trace per member."""
        observations = self.envs.reset(np.ones(self.count, dtype=bool))
        current = torch.from_numpy(observations).to(self.device)
        self.replay.start(current)
        self.log(0, self.alive.copy())
        for step in range(1, self.steps + 1):
            actions = self.act(current, step - 1)
            result = self.envs.step(actions)
            rewards = torch.from_numpy(result.rewards)
            clipped = torch.minimum(torch.maximum(rewards, -self.reward_clip), self.reward_clip)
            current = torch.from_numpy(result.observations).to(self.device)
            truncated = result.truncated
            self.replay.add(
                torch.from_numpy(actions).to(self.device),
                clipped.to(torch.float32).to(self.device),
                torch.from_numpy(result.terminated).to(self.device),
                torch.from_numpy(truncated).to(self.device),
                torch.from_numpy(result.final_observations).to(self.device),
                current,
                bool(truncated.any()),
            )
            due = (step % self.target_period == 0) & self.alive
            if due.any():
                update_target(
                    self.state,
                    self.knobs.target_update_tau,
                    None if due.all() else torch.from_numpy(due).to(self.device),
                )
            self.train(step)
            if not self.alive.any():
                break
            if step % self.log_every == 0 or step == self.steps:
                self.log(step, self.alive.copy())
        self.envs.close()
        self.eval_envs.close()
        return self.traces


def greedy_evaluation(
    envs: BatchedEnv,
    parameters: torch.Tensor,
    shape: NetworkShape,
    members: np.ndarray,
    eval_episodes: np.ndarray,
    episodes: list[GreedyEpisodes],
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Each member's ``eval_episodes`` greedy episodes on its unclipped evaluation env: the mean
    return (NaN for members not in the mask) and the `GREEDY_METRICS` of the states visited."""
    count = len(members)
    observations = envs.reset(members)
    running = members.copy()
    totals = np.zeros(count)
    current = np.zeros(count)
    finished = np.zeros(count, dtype=np.int64)
    while running.any():
        with torch.no_grad():
            inputs = torch.from_numpy(observations).to(parameters.device)[:, None]
            greedy = q_values(parameters, shape, inputs)[:, 0].max(dim=1)
        result = envs.step(greedy.indices.cpu().numpy(), running)
        predicted = greedy.values.cpu().numpy()
        current += np.where(running, result.rewards, 0.0)
        ended = running & (result.terminated | result.truncated)
        for k in np.flatnonzero(running):
            episodes[k].step(float(predicted[k]), float(result.rewards[k]))
            if ended[k]:
                episodes[k].end_episode(bool(result.terminated[k]))
        totals += np.where(ended, current, 0.0)
        current[ended] = 0.0
        finished += ended
        running &= finished < eval_episodes
        observations = result.observations
    with np.errstate(invalid="ignore"):
        returns = np.where(members, totals / eval_episodes, math.nan)
    return returns, [episode.metrics() for episode in episodes]


def run_fleet(
    env: EnvSpec,
    members: list[Member],
    steps: int,
    log_every: int,
    device: str = "cpu",
    checkpoint_every: int | None = None,
) -> list[DeepTrace]:
    """Train ``members`` as one fleet for ``steps`` env steps, logging every ``log_every`` and
    saving each member's network (`Fleet.save`) every ``checkpoint_every`` and at the end.

    Torch runs on the process's thread count (all cores by default, the trial's
    CPUs in a sweep, ``OMP_NUM_THREADS`` where set): unlike one SB3 seed, a fleet's
    batched products gain from a free second core, though they slow several-fold
    when another process holds it (benchmarks/README.md). A member's metrics are
    the same bits on any thread count. Subnormal floats are flushed to zero:
    Adam's second moments drift into the subnormal range as gradients shrink,
    where x86 arithmetic is about a hundred times slower. Returns
    one `DeepTrace` per member, in order.
    """
    torch.set_flush_denormal(True)
    try:
        return Fleet(env, members, steps, log_every, device, checkpoint_every).run()
    finally:
        torch.set_flush_denormal(False)
