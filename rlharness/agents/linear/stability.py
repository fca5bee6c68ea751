"""The exact affine map of expected linear learning, and its spectral radius.

An expected update is affine in the joint state z = (w, w-, aux) (the weights,
the target weights and gradient TD's secondary weights v; emphatic TD's
expected emphasis is held at its limit, see `sweep_map`): z <- M z + m. One
target period of P sweeps, followed by the target update of `run_expected`,
is the product U S^P of the sweep map S (w- held) and the target update
U: w- <- w- + tau (w - w-), composed by repeated squaring. The iteration is
stable iff the spectral radius rho(U S^P) < 1 (Sutton & Barto, 2nd ed.,
section 11.2's w -> 2w factor; Tsitsiklis & Van Roy 1996's (6 - 4 eps) gamma / 5).
With a copy (tau = 1) U overwrites w-, so the nonzero eigenvalues are those of
the period map of w alone with w- = w. Directions of w that no feature sees
are left out (`seen_subspace`). The map is the unprojected one: a
projection radius R clips the target nonlinearly and is left out.

A sampled rule is predicted by the mean of its update, its expected
counterpart (semi_gradient_td -> semi_gradient_dp). Where the behaviour never
takes an action the target policy takes, the importance ratio there is 0, so
the mean of rho delta x sums over the covered actions only:
sum_s mu(s) sum_a pi(a|s) [b(a|s) > 0] E[delta | s, a] x(s), the expected
form with weighting mu(s) pi_b(s), pi_b(s) the covered target mass, and the
target policy renormalised over the covered actions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from rlharness.agents.linear import RULES, LinearProblem, update_kind
from rlharness.agents.linear.emphatic import expected_emphatic_td
from rlharness.agents.linear.types import FloatArray, Hyperparameters
from rlharness.spec import AgentName, LinearAgentSpec, TriadSpec

MARGINAL_TOLERANCE = 1e-9
"""|rho - 1| within this is marginal stability (neither growing nor shrinking)."""


class AffineMap(NamedTuple):
    """z -> ``matrix`` z + ``offset`` on the joint state z = (w, w-, aux)."""

    matrix: FloatArray
    offset: FloatArray

    def then(self, outer: AffineMap) -> AffineMap:
        """``outer`` applied after this map."""
        return AffineMap(outer.matrix @ self.matrix, outer.matrix @ self.offset + outer.offset)

    def power(self, times: int) -> AffineMap:
        """This map applied ``times`` times, by repeated squaring."""
        size = self.offset.size
        homogeneous = np.eye(size + 1)
        homogeneous[:size, :size], homogeneous[:size, size] = self.matrix, self.offset
        result = np.linalg.matrix_power(homogeneous, times)
        return AffineMap(result[:size, :size], result[:size, size])


class Stability(NamedTuple):
    """The spectral radius of one target period's map and per update.

    ``verdict`` is ``stable`` (rho < 1), ``marginal`` (rho = 1 within
    `MARGINAL_TOLERANCE`) or ``divergent`` (rho > 1).
    """

    period_radius: float
    radius: float
    period: int

    @property
    def verdict(self) -> str:
        """stable, marginal or divergent."""
        if abs(self.radius - 1.0) <= MARGINAL_TOLERANCE:
            return "marginal"
        return "divergent" if self.radius > 1.0 else "stable"


def predicted_rule(agent: LinearAgentSpec) -> AgentName:
    """The rule whose expected form gives the mean update of ``agent``."""
    rule = RULES[agent.name]
    if rule.expected is None:
        assert rule.counterpart is not None
        return rule.counterpart
    return agent.name


def stability_problems(
    agent: LinearAgentSpec, triad: TriadSpec, problem: LinearProblem
) -> list[str]:
    """Field-named reasons the map of ``agent`` is not affine or not derived (empty if none)."""
    problems = []
    name = predicted_rule(agent)
    if RULES[name].control:
        affine = ", ".join(n for n, rule in RULES.items() if not rule.control)
        problems.append(
            f"agent.name: {agent.name}'s expected update takes a max over actions, so it is "
            f"not an affine map; allowed: {affine}"
        )
    elif (
        update_kind(agent) == "sampled"
        and not _covered(problem)
        and (triad.n_step != 1 or RULES[name].auxiliary == "states")
    ):
        problems.append(
            f"triad.n_step: the behaviour never takes some action of the target policy, and "
            f"the mean update of sampled {agent.name} is derived for one-step, non-emphatic "
            f"rules only; allowed: n_step 1 (got {triad.n_step})"
        )
    return problems


def mean_update_problem(agent: LinearAgentSpec, problem: LinearProblem) -> LinearProblem:
    """The problem whose expected form is the mean update of ``agent`` (see the module doc)."""
    if update_kind(agent) == "expected" or _covered(problem):
        return problem
    covered = np.where(problem.behaviour_policy > 0, problem.target_policy, 0.0)
    mass = covered.sum(axis=1)
    renormalised = np.divide(
        covered, mass[:, None], out=problem.target_policy.copy(), where=mass[:, None] > 0
    )
    return dataclasses.replace(
        problem, target_policy=renormalised, weighting=problem.weighting * mass
    )


def _covered(problem: LinearProblem) -> bool:
    """Whether the behaviour takes every action the target policy takes."""
    return bool(np.all((problem.target_policy == 0) | (problem.behaviour_policy > 0)))


def sweep_map(
    problem: LinearProblem, name: AgentName, hyperparameters: Hyperparameters
) -> AffineMap:
    """The exact affine map of one expected sweep on z = (w, w-, aux), w- held.

    The step is evaluated on the zero state and each basis vector of z at once,
    one per row (rows are seeds: `per_row` keeps each row's result its own).
    Emphatic TD's step multiplies the emphasis by the TD error, so it is not
    affine in (w, emphasis); its map is the one of w at the stationary emphasis
    (`stationary_emphasis`), which the emphasis approaches geometrically, and
    z = (w, w-).
    """
    rule = RULES[name]
    assert rule.expected is not None
    step = rule.expected(problem, hyperparameters)
    d = problem.n_features
    if rule.auxiliary == "states":
        emphasis = stationary_emphasis(problem, hyperparameters)[None, :]
        return _affine(lambda W, W_target, _: step(W, W_target, emphasis)[0], d, 0)
    width = d if rule.auxiliary == "features" else 0

    def image(W: FloatArray, W_target: FloatArray, auxiliary: FloatArray) -> FloatArray:
        W_next, auxiliary_next, _ = step(W, W_target, auxiliary if width else np.zeros(0))
        return np.hstack([W_next, np.reshape(auxiliary_next, (W.shape[0], width))])

    return _affine(image, d, width)


def _affine(
    image: Callable[[FloatArray, FloatArray, FloatArray], FloatArray], d: int, width: int
) -> AffineMap:
    """The map z -> (w', w-, aux') of z = (w, w-, aux), ``image`` giving the rows (w', aux'),
    from the images of the zero state and of each basis vector."""
    size = 2 * d + width
    rows = np.vstack([np.zeros(size), np.eye(size)])
    W, W_target, auxiliary = rows[:, :d], rows[:, d : 2 * d], rows[:, 2 * d :]
    mapped = image(W, W_target, auxiliary)
    images = np.hstack([mapped[:, :d], W_target, mapped[:, d:]])
    offset = images[0]
    return AffineMap((images[1:] - offset).T, offset)


def stationary_emphasis(problem: LinearProblem, hyperparameters: Hyperparameters) -> FloatArray:
    """Emphatic TD's expected emphasis f* = mu i + gamma P_pi^T f* (its limit over sweeps)."""
    step = expected_emphatic_td(problem, hyperparameters)
    n = problem.model.n_states
    rows = np.vstack([np.zeros(n), np.eye(n)])
    _, images, _ = step(
        np.zeros((n + 1, problem.n_features)), np.zeros((n + 1, problem.n_features)), rows
    )
    offset = images[0]
    follow_on = (images[1:] - offset).T
    return np.linalg.solve(np.eye(n) - follow_on, offset)


def target_update_map(n_features: int, size: int, tau: float) -> AffineMap:
    """w- <- w- + tau (w - w-) on z = (w, w-, aux): `target_update` without projection."""
    matrix = np.eye(size)
    d = n_features
    matrix[d : 2 * d, : 2 * d] = np.hstack([tau * np.eye(d), (1.0 - tau) * np.eye(d)])
    return AffineMap(matrix, np.zeros(size))


def period_map(
    problem: LinearProblem, name: AgentName, hyperparameters: Hyperparameters
) -> AffineMap:
    """One target period: ``target_update_period`` sweeps, then the target update."""
    sweep = sweep_map(problem, name, hyperparameters)
    period = hyperparameters.target_update_period
    update = target_update_map(
        problem.n_features, sweep.offset.size, hyperparameters.target_update_tau
    )
    return sweep.power(period).then(update)


def spectral_radius(matrix: FloatArray) -> float:
    """The largest eigenvalue modulus (inf if the matrix holds a non-finite entry)."""
    if not np.all(np.isfinite(matrix)):
        return float("inf")
    return float(np.abs(np.linalg.eigvals(matrix)).max())


def seen_subspace(problem: LinearProblem, size: int) -> FloatArray:
    """An orthonormal basis (columns) of z's directions that some value sees.

    The rest, w, w- and gradient TD's v in the null space of the features X
    (Baird's 8 features over 7 states), is invariant under every rule's map: no
    update sees it, so it stays put (or shrinks, with a ridge, TDRC's kappa or
    at a target copy), and its eigenvalues 1 would make every map look
    marginal. It is left out.
    """
    d = problem.n_features
    _, singular, right = np.linalg.svd(problem.state_features, full_matrices=False)
    row_space = right[singular > singular.max() * max(problem.state_features.shape) * 1e-15].T
    blocks = size // d  # w, w- and, for gradient TD, v: each of the features' length
    return np.kron(np.eye(blocks), row_space)


def stability(
    problem: LinearProblem, name: AgentName, hyperparameters: Hyperparameters
) -> Stability:
    """The spectral radius of one period of expected ``name`` on ``problem``, and per update,
    on the `seen_subspace`."""
    period = hyperparameters.target_update_period
    with np.errstate(all="ignore"):
        matrix = period_map(problem, name, hyperparameters).matrix
        seen = seen_subspace(problem, matrix.shape[0])
        radius = spectral_radius(seen.T @ matrix @ seen)
    return Stability(radius, radius ** (1.0 / period), period)
