"""Each member's replay: a compact ring of observations, n-step windows, prioritised sampling.

Storage. A ring of ``capacity + 1`` slots per member holds each observation
once: slot i has the observation a transition starts from and that
transition's action, reward and how it ended; the next observation is slot
i + 1's, except after an episode end. A terminated transition needs no next
observation (it does not bootstrap); a truncated one bootstraps from its
true final observation, kept in a small side ring with one row per
truncation (a time limit of L steps allows at most ceil(capacity / L) + 1 of
them in the buffer; without a time limit, one per slot). The slot after the
newest transition holds the observation to act on next, so ``capacity``
transitions are kept, as in SB3's buffers. Boolean frames (MinAtar) are
stored as bools, other observations in their own dtype.

n-step windows are formed when sampled, as SB3's ``NStepReplayBuffer`` does:
the return sums gamma^k r_k up to the first episode end or the newest
transition (inclusive), and bootstraps with gamma^(steps summed) from the
window's next observation unless it terminated.

Prioritised replay (Schaul et al. 2016), proportional, as
`rlharness.agents.deep.replay`: P(i) = p_i^alpha / sum_k p_k^alpha with
p_i = |delta_i| + epsilon after i was replayed and new transitions at the
largest priority so far; weights (N P(i))^-beta divided by the largest
possible, (N min_k P(k))^-beta. p_i^alpha is kept beside p_i, computed when a
priority is written, so a batch raises B priorities to alpha, not the whole
ring. Sampling inverts each member's cumulative priorities, O(capacity) per
batch like that backend's ``np.random.choice``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from rlharness.agents.deep.fleet import streams

VECTOR_ELEMENTS = 16
"""Rows are padded to whole SIMD vectors before a transcendental function (`rowwise_pow`)."""


class Batch(NamedTuple):
    """A sampled batch per member: [K, B, ...] tensors on the fleet's device."""

    observations: torch.Tensor
    actions: torch.Tensor
    returns: torch.Tensor
    next_observations: torch.Tensor
    bootstrap_discounts: torch.Tensor
    weights: torch.Tensor | None
    slots: torch.Tensor


def rowwise_pow(base: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """base [K, N] ** exponent [K, 1], computed on rows padded to whole SIMD vectors.

    torch's vectorised pow and its scalar remainder loop may differ in the
    last bit; padding each row makes every element take the vector path, so
    a member's values do not depend on how many members come before it.
    """
    width = base.shape[1]
    padded = math.ceil(width / VECTOR_ELEMENTS) * VECTOR_ELEMENTS
    rows = torch.ones(base.shape[0], padded, dtype=base.dtype, device=base.device)
    rows[:, :width] = base
    return rows.pow(exponent)[:, :width]


def storage_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype observations of this NumPy dtype are stored in."""
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def action_dtype(n_actions: int) -> torch.dtype:
    """The smallest integer dtype that holds every action."""
    return torch.uint8 if n_actions <= 256 else torch.int64


def final_rows(capacity: int, max_episode_steps: int | None) -> int:
    """Rows of the side ring of truncated episodes' final observations."""
    if max_episode_steps is None:
        return capacity + 1
    return min(capacity + 1, math.ceil(capacity / max_episode_steps) + 1)


def replay_bytes(
    members: int,
    capacity: int,
    observation_bytes: int,
    n_actions: int,
    max_episode_steps: int | None,
    prioritized: bool,
) -> int:
    """What `FleetReplay` allocates: slots, the side ring and priorities, for all members."""
    slots = capacity + 1
    action_bytes = torch.empty(0, dtype=action_dtype(n_actions)).element_size()
    per_slot = observation_bytes + action_bytes + 4 + 2 + 8  # reward, two flags, side index
    if prioritized:
        per_slot += 16  # the priority and its power alpha
    side = final_rows(capacity, max_episode_steps) * observation_bytes
    return members * (slots * per_slot + side)


class FleetReplay:
    """K members' rings, written together every env step (all members step in lockstep)."""

    def __init__(
        self,
        members: int,
        capacity: int,
        observation_shape: tuple[int, ...],
        observation_dtype: np.dtype,
        n_actions: int,
        max_episode_steps: int | None,
        n_step: int,
        priority_alpha: torch.Tensor | None,
        device: torch.device,
    ) -> None:
        """``priority_alpha`` [K] holds each member's priority exponent; None samples uniformly."""
        self.members, self.capacity, self.n_step = members, capacity, n_step
        self.slots = capacity + 1
        self.device = device
        stored = storage_dtype(observation_dtype)

        def zeros(*shape: int, dtype: torch.dtype) -> torch.Tensor:
            return torch.zeros(members, *shape, dtype=dtype, device=device)

        self.observations = zeros(self.slots, *observation_shape, dtype=stored)
        self.actions = zeros(self.slots, dtype=action_dtype(n_actions))
        self.rewards = zeros(self.slots, dtype=torch.float32)
        self.terminated = zeros(self.slots, dtype=torch.bool)
        self.truncated = zeros(self.slots, dtype=torch.bool)
        self.final_rows = final_rows(capacity, max_episode_steps)
        self.final_observations = zeros(self.final_rows, *observation_shape, dtype=stored)
        self.final_index = zeros(self.slots, dtype=torch.int64)
        self.final_position = zeros(dtype=torch.int64)
        prioritized = priority_alpha is not None
        self.priorities = zeros(self.slots, dtype=torch.float64) if prioritized else None
        self.scaled = zeros(self.slots, dtype=torch.float64) if prioritized else None
        self.alpha = None if priority_alpha is None else priority_alpha[:, None].to(device)
        self.max_priority = torch.ones(members, dtype=torch.float64, device=device)
        self.position = 0
        self.size = 0
        self.member_index = torch.arange(members, device=device)
        self.slot_offsets = (self.member_index * self.slots)[:, None]
        self.final_offsets = (self.member_index * self.final_rows)[:, None]
        self.window_steps = torch.arange(n_step, device=device)

    def start(self, observations: torch.Tensor) -> None:
        """The first observation of every member: the slot the first transition starts from."""
        self.observations[:, self.position] = observations

    def add(
        self,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        final_observations: torch.Tensor,
        next_observations: torch.Tensor,
        any_truncated: bool,
    ) -> None:
        """Complete the transition at the current slot and start the next one.

        ``final_observations`` are the true next observations, ``next_observations``
        what the members act on next (a reset where an episode ended).
        """
        slot = self.position
        self.actions[:, slot] = actions
        self.rewards[:, slot] = rewards
        self.terminated[:, slot] = terminated
        bootstrapped_end = truncated & ~terminated
        self.truncated[:, slot] = bootstrapped_end
        if any_truncated:
            members = self.member_index[bootstrapped_end]
            rows = self.final_position[members]
            self.final_observations[members, rows] = final_observations[bootstrapped_end].to(
                self.final_observations.dtype
            )
            self.final_index[members, slot] = rows
            self.final_position[members] = (rows + 1) % self.final_rows
        self.position = (slot + 1) % self.slots
        self.size = min(self.size + 1, self.capacity)
        self.observations[:, self.position] = next_observations
        if self.priorities is not None:
            assert self.scaled is not None and self.alpha is not None
            self.priorities[:, slot] = self.max_priority
            self.scaled[:, slot] = rowwise_pow(self.max_priority[:, None], self.alpha)[:, 0]
            self.priorities[:, self.position] = 0.0
            self.scaled[:, self.position] = 0.0

    def sample_slots(
        self, keys: torch.Tensor, counters: torch.Tensor, beta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Slots [K, B] of each member's batch (counters [K, B] index its replay stream).

        Uniform over the ``size`` newest transitions; by priority when prioritised,
        with the importance weights.
        """
        if self.scaled is None:
            offsets = streams.below(keys, counters, self.size)
            return (self.position - self.size + offsets) % self.slots, None
        scaled = self.scaled
        cumulative = torch.cumsum(scaled, dim=1)
        values = streams.uniform(keys, counters) * cumulative[:, -1:]
        slots = torch.searchsorted(cumulative, values, right=True).clamp_(max=self.slots - 1)
        smallest = torch.where(scaled > 0, scaled, math.inf).amin(dim=1, keepdim=True)
        picked = torch.gather(scaled, 1, slots)
        weights = rowwise_pow(picked / smallest, -beta[:, None])
        return slots, weights.to(torch.float32)

    def batch(
        self,
        slots: torch.Tensor,
        weights: torch.Tensor | None,
        discount_powers: torch.Tensor,
    ) -> Batch:
        """The n-step batch starting at ``slots`` [K, B].

        ``discount_powers`` [K, n + 1] holds gamma^0 ... gamma^n of each member.
        Each table is read once, at flat indices (member k's slot i is k * slots + i);
        what the window's last transition needs is picked from the window's values.
        """
        n = self.n_step
        window = (slots[..., None] + self.window_steps) % self.slots
        flat_window = window + self.slot_offsets[..., None]
        newest = (self.position - 1) % self.slots
        terminated = pick(self.terminated, flat_window)
        truncated = pick(self.truncated, flat_window)
        ends = terminated | truncated
        ends |= window == newest
        ends[..., -1] = True
        last = ends.to(torch.uint8).argmax(dim=2)
        inside = self.window_steps <= last[..., None]
        powers = discount_powers[:, None, :n]
        rewards = pick(self.rewards, flat_window)
        returns = (rewards * powers * inside).sum(dim=2)
        at_last = last[..., None]
        last_slot = torch.gather(window, 2, at_last).squeeze(2)
        bootstrap = torch.gather(discount_powers, 1, last + 1)
        bootstrap = bootstrap * ~torch.gather(terminated, 2, at_last).squeeze(2)
        truncated_last = torch.gather(truncated, 2, at_last).squeeze(2)
        flat_slots = flat_window[..., 0]
        following = (last_slot + 1) % self.slots + self.slot_offsets
        observations, following_observations = pick(
            self.observations, torch.stack((flat_slots, following))
        ).unbind(0)
        final_rows = pick(self.final_index, last_slot + self.slot_offsets) + self.final_offsets
        final = pick(self.final_observations, final_rows)
        shape = truncated_last.shape + (1,) * (final.dim() - truncated_last.dim())
        next_observations = torch.where(
            truncated_last.reshape(shape), final, following_observations
        )
        return Batch(
            observations=observations,
            actions=pick(self.actions, flat_slots).to(torch.int64),
            returns=returns,
            next_observations=next_observations,
            bootstrap_discounts=bootstrap,
            weights=weights,
            slots=slots,
        )

    def update_priorities(
        self,
        slots: torch.Tensor,
        td_errors: torch.Tensor,
        epsilon: torch.Tensor,
        updated: torch.Tensor,
    ) -> None:
        """p = |delta| + epsilon for the replayed slots of the members that were updated."""
        assert self.priorities is not None and self.scaled is not None
        assert self.alpha is not None
        new = td_errors.abs().to(torch.float64) + epsilon[:, None]
        old = torch.gather(self.priorities, 1, slots)
        new = torch.where(updated[:, None], new, old)
        self.priorities.scatter_(1, slots, new)
        self.scaled.scatter_(1, slots, rowwise_pow(new, self.alpha))
        self.max_priority = torch.maximum(self.max_priority, new.amax(dim=1))


def pick(table: torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` [K, S, *rest] at ``flat_index`` (k * S + slot), shaped like it."""
    flat = table.reshape(table.shape[0] * table.shape[1], *table.shape[2:])
    picked = flat.index_select(0, flat_index.reshape(-1))
    return picked.reshape(*flat_index.shape, *table.shape[2:])
