"""The w -> 2w example of Sutton & Barto (2nd ed.), section 11.2.

Two states with the scalar features 1 and 2, so their estimates are w and 2w.
From the first state every action leads to the second with reward 0. In the
second state the target policy *stays* (a self-loop) while the behaviour
policy *resets* to the first state, so the importance-sampling ratio there is
0 and off-policy TD(0) only ever updates on the w -> 2w transition:
w <- (1 + alpha (2 gamma - 1)) w, which grows whenever gamma > 1/2.
"""

from __future__ import annotations

import numpy as np

from rlharness_envs.base import FiniteMDPEnv, in_unit_interval
from rlharness_envs.model import ExactModel

FIRST, SECOND = 0, 1
STAY, RESET = 0, 1


def two_state_dynamics(gamma: float) -> ExactModel:
    """The w -> 2w fragment, closed into a continuing MDP."""
    gamma = in_unit_interval("gamma", gamma, closed_high=False, why=" for this continuing task")
    transition = np.zeros((2, 2, 2))
    transition[FIRST, :, SECOND] = 1.0
    transition[SECOND, STAY, SECOND] = 1.0
    transition[SECOND, RESET, FIRST] = 1.0
    both_policies_first = [1.0, 0.0]
    return ExactModel(
        transition=transition,
        reward=np.zeros_like(transition),
        features=np.array([[1.0], [2.0]]),
        behaviour_policy=np.array([both_policies_first, [0.0, 1.0]]),
        target_policy=np.array([both_policies_first, [1.0, 0.0]]),
        gamma=gamma,
        start_distribution=np.array([1.0, 0.0]),
        terminal=np.zeros(2, dtype=bool),
    )


class TwoStateEnv(FiniteMDPEnv):
    """``triad/TwoState-v0``: the w -> 2w example."""

    def __init__(self, gamma: float = 0.9) -> None:
        super().__init__(two_state_dynamics(gamma))
