"""A Gymnasium environment that samples its dynamics from an `ExactModel`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlharness_envs.model import ExactModel


class FiniteMDPEnv(gym.Env[np.ndarray, np.int64]):
    """Base class of the triad environments: bookkeeping only, dynamics come from `model`.

    Observations are the state's feature vector ``x(s)``; ``info["state"]`` holds
    the state index so that tabular learners and exact diagnostics can use it.
    Subclasses build their `ExactModel` and pass it to ``__init__``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (Gymnasium's API)

    def __init__(self, model: ExactModel) -> None:
        self.model = model
        low = float(min(model.features.min(), 0.0))
        high = float(max(model.features.max(), 0.0))
        self.observation_space = spaces.Box(
            low=low, high=high, shape=(model.features.shape[1],), dtype=np.float32
        )
        self.action_space = spaces.Discrete(model.n_actions)
        self._state = -1

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode in a state drawn from the start distribution."""
        super().reset(seed=seed)
        self._state = int(
            self.np_random.choice(self.model.n_states, p=self.model.start_distribution)
        )
        return self._observation(), {"state": self._state}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Sample the next state and reward of ``action`` from the exact model."""
        if self._state < 0:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        probabilities = self.model.transition[self._state, int(action)]
        next_state = int(self.np_random.choice(self.model.n_states, p=probabilities))
        reward = float(self.model.reward[self._state, int(action), next_state])
        self._state = next_state
        terminated = bool(self.model.terminal[next_state])
        return self._observation(), reward, terminated, False, {"state": next_state}

    def _observation(self) -> np.ndarray:
        return self.model.features[self._state].astype(np.float32)
