"""Calibrated over-estimation: the greedy policy's predicted values against its Monte Carlo returns.

Beside the soft bound (max |Q| on probe states beyond R_max / (1 - gamma)),
van Hasselt, Guez & Silver (2016, "Deep Reinforcement Learning with Double
Q-learning", Figure 3) measure over-estimation directly: run the greedy
policy, and compare the value it predicts for each state it visits,
Q(s_t, a_t) with a_t its greedy action, with the discounted return it then
actually obtains from that state, G_t = sum_k gamma^k r_{t+k}, with rewards
clipped as in training (the scale the network learns). Both are averaged
over every state of the evaluation episodes; their difference is the
over-estimation in units of (clipped) return.

An episode cut by a time limit has an unknown tail: its last states' returns
are cut short. Only states at least `tail_steps` from the cut are kept, where
the missing tail is worth at most ``TAIL_TOLERANCE`` of the largest
realisable return; an episode that ended by termination keeps every state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TAIL_TOLERANCE = 1e-3
"""The largest share of R_max / (1 - gamma) a kept state's return may miss after a time limit."""

GREEDY_METRICS = ("greedy_q_mean", "greedy_return_mean", "overestimation")
"""Columns logged with each evaluation: mean predicted Q, mean discounted return, their gap."""


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1} for each step of one episode, with G_T = 0 after its end."""
    returns = np.zeros(len(rewards))
    following = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        following = float(rewards[t]) + gamma * following
        returns[t] = following
    return returns


def tail_steps(gamma: float, tolerance: float = TAIL_TOLERANCE) -> int:
    """Steps from a time-limit cut beyond which the missing tail is at most ``tolerance``."""
    if gamma <= 0.0:
        return 0
    return math.ceil(math.log(tolerance) / math.log(gamma))


@dataclass
class GreedyEpisodes:
    """One member's evaluation: predicted values and returns of the states its episodes visit."""

    gamma: float
    reward_clip: float | None
    predicted: list[float] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    _values: list[float] = field(default_factory=list)
    _rewards: list[float] = field(default_factory=list)

    def step(self, predicted_value: float, reward: float) -> None:
        """Record Q(s_t, a_t) of the greedy action and the env's reward for it."""
        if self.reward_clip is not None:
            reward = min(max(reward, -self.reward_clip), self.reward_clip)
        self._values.append(predicted_value)
        self._rewards.append(reward)

    def end_episode(self, terminated: bool) -> None:
        """Close the episode: compute its returns; drop the uncertain tail of a truncated one."""
        returns = discounted_returns(np.asarray(self._rewards), self.gamma)
        kept = len(returns) if terminated else max(len(returns) - tail_steps(self.gamma), 0)
        self.predicted.extend(self._values[:kept])
        self.returns.extend(returns[:kept].tolist())
        self._values, self._rewards = [], []

    def metrics(self) -> dict[str, float]:
        """`GREEDY_METRICS` over the closed episodes (NaN when no state was kept)."""
        if not self.predicted:
            return dict.fromkeys(GREEDY_METRICS, math.nan)
        predicted = float(np.mean(self.predicted))
        returns = float(np.mean(self.returns))
        return {
            "greedy_q_mean": predicted,
            "greedy_return_mean": returns,
            "overestimation": predicted - returns,
        }
