"""A random-walk chain on which on-policy linear TD provably converges.

The states 1..n lie on a line, the walk starts in the middle, and each step
moves left or right; leaving on the right pays +1, on the left 0, and the
episode ends (Sutton & Barto, Example 6.2, n = 5). The target policy moves
each way with probability 1/2, so v_pi(i) = i / (n + 1). The default
``affine`` features x(i) = (1, i / (n + 1)) represent v_pi exactly; on-policy
TD(0) converges to it (Tsitsiklis & Van Roy 1997). The behaviour policy's
right-move probability can differ, which makes the task off-policy.
"""

from __future__ import annotations

import numbers
import reprlib
from typing import Literal

import numpy as np

from rlharness_envs.base import EnvArgumentError, FiniteMDPEnv, number_argument
from rlharness_envs.model import ExactModel

LEFT, RIGHT = 0, 1
MAX_STATES = 1001
"""The exact model is dense (S x A x S arrays, S x S solves): 1000 states is Sutton & Barto's
largest random walk (Example 9.1), about 50 MB; 100,001 states would need 149 GiB per array."""
FeatureKind = Literal["affine", "one_hot"]


def random_walk_dynamics(
    n_states: int, behaviour_right_probability: float, features: FeatureKind
) -> ExactModel:
    """The chain of ``n_states`` live states plus one absorbing terminal state."""
    if (
        isinstance(n_states, bool)
        or not isinstance(n_states, numbers.Integral)
        or not 3 <= n_states <= MAX_STATES
        or n_states % 2 == 0
    ):
        raise EnvArgumentError(
            "n_states",
            f"must be an odd integer >= 3 and <= {MAX_STATES}, got {reprlib.repr(n_states)}",
        )
    n_states = int(n_states)
    p = number_argument("behaviour_right_probability", behaviour_right_probability)
    if not 0.0 < p < 1.0:
        raise EnvArgumentError("behaviour_right_probability", f"must be in (0, 1), got {p}")
    terminal_state = n_states
    size = n_states + 1
    transition = np.zeros((size, 2, size))
    reward = np.zeros_like(transition)
    for state in range(n_states):
        transition[state, LEFT, state - 1 if state > 0 else terminal_state] = 1.0
        transition[state, RIGHT, state + 1 if state < n_states - 1 else terminal_state] = 1.0
    transition[terminal_state, :, terminal_state] = 1.0
    reward[n_states - 1, RIGHT, terminal_state] = 1.0
    positions = np.arange(1, n_states + 1) / (n_states + 1)
    if features == "affine":
        feature_matrix = np.column_stack([np.ones(n_states), positions])
    elif features == "one_hot":
        feature_matrix = np.eye(n_states)
    else:
        raise EnvArgumentError(
            "features", f"must be 'affine' or 'one_hot', got {reprlib.repr(features)}"
        )
    feature_matrix = np.vstack([feature_matrix, np.zeros((1, feature_matrix.shape[1]))])
    start = np.zeros(size)
    start[n_states // 2] = 1.0
    return ExactModel(
        transition=transition,
        reward=reward,
        features=feature_matrix,
        behaviour_policy=np.tile([1.0 - p, p], (size, 1)),
        target_policy=np.full((size, 2), 0.5),
        gamma=1.0,
        start_distribution=start,
        terminal=np.arange(size) == terminal_state,
    )


class RandomWalkEnv(FiniteMDPEnv):
    """``triad/RandomWalk-v0``: the on-policy sanity task."""

    def __init__(
        self,
        n_states: int = 5,
        behaviour_right_probability: float = 0.5,
        features: FeatureKind = "affine",
    ) -> None:
        super().__init__(random_walk_dynamics(n_states, behaviour_right_probability, features))
