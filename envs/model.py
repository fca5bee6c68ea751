"""The exact model of a finite MDP, shared by every triad environment.

Each environment in this package is a finite MDP whose dynamics, rewards,
features, policies and discount are known exactly. `ExactModel` holds them and
derives what exact diagnostics need: the policy's transition matrix, its true
values, the on-policy state distribution and the largest realisable return.
Terminal states are absorbing, reward-free and have all-zero features, so the
episodic and continuing cases share one set of formulas.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

_STOCHASTIC_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ExactModel:
    """A finite MDP with linear features and a behaviour/target policy pair.

    Parameters
    ----------
    transition:
        ``P[s, a, s']``, the probability of moving to ``s'`` after action ``a`` in ``s``.
    reward:
        ``R[s, a, s']``, the expected reward on that transition.
    features:
        ``X[s, :]``, the state features of linear value estimates (zero rows for terminals).
    behaviour_policy, target_policy:
        ``b[s, a]`` and ``pi[s, a]``, action probabilities per state.
    gamma:
        The discount rate.
    start_distribution:
        Probabilities of the first state of an episode.
    terminal:
        Which states end an episode (absorbing, reward-free, zero features).
    action_features:
        ``X[s, a, :]``, the state-action features of the control form, or None.
    state_weighting:
        The state distribution ``mu`` under which errors are measured and
        expected off-policy updates are weighted. None means the on-policy
        distribution of the behaviour policy.
    """

    transition: FloatArray
    reward: FloatArray
    features: FloatArray
    behaviour_policy: FloatArray
    target_policy: FloatArray
    gamma: float
    start_distribution: FloatArray
    terminal: BoolArray
    action_features: FloatArray | None = None
    state_weighting: FloatArray | None = None

    def __post_init__(self) -> None:
        n_states, n_actions, _ = self.transition.shape
        _require(self.transition.shape == (n_states, n_actions, n_states), "transition shape")
        _require(self.reward.shape == self.transition.shape, "reward shape matches transition")
        _require(self.features.ndim == 2 and self.features.shape[0] == n_states, "features rows")
        for name in ("behaviour_policy", "target_policy"):
            _require(getattr(self, name).shape == (n_states, n_actions), f"{name} shape")
        _require(0.0 <= self.gamma <= 1.0, "gamma in [0, 1]")
        _require(self.terminal.shape == (n_states,), "terminal shape")
        _require(bool(np.all(self.transition >= 0)), "non-negative transition probabilities")
        _require(_stochastic(self.transition.sum(axis=2)), "transition rows sum to 1")
        _require(_stochastic(self.behaviour_policy.sum(axis=1)), "behaviour rows sum to 1")
        _require(_stochastic(self.target_policy.sum(axis=1)), "target rows sum to 1")
        _require(_stochastic(self.start_distribution.sum(keepdims=True)), "start sums to 1")
        terminals = np.flatnonzero(self.terminal)
        _require(bool(np.all(self.transition[terminals, :, terminals] == 1.0)), "terminals absorb")
        _require(bool(np.all(self.features[terminals] == 0.0)), "terminal features are zero")
        if self.action_features is not None:
            _require(self.action_features.shape[:2] == (n_states, n_actions), "action features")
        if self.state_weighting is not None:
            _require(_stochastic(self.state_weighting.sum(keepdims=True)), "weighting sums to 1")

    @property
    def n_states(self) -> int:
        """Number of states, terminals included."""
        return int(self.transition.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions."""
        return int(self.transition.shape[1])

    @property
    def episodic(self) -> bool:
        """Whether the MDP has terminal states."""
        return bool(self.terminal.any())

    @property
    def reward_bound(self) -> float:
        """The largest reward magnitude on any transition."""
        return float(np.abs(self.reward).max())

    def policy_transition(self, policy: FloatArray) -> FloatArray:
        """``P_pi[s, s'] = sum_a pi(a|s) P(s'|s, a)``."""
        return np.einsum("sa,sat->st", policy, self.transition)

    def policy_reward(self, policy: FloatArray) -> FloatArray:
        """``r_pi[s]``, the expected one-step reward under ``policy``."""
        return np.einsum("sa,sat,sat->s", policy, self.transition, self.reward)

    def on_policy_distribution(self, policy: FloatArray) -> FloatArray:
        """The on-policy state distribution of ``policy`` (Sutton & Barto eq. 9.2-9.3).

        Continuing tasks: the stationary distribution of ``P_pi``. Episodic
        tasks: the normalised expected visit counts per episode.
        """
        p_pi = self.policy_transition(policy)
        live = ~self.terminal
        if self.episodic:
            p_live = p_pi[np.ix_(live, live)]
            visits = np.linalg.solve(
                np.eye(p_live.shape[0]) - p_live.T, self.start_distribution[live]
            )
            mu: FloatArray = np.zeros(self.n_states)
            mu[live] = visits
        else:
            n = self.n_states
            system = np.vstack([p_pi.T - np.eye(n), np.ones((1, n))])
            rhs = np.zeros(n + 1)
            rhs[-1] = 1.0
            mu = np.asarray(np.linalg.lstsq(system, rhs, rcond=None)[0], dtype=np.float64)
        clipped: FloatArray = np.clip(mu, 0.0, None)
        return clipped / clipped.sum()

    @cached_property
    def behaviour_distribution(self) -> FloatArray:
        """``mu``: the off-policy state weighting (the behaviour's, unless the env sets one)."""
        if self.state_weighting is not None:
            return self.state_weighting
        return self.on_policy_distribution(self.behaviour_policy)

    @cached_property
    def target_distribution(self) -> FloatArray:
        """``d_pi``: the on-policy state distribution of the target policy."""
        return self.on_policy_distribution(self.target_policy)

    def state_values(self, policy: FloatArray) -> FloatArray:
        """``v_pi``, solving ``(I - gamma P_pi) v = r_pi`` on non-terminal states."""
        live = ~self.terminal
        p_live = self.policy_transition(policy)[np.ix_(live, live)]
        values = np.zeros(self.n_states)
        values[live] = np.linalg.solve(
            np.eye(p_live.shape[0]) - self.gamma * p_live, self.policy_reward(policy)[live]
        )
        return values

    @cached_property
    def target_values(self) -> FloatArray:
        """``v_pi`` of the target policy."""
        return self.state_values(self.target_policy)

    @cached_property
    def optimal_action_values(self) -> FloatArray:
        """``q*[s, a]`` by value iteration (to 1e-12, or until 100,000 sweeps)."""
        expected_reward = np.einsum("sat,sat->sa", self.transition, self.reward)
        q = np.zeros((self.n_states, self.n_actions))
        for _ in range(100_000):
            updated = expected_reward + self.gamma * self.transition @ q.max(axis=1)
            if np.max(np.abs(updated - q)) < 1e-12:
                return updated
            q = updated
        return q

    def max_return(self, reward_floor: float = 1.0) -> float:
        """The largest realisable return magnitude: ``R_max / (1 - gamma)``.

        ``R_max`` is at least ``reward_floor`` so that zero-reward counterexamples
        (Baird's) are judged against the bound of a unit-reward task, as van
        Hasselt et al. (2018) do with rewards clipped to [-1, 1]. Undiscounted
        episodic tasks use the longest expected episode under either policy.
        """
        r_max = max(self.reward_bound, reward_floor)
        if self.gamma < 1.0:
            return r_max / (1.0 - self.gamma)
        live = ~self.terminal
        durations = []
        for policy in (self.behaviour_policy, self.target_policy):
            p_live = self.policy_transition(policy)[np.ix_(live, live)]
            steps = np.linalg.solve(np.eye(p_live.shape[0]) - p_live, np.ones(p_live.shape[0]))
            durations.append(float(steps.max()))
        return r_max * max(durations)


def _stochastic(row_sums: FloatArray) -> bool:
    return bool(np.all(np.abs(row_sums - 1.0) < _STOCHASTIC_TOLERANCE))


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(f"invalid exact model: expected {what}")
