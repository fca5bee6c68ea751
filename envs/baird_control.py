"""The control form of Baird's counterexample, for Q-learning (Sutton & Barto, section 11.2).

Same dynamics, policies and rewards as `triad/Baird-v0`. Action values use one
block of Baird's state features per action, x(s, a) = e_a (x) x(s), so the
solid-action block is the prediction problem's value function and the greedy
target policy is evaluated with 16 weights. q* = 0 is representable.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rlharness_envs.baird import baird_dynamics
from rlharness_envs.base import FiniteMDPEnv
from rlharness_envs.model import ExactModel


def baird_control_dynamics(gamma: float) -> ExactModel:
    """Baird's counterexample with state-action features for Q-learning."""
    prediction = baird_dynamics(gamma)
    n_actions = prediction.n_actions
    state_features = prediction.features
    action_features = np.einsum("ab,sf->sabf", np.eye(n_actions), state_features)
    action_features = action_features.reshape(prediction.n_states, n_actions, -1)
    return dataclasses.replace(prediction, action_features=action_features)


class BairdControlEnv(FiniteMDPEnv):
    """``triad/BairdControl-v0``: Baird's counterexample with action-value features."""

    def __init__(self, gamma: float = 0.99) -> None:
        super().__init__(baird_control_dynamics(gamma))
