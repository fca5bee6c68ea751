"""A Gymnasium environment that samples its dynamics from an `ExactModel`."""

from __future__ import annotations

import math
import numbers
import reprlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlharness_envs.model import ExactModel


class EnvArgumentError(ValueError):
    """A constructor argument an environment cannot take; ``argument`` names it."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument} {problem}")
        self.argument = argument
        self.problem = problem


def number_argument(name: str, value: object) -> float:
    """``value`` as a finite float, or `EnvArgumentError` naming the argument ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise EnvArgumentError(name, f"must be a number, got {reprlib.repr(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise EnvArgumentError(
            name, f"must be a finite number, got {reprlib.repr(value)}"
        ) from None
    if not math.isfinite(number):
        raise EnvArgumentError(name, f"must be a finite number, got {number}")
    return number


def in_unit_interval(name: str, value: object, closed_high: bool, why: str = "") -> float:
    """``value`` as a float in [0, 1] (``closed_high``) or [0, 1), else `EnvArgumentError`."""
    number = number_argument(name, value)
    if not (0.0 <= number <= 1.0 if closed_high else 0.0 <= number < 1.0):
        interval = "[0, 1]" if closed_high else "[0, 1)"
        raise EnvArgumentError(name, f"must be in {interval}{why}, got {number}")
    return number


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
