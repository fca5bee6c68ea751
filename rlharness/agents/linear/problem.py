"""A linear value-learning problem: an exact model with the triad knobs applied.

`LinearProblem` is what every linear learner consumes: the feature matrix
(the env's, or one-hot when function approximation is off), the behaviour and
target policies (equal when off-policy learning is off), the state weighting
of expected updates, and the arrays that the compiled samplers draw from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rlharness.agents.linear.types import FloatArray, per_row
from rlharness_envs.model import ExactModel


@dataclass(frozen=True)
class LinearProblem:
    """The exact model seen through the triad knobs.

    ``state_features`` are the rows of v-hat(s) = x(s)^T w; ``action_features``
    (control only) are x(s, a). ``weighting`` is the state distribution of
    expected updates: the env's off-policy weighting mu, or the target policy's
    on-policy distribution d_pi when off-policy learning is switched off.
    ``projection`` is the G of projected features x'(s) = G x(s) (None otherwise).
    """

    model: ExactModel
    state_features: FloatArray
    action_features: FloatArray | None
    behaviour_policy: FloatArray
    target_policy: FloatArray
    weighting: FloatArray
    projection: FloatArray | None = None

    @property
    def n_features(self) -> int:
        """Length of the weight vector."""
        if self.action_features is not None:
            return int(self.action_features.shape[2])
        return int(self.state_features.shape[1])

    @property
    def importance_ratio(self) -> FloatArray:
        """``rho[s, a] = pi(a|s) / b(a|s)`` (0 where b never takes a)."""
        b = self.behaviour_policy
        return np.divide(self.target_policy, b, out=np.zeros_like(b), where=b > 0)

    @cached_property
    def policy_transition(self) -> FloatArray:
        """``P_pi[s, s']`` of the target policy."""
        return self.model.policy_transition(self.target_policy)

    @cached_property
    def target_values(self) -> FloatArray:
        """The true ``v_pi`` (prediction) or ``q*`` flattened over (s, a) (control)."""
        if self.control:
            return self.model.optimal_action_values.reshape(-1)
        return self.model.target_values

    @property
    def control(self) -> bool:
        """Whether values are action values over (s, a) rows."""
        return self.action_features is not None

    @cached_property
    def rows(self) -> FloatArray:
        """The feature matrix of the value rows: states, or (s, a) pairs in s-major order."""
        if self.action_features is not None:
            return self.action_features.reshape(-1, self.n_features)
        return self.state_features

    @cached_property
    def row_weighting(self) -> FloatArray:
        """The weighting of the value rows: mu(s), or mu(s) b(a|s) for action values."""
        if self.control:
            return (self.weighting[:, None] * self.behaviour_policy).reshape(-1)
        return self.weighting

    def expected_target(self, values: FloatArray, n_step: int | None) -> FloatArray:
        """Apply the Bellman operator of the target policy n times to rows of ``values``.

        Prediction: (T v)(s) = r_pi(s) + gamma sum_s' P_pi(s, s') v(s'); ``n_step``
        None is the Monte Carlo target v_pi. Control: the optimality operator
        (T q)(s, a) = r(s, a) + gamma sum_s' P(s'|s, a) max_a' q(s', a').
        """
        if n_step is None:
            return np.broadcast_to(self.target_values, values.shape)
        model = self.model
        if self.control:
            expected_reward = np.einsum("sat,sat->sa", model.transition, model.reward).reshape(-1)
            transition = model.transition.reshape(-1, model.n_states)
            for _ in range(n_step):
                best = values.reshape(values.shape[0], model.n_states, model.n_actions).max(axis=2)
                values = expected_reward + model.gamma * per_row(best, transition.T)
            return values
        if n_step == 1:
            reward = model.policy_reward(self.target_policy)
            return reward + model.gamma * per_row(values, self.policy_transition.T)
        reward_n, discount_n = self.n_step_operator(n_step)
        return reward_n + per_row(values, discount_n.T)

    def n_step_operator(self, n_step: int) -> tuple[FloatArray, FloatArray]:
        """``(r_n, A_n)`` with ``T^n v = r_n + A_n v`` for the target policy's Bellman operator.

        ``A_n = (gamma P_pi)^n`` and ``r_n = sum_{k<n} (gamma P_pi)^k r_pi``, by repeated
        squaring: O(log n) matrix products instead of n per sweep, so n = 10^9 is as
        cheap as n = 30 (and ``A_n`` underflows to zero where gamma^n does).
        """
        base = (
            self.model.policy_reward(self.target_policy),
            self.model.gamma * self.policy_transition,
        )
        result: tuple[FloatArray, FloatArray] | None = None
        remaining = n_step
        while remaining:
            if remaining & 1:
                result = base if result is None else _compose(result, base)
            remaining >>= 1
            if remaining:
                base = _compose(base, base)
        assert result is not None
        return result

    def initial_weights(self, env_weights: list[float] | None) -> FloatArray:
        """w0 for this feature space from w0 in the env's feature space.

        Tabular features start from the same initial values as the env's
        features would: w0_tabular = X w0 (per state, or per state-action).
        Projected features start from the least-squares fit of those values,
        the minimum-norm w' with X G^T w' = X w0 once they span the env's features.
        """
        env_dimension = _env_dimension(self.model, self.action_features is not None)
        if env_weights is None:
            return np.zeros(self.n_features)
        weights = np.asarray(env_weights, dtype=np.float64)
        if weights.shape != (env_dimension,):
            raise ValueError(
                f"needs {env_dimension} values (the env's feature dimension), got {weights.size}"
            )
        if self.n_features == env_dimension and _uses_env_features(self):
            return weights
        env_rows = (
            self.model.action_features if self.action_features is not None else self.model.features
        )
        assert env_rows is not None
        values = (env_rows @ weights).reshape(-1)
        if self.projection is not None:
            return np.linalg.lstsq(self.rows, values, rcond=None)[0]
        live = np.repeat(~self.model.terminal, values.size // self.model.n_states)
        return values[live]


def _compose(
    outer: tuple[FloatArray, FloatArray], inner: tuple[FloatArray, FloatArray]
) -> tuple[FloatArray, FloatArray]:
    """The affine map ``v -> r_o + A_o (r_i + A_i v)`` of two maps ``v -> r + A v``."""
    outer_reward, outer_discount = outer
    inner_reward, inner_discount = inner
    return outer_reward + outer_discount @ inner_reward, outer_discount @ inner_discount


def build_problem(
    model: ExactModel,
    features: str,
    off_policy: bool,
    control: bool,
    feature_width: int | None = None,
    feature_seed: int = 0,
) -> LinearProblem:
    """Apply the function-approximation and off-policy knobs to ``model``."""
    if control and model.action_features is None:
        raise ValueError("this env has no action-value features (a control form)")
    live = ~model.terminal
    projection = None
    if features == "projected":
        assert feature_width is not None
        env_rows = model.action_features if control else model.features
        assert env_rows is not None
        projection = random_projection(feature_width, env_rows.shape[-1], feature_seed)
        state_features = model.features @ projection.T if not control else model.features
        action_features = env_rows @ projection.T if control else None
    elif features == "tabular":
        state_features = _one_hot(live)
        action_features = None
        if control:
            pairs = _one_hot(np.repeat(live, model.n_actions))
            action_features = pairs.reshape(model.n_states, model.n_actions, -1)
    else:
        state_features = model.features
        action_features = model.action_features if control else None
    target = model.target_policy
    behaviour = model.behaviour_policy if off_policy else target
    weighting = model.behaviour_distribution if off_policy else model.target_distribution
    return LinearProblem(
        model=model,
        state_features=state_features,
        action_features=action_features,
        behaviour_policy=behaviour,
        target_policy=target,
        weighting=weighting,
        projection=projection,
    )


def random_projection(width: int, dimension: int, seed: int) -> FloatArray:
    """G (width x dimension) with independent N(0, 1 / width) entries, a function of ``seed``.

    The width knob of Che et al. (ICML 2024, "Target Networks and Over-parameterization
    Stabilize Off-policy Bootstrapping with Function Approximation"): the learner's
    features x'(s) = G x(s) are linear in the env's, so rank X G^T = min(width, rank X)
    almost surely: over-parameterised (full row rank, their condition) once width >=
    rank X, where the env's features have full row rank (Baird's: 8 features, rank 7 for
    7 states), and under-parameterised below. Terminal rows stay zero. The 1 / sqrt(width)
    scale keeps E[G^T G] = I, so the value-space kernel X G^T G X^T stays near X X^T and
    the env's counterexample survives at every width.
    """
    generator = np.random.default_rng(seed)
    return generator.standard_normal((width, dimension)) / np.sqrt(width)


def _one_hot(live: np.ndarray) -> FloatArray:
    """One feature per live row; terminal rows are zero."""
    features = np.zeros((live.size, int(live.sum())))
    features[np.flatnonzero(live), np.arange(int(live.sum()))] = 1.0
    return features


def _env_dimension(model: ExactModel, control: bool) -> int:
    if control:
        assert model.action_features is not None
        return int(model.action_features.shape[2])
    return int(model.features.shape[1])


def _uses_env_features(problem: LinearProblem) -> bool:
    if problem.action_features is not None:
        return problem.action_features is problem.model.action_features
    return problem.state_features is problem.model.features
