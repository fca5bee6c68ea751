"""Proportional prioritised replay over stable-baselines3's n-step buffer (Schaul et al. 2016).

Transition i is sampled with probability P(i) = p_i^alpha / sum_k p_k^alpha,
where p_i = |delta_i| + epsilon after it was last replayed, and new
transitions enter with the largest priority seen so far. The importance
weights w_i = (N P(i))^-beta are divided by the largest possible weight,
(N min_k P(k))^-beta, so they only scale updates down. alpha = 0 is uniform.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from stable_baselines3.common.buffers import NStepReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize


class PrioritizedSamples(NamedTuple):
    """A replay batch with the importance weights and the buffer indices of its transitions."""

    observations: torch.Tensor
    actions: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    rewards: torch.Tensor
    discounts: torch.Tensor | None
    weights: torch.Tensor
    indices: np.ndarray


class PrioritizedNStepReplayBuffer(NStepReplayBuffer):
    """SB3's n-step replay buffer with proportional prioritised sampling (single env)."""

    def __init__(
        self,
        *args: Any,
        priority_exponent: float = 0.6,
        importance_exponent: float = 0.4,
        priority_epsilon: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.n_envs != 1:
            raise ValueError("prioritised replay supports a single env")
        self.priority_exponent = priority_exponent
        self.importance_exponent = importance_exponent
        self.priority_epsilon = priority_epsilon
        self.priorities = np.zeros(self.buffer_size, dtype=np.float64)
        self.max_priority = 1.0

    def add(self, *args: Any, **kwargs: Any) -> None:
        """Store a transition with the largest priority so far."""
        self.priorities[self.pos] = self.max_priority
        super().add(*args, **kwargs)

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> PrioritizedSamples:  # type: ignore[override]
        """Draw ``batch_size`` transitions with probability proportional to p^alpha."""
        size = self.buffer_size if self.full else self.pos
        scaled = self.priorities[:size] ** self.priority_exponent
        probabilities = scaled / scaled.sum()
        indices = np.random.choice(size, size=batch_size, p=probabilities)
        weights = (size * probabilities[indices]) ** -self.importance_exponent
        weights /= (size * probabilities.min()) ** -self.importance_exponent
        samples = self._get_samples(indices, env=env)
        return PrioritizedSamples(
            *samples, weights=self.to_torch(weights[:, None].astype(np.float32)), indices=indices
        )

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Set p_i = |delta_i| + epsilon for the replayed transitions."""
        priorities = np.abs(td_errors) + self.priority_epsilon
        self.priorities[indices] = priorities
        self.max_priority = max(self.max_priority, float(priorities.max()))
