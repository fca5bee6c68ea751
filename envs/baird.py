"""Baird's counterexample, exactly as in Sutton & Barto (2nd ed.), section 11.2.

Seven states: six upper states and one lower state. The *dashed* action moves
to one of the six upper states with equal probability; the *solid* action
moves to the lower state. The behaviour policy takes dashed with probability
6/7 and solid with 1/7; the target policy always takes solid. Every reward is
zero and gamma = 0.99, so v_pi = 0 and is exactly representable with the
features x(i) = 2 e_i + e_8 (upper states i = 1..6) and x(7) = e_7 + 2 e_8.
Semi-gradient off-policy TD(0) and DP diverge from w = (1,1,1,1,1,1,10,1).
"""

from __future__ import annotations

import numpy as np

from rlharness_envs.base import FiniteMDPEnv, in_unit_interval
from rlharness_envs.model import ExactModel

N_UPPER = 6
LOWER = 6
N_STATES = 7
N_FEATURES = 8
DASHED, SOLID = 0, 1
BEHAVIOUR_SOLID_PROBABILITY = 1.0 / 7.0
INITIAL_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 10.0, 1.0)
"""w0 of Figure 11.2, from which semi-gradient off-policy TD(0) and DP diverge."""


def baird_features() -> np.ndarray:
    """The 7 x 8 feature matrix of Figure 11.1."""
    features = np.zeros((N_STATES, N_FEATURES))
    for upper in range(N_UPPER):
        features[upper, upper] = 2.0
        features[upper, N_FEATURES - 1] = 1.0
    features[LOWER, N_FEATURES - 2] = 1.0
    features[LOWER, N_FEATURES - 1] = 2.0
    return features


def baird_dynamics(gamma: float) -> ExactModel:
    """The prediction form of the counterexample as an `ExactModel`."""
    gamma = in_unit_interval("gamma", gamma, closed_high=False, why=" for this continuing task")
    transition = np.zeros((N_STATES, 2, N_STATES))
    transition[:, DASHED, :N_UPPER] = 1.0 / N_UPPER
    transition[:, SOLID, LOWER] = 1.0
    behaviour = np.tile(
        [1.0 - BEHAVIOUR_SOLID_PROBABILITY, BEHAVIOUR_SOLID_PROBABILITY], (N_STATES, 1)
    )
    target = np.tile([0.0, 1.0], (N_STATES, 1))
    return ExactModel(
        transition=transition,
        reward=np.zeros_like(transition),
        features=baird_features(),
        behaviour_policy=behaviour,
        target_policy=target,
        gamma=gamma,
        start_distribution=np.full(N_STATES, 1.0 / N_STATES),
        terminal=np.zeros(N_STATES, dtype=bool),
    )


class BairdEnv(FiniteMDPEnv):
    """``triad/Baird-v0``: the prediction form (state values) of Baird's counterexample."""

    def __init__(self, gamma: float = 0.99) -> None:
        super().__init__(baird_dynamics(gamma))
