"""Kolter's counterexample (Kolter, NeurIPS 2011, "The Fixed Points of Off-Policy TD", section 3).

A two-state Markov chain that moves to either state with probability 1/2,
gamma = 0.99, true values v_pi = (1, 1.05) (the rewards are r = (I - gamma P) v_pi)
and the single feature x = (1, 1.05 + epsilon): for small epsilon > 0 the values
are almost representable. Under the off-policy state weighting D = diag(p, 1 - p)
the TD fixed point solves X^T D (X - gamma P X) w = X^T D r, whose one-by-one
matrix vanishes at
    p* = (2961 + 45240 eps + 40400 eps^2) / (4141 + 84840 eps + 40400 eps^2),
so the fixed point's error grows without bound as p approaches p* (0.6844 at
epsilon = 0.01, the value of Zhang, Yao & Whiteson's 2021 reproduction, D.1).

The chain is the target policy: two actions, "go to state 0" and "go to state 1",
each taken with probability 1/2. The behaviour policy goes to state 0 with
probability p, so its stationary distribution is the weighting (p, 1 - p) and
sampled off-policy learners see the same D as expected updates.
"""

from __future__ import annotations

import numpy as np

from rlharness_envs.base import EnvArgumentError, FiniteMDPEnv, in_unit_interval, number_argument
from rlharness_envs.model import ExactModel

GAMMA = 0.99
TRUE_VALUES = (1.0, 1.05)
ON_POLICY_WEIGHTING = 0.5
REPRESENTATION_ERROR = 0.01


def kolter_dynamics(p: float, epsilon: float = REPRESENTATION_ERROR) -> ExactModel:
    """The chain under the state weighting ``(p, 1 - p)``, 0 < p < 1, feature error ``epsilon``."""
    p = in_unit_interval("p", p, closed_high=False, why=" (the weighting of state 0)")
    if p == 0.0:
        raise EnvArgumentError("p", "must be in (0, 1): the behaviour must visit state 0, got 0.0")
    epsilon = number_argument("epsilon", epsilon)
    if epsilon < 0.0:
        raise EnvArgumentError("epsilon", f"must be >= 0 (the feature's error), got {epsilon}")
    values = np.array(TRUE_VALUES)
    transition = np.zeros((2, 2, 2))
    transition[:, 0, 0] = 1.0
    transition[:, 1, 1] = 1.0
    state_reward = values - GAMMA * values.mean()
    return ExactModel(
        transition=transition,
        reward=np.broadcast_to(state_reward[:, None, None], transition.shape).copy(),
        features=np.array([[TRUE_VALUES[0]], [TRUE_VALUES[1] + epsilon]]),
        behaviour_policy=np.array([[p, 1.0 - p], [p, 1.0 - p]]),
        target_policy=np.full((2, 2), 0.5),
        gamma=GAMMA,
        start_distribution=np.array([p, 1.0 - p]),
        terminal=np.zeros(2, dtype=bool),
        state_weighting=np.array([p, 1.0 - p]),
    )


class KolterEnv(FiniteMDPEnv):
    """``triad/Kolter-v0``: Kolter's two-state chain under the weighting ``(p, 1 - p)``."""

    def __init__(
        self, p: float = ON_POLICY_WEIGHTING, epsilon: float = REPRESENTATION_ERROR
    ) -> None:
        super().__init__(kolter_dynamics(p, epsilon))
