"""Tsitsiklis and Van Roy's counterexample (Sutton & Barto, 2nd ed., Example 11.1).

The w -> 2w pair with a terminal state: the first state (feature 1) moves to
the second (feature 2); the second stays with probability 1 - epsilon and
terminates with probability epsilon. All rewards are zero. Least-squares DP
with the uniform weighting of the two states,
w_{k+1} = argmin_w sum_s (x(s) w - E[R + gamma x(S') w_k | s])^2,
gives w_{k+1} = (6 - 4 epsilon) gamma / 5 * w_k, which diverges when
gamma > 5 / (6 - 4 epsilon). Weighting by the on-policy distribution instead
converges.
"""

from __future__ import annotations

import numpy as np

from rlharness_envs.base import (
    EnvArgumentError,
    FiniteMDPEnv,
    in_unit_interval,
    number_argument,
)
from rlharness_envs.model import ExactModel

FIRST, SECOND, TERMINAL = 0, 1, 2


def tsitsiklis_van_roy_dynamics(epsilon: float, gamma: float) -> ExactModel:
    """The counterexample, with the uniform state weighting of the example."""
    epsilon = number_argument("epsilon", epsilon)
    if not 0.0 < epsilon <= 1.0:
        raise EnvArgumentError("epsilon", f"must be in (0, 1], got {epsilon}")
    if 1.0 - epsilon == 1.0:
        raise EnvArgumentError(
            "epsilon", f"must be at least 1e-16 (below, 1 - epsilon rounds to 1), got {epsilon}"
        )
    gamma = in_unit_interval("gamma", gamma, closed_high=True)
    transition = np.zeros((3, 1, 3))
    transition[FIRST, 0, SECOND] = 1.0
    transition[SECOND, 0, SECOND] = 1.0 - epsilon
    transition[SECOND, 0, TERMINAL] = epsilon
    transition[TERMINAL, 0, TERMINAL] = 1.0
    only_action = np.ones((3, 1))
    return ExactModel(
        transition=transition,
        reward=np.zeros_like(transition),
        features=np.array([[1.0], [2.0], [0.0]]),
        behaviour_policy=only_action,
        target_policy=only_action,
        gamma=gamma,
        start_distribution=np.array([1.0, 0.0, 0.0]),
        terminal=np.array([False, False, True]),
        state_weighting=np.array([0.5, 0.5, 0.0]),
    )


class TsitsiklisVanRoyEnv(FiniteMDPEnv):
    """``triad/TsitsiklisVanRoy-v0``: Example 11.1 with termination probability epsilon."""

    def __init__(self, epsilon: float = 0.01, gamma: float = 0.99) -> None:
        super().__init__(tsitsiklis_van_roy_dynamics(epsilon, gamma))
