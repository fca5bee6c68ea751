"""Compiled helpers shared by the sampled learners: the model bundle, random draws, logging.

Every seed owns its random stream, a SplitMix64 generator (Steele, Lea &
Flood 2014) whose state starts from the hashed seed and lives in the kernel,
so a seed's numbers never depend on which other seeds share the batch or on
thread scheduling. SplitMix64 passes BigCrush and costs a few nanoseconds a
draw, a tenth of Numba's shared Mersenne Twister that would need reseeding.

A kernel reads the problem from one `SampledModel` and writes its logs into
separate output arrays: Numba loses writes made through a NamedTuple's arrays
inside ``prange`` (numba/numba#7135), reads are fine. `run_sampled` is the one
Python-side call of every kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numba
import numpy as np

from rlharness.agents.linear.problem import LinearProblem
from rlharness.agents.linear.types import FloatArray, Hyperparameters, IntArray, LearnerTrace

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_UNIT = 1.0 / float(1 << 53)

SampledRunner = Callable[
    [LinearProblem, FloatArray, list[int], Hyperparameters, IntArray, FloatArray], LearnerTrace
]
"""(problem, w0, seeds, hyperparameters, marks, hard_limits) -> what every seed logged at marks."""


class SampledModel(NamedTuple):
    """What a compiled learner samples transitions from and learns on, built once per run.

    ``features`` are the learner's rows, x(s) for state values or x(s, a) for
    action values; the ``*_cum`` tables are cumulative probabilities for
    `draw`: the start distribution, the behaviour policy b(a|s) and the
    transitions p(s'|s, a). ``importance_ratio[s, a]`` is pi(a|s) / b(a|s).
    """

    features: FloatArray
    start_cum: FloatArray
    behaviour_cum: FloatArray
    transition_cum: FloatArray
    reward: FloatArray
    importance_ratio: FloatArray
    terminal: np.ndarray
    gamma: float


def sampled_model(problem: LinearProblem) -> SampledModel:
    """The sampling tables of ``problem``, contiguous as the kernels are compiled for."""
    model = problem.model
    features = (
        problem.state_features if problem.action_features is None else problem.action_features
    )
    return SampledModel(
        features=np.ascontiguousarray(features),
        start_cum=cumulative(model.start_distribution),
        behaviour_cum=cumulative(problem.behaviour_policy),
        transition_cum=cumulative(model.transition),
        reward=np.ascontiguousarray(model.reward),
        importance_ratio=np.ascontiguousarray(problem.importance_ratio),
        terminal=np.ascontiguousarray(model.terminal),
        gamma=float(model.gamma),
    )


def run_sampled(
    kernel: Callable[..., None],
    problem: LinearProblem,
    w0: FloatArray,
    seeds: list[int],
    marks: IntArray,
    hard_limits: FloatArray,
    *parameters: Any,
) -> LearnerTrace:
    """Run a compiled learner for every seed (rows of ``w0``) for ``marks[-1]`` transitions.

    Every kernel takes the same leading arguments, (keys, w0, model, marks,
    hard_limits, out_weights, out_td_mean, out_td_rms, out_hard_step), then
    its rule's own ``parameters`` (step sizes, n, target period). Seed i
    stops once a weight is non-finite or beyond ``hard_limits[i]``.
    """
    trace = allocate_trace(marks, len(seeds), w0)
    kernel(
        seed_keys(seeds),
        np.ascontiguousarray(w0),
        sampled_model(problem),
        marks,
        np.ascontiguousarray(hard_limits),
        trace.weights,
        trace.td_error_mean,
        trace.td_error_rms,
        trace.hard_divergence_step,
        *parameters,
    )
    return trace


def allocate_trace(marks: IntArray, n_seeds: int, w0: FloatArray) -> LearnerTrace:
    """A NaN-filled trace with the initial weights logged at step 0."""
    weights = np.full((marks.size, n_seeds, w0.shape[1]), np.nan)
    weights[0] = w0
    td_mean = np.full((marks.size, n_seeds), np.nan)
    td_rms = np.full((marks.size, n_seeds), np.nan)
    hard_step = np.full(n_seeds, -1, dtype=np.int64)
    return LearnerTrace(marks, weights, td_mean, td_rms, hard_step)


def seed_keys(seeds: list[int]) -> np.ndarray:
    """The initial generator state of each seed: the first SplitMix64 output of the seed."""
    state = np.asarray(seeds, dtype=np.uint64) + _GOLDEN_GAMMA
    return _mix(state)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


@numba.njit(inline="always", cache=True, nogil=True)
def next_raw(rng: np.ndarray) -> np.uint64:
    """Advance the one-element SplitMix64 state ``rng`` and return 64 random bits."""
    rng[0] += _GOLDEN_GAMMA
    z = rng[0]
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


@numba.njit(inline="always", cache=True, nogil=True)
def uniform(rng: np.ndarray) -> float:
    """A uniform draw from [0, 1) with 53 random bits."""
    return float(next_raw(rng) >> np.uint64(11)) * _UNIT


@numba.njit(inline="always", cache=True, nogil=True)
def new_stream(key: np.uint64) -> np.ndarray:
    """The generator state of one seed."""
    rng = np.empty(1, dtype=np.uint64)
    rng[0] = key
    return rng


def cumulative(probabilities: FloatArray) -> FloatArray:
    """Cumulative probabilities along the last axis, the last entry forced to exactly 1."""
    cumulative_sums = np.cumsum(probabilities, axis=-1)
    cumulative_sums[..., -1] = 1.0
    return np.ascontiguousarray(cumulative_sums)


@numba.njit(inline="always", cache=True, nogil=True)
def draw(cumulative_row: FloatArray, rng: np.ndarray) -> int:
    """Sample an index from a row of cumulative probabilities."""
    u = uniform(rng)
    index = 0
    while u >= cumulative_row[index]:
        index += 1
    return index


@numba.njit(inline="always", cache=True, nogil=True)
def behave(model: SampledModel, s: int, rng: np.ndarray) -> tuple[int, int]:
    """One transition under the behaviour policy: A ~ b(.|s), then S' ~ p(.|s, A)."""
    a = draw(model.behaviour_cum[s], rng)
    return a, draw(model.transition_cum[s, a], rng)


@numba.njit(inline="always", cache=True, nogil=True)
def continue_from(model: SampledModel, s_next: int, rng: np.ndarray) -> int:
    """Where the next transition starts: S', or a fresh start state once S' is terminal."""
    return draw(model.start_cum, rng) if model.terminal[s_next] else s_next


class TDStatistics(NamedTuple):
    """Running sums of one seed's TD errors since its previous log."""

    td_sum: float
    td_square_sum: float
    td_count: int


NO_TD_ERRORS = TDStatistics(0.0, 0.0, 0)


@numba.njit(inline="always", cache=True, nogil=True)
def add_td_error(statistics: TDStatistics, td_error: float) -> TDStatistics:
    """``statistics`` with one more TD error."""
    return TDStatistics(
        statistics.td_sum + td_error,
        statistics.td_square_sum + td_error * td_error,
        statistics.td_count + 1,
    )


@numba.njit(inline="always", cache=True, nogil=True)
def dot(x: FloatArray, w: FloatArray) -> float:
    """x^T w without allocating."""
    total = 0.0
    for j in range(x.size):
        total += x[j] * w[j]
    return total


@numba.njit(inline="always", cache=True, nogil=True)
def axpy(w: FloatArray, coefficient: float, x: FloatArray) -> None:
    """w <- w + coefficient * x, in place."""
    for j in range(w.size):
        w[j] += coefficient * x[j]


@numba.njit(inline="always", cache=True, nogil=True)
def axpy_exploded(w: FloatArray, coefficient: float, x: FloatArray, limit: float) -> bool:
    """w <- w + coefficient * x in place; whether any weight is now non-finite or beyond limit."""
    bad = False
    for j in range(w.size):
        w[j] += coefficient * x[j]
        bad |= not abs(w[j]) <= limit
    return bad


@numba.njit(inline="always", cache=True, nogil=True)
def move_target(w_target: FloatArray, w: FloatArray, tau: float, radius: float) -> None:
    """w- <- w- + tau (Proj_R(w) - w-) in place: `expected.target_update` for one seed."""
    scale = 1.0
    if radius != np.inf:
        norm = np.sqrt(dot(w, w))
        if norm > radius:
            scale = radius / norm
    if tau == 1.0:
        for j in range(w.size):
            w_target[j] = scale * w[j]
        return
    for j in range(w.size):
        w_target[j] += tau * (scale * w[j] - w_target[j])


@numba.njit(inline="always", cache=True, nogil=True)
def exploded(w: FloatArray, limit: float) -> bool:
    """Whether any weight is non-finite or beyond ``limit`` in magnitude."""
    for j in range(w.size):  # noqa: SIM110 (a plain loop compiles to the fastest code)
        if not abs(w[j]) <= limit:
            return True
    return False


@numba.njit(inline="always", cache=True, nogil=True)
def record(
    out_weights: FloatArray,
    out_td_mean: FloatArray,
    out_td_rms: FloatArray,
    log: int,
    seed_index: int,
    w: FloatArray,
    statistics: TDStatistics,
) -> None:
    """Write seed ``seed_index``'s weights and TD-error statistics at log slot ``log``."""
    out_weights[log, seed_index, :] = w
    if statistics.td_count > 0:
        out_td_mean[log, seed_index] = statistics.td_sum / statistics.td_count
        out_td_rms[log, seed_index] = np.sqrt(statistics.td_square_sum / statistics.td_count)
