"""Aggregate statistics over seeds with stratified bootstrap intervals (Agarwal et al. 2021).

Scores of one group (an agent, a grid point, a trial) are a matrix of
``runs x tasks``: one row per seed, one column per environment. Point
estimates use rliable's metrics; the 95% percentile intervals come from
rliable's stratified bootstrap, which resamples seeds within each task.
The median is the median over all runs and tasks (rliable's median is the
median of per-task means, which for one task is the mean).

A score that is not a number (a metric of a diverged seed) counts as the
worst value: +inf when lower is better, -inf when higher is better. An
interval bound that falls among infinite bootstrap values is that infinity.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import trim_mean

CONFIDENCE = 0.95
DEFAULT_REPS = 2000
ESTIMATORS = ("mean", "median", "iqm")
IQM_TRIM = 0.25
"""The interquartile mean cuts this fraction of the scores at each end (Agarwal et al. 2021)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval."""

    value: float
    low: float
    high: float


@contextmanager
def _seeded(seed: int) -> Iterator[np.random.RandomState]:
    """A seeded generator for rliable, with NumPy's global generator seeded alike meanwhile.

    rliable's stratified bootstrap draws run indices from NumPy's global
    generator, not from the ``random_state`` it is given; the global state is
    restored afterwards, so callers see no side effect.
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            yield np.random.RandomState(seed)
    finally:
        np.random.set_state(saved)


def worst_as_infinite(scores: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """``scores`` as floats with every NaN replaced by the worst value for the direction."""
    array = np.array(scores, dtype=float)
    array[np.isnan(array)] = -np.inf if higher_is_better else np.inf
    return array


def point_estimates(scores: np.ndarray) -> np.ndarray:
    """Mean, median and IQM of one ``runs x tasks`` matrix, by rliable's definitions."""
    from rliable import metrics

    with np.errstate(invalid="ignore"):
        return np.array(
            [metrics.aggregate_mean(scores), np.median(scores), metrics.aggregate_iqm(scores)]
        )


def resampled_estimates(scores: np.ndarray) -> np.ndarray:
    """`point_estimates` for one bootstrap resample, without scipy's per-call overhead.

    The IQM is the mean of the sorted scores with a quarter of them cut at each
    end, the elements `scipy.stats.trim_mean` keeps; tests check both agree.
    """
    ordered = np.sort(scores, axis=None)
    cut = int(IQM_TRIM * ordered.size)
    with np.errstate(invalid="ignore"):
        return np.array(
            [
                np.mean(np.mean(scores, axis=0)),
                np.median(ordered),
                np.mean(ordered[cut : ordered.size - cut]),
            ]
        )


def improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 per task, averaged over tasks: the Mann-Whitney U / (n m)
    that rliable's `probability_of_improvement` computes, by counting pairs directly."""
    beats = (scores_x[:, None, :] > scores_y[None, :, :]).mean(axis=(0, 1))
    ties = (scores_x[:, None, :] == scores_y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(beats + 0.5 * ties))


def _percentile_interval(bootstrap: object, func: Callable[..., Any], reps: int, size: float):
    with np.errstate(invalid="ignore"):
        return bootstrap.conf_int(func, reps=reps, size=size, method="percentile")  # type: ignore[attr-defined]


def interval_estimates(
    scores: Mapping[str, np.ndarray],
    higher_is_better: bool = True,
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, dict[str, Estimate]]:
    """Mean, median and IQM of each group's ``runs x tasks`` scores, with bootstrap intervals.

    Percentile intervals from rliable's stratified bootstrap. The same ``seed``
    gives the same intervals. Returns ``{group: {"mean" | "median" | "iqm": Estimate}}``.
    """
    from rliable import library as rly

    worst = -np.inf if higher_is_better else np.inf
    result = {}
    with _seeded(seed) as generator:
        for name, values in scores.items():
            prepared = worst_as_infinite(np.atleast_2d(values.T).T, higher_is_better)
            points = point_estimates(prepared)
            bootstrap = rly.StratifiedBootstrap(prepared, random_state=generator)
            low, high = (
                np.where(np.isnan(bound), worst, bound)
                for bound in _percentile_interval(bootstrap, resampled_estimates, reps, confidence)
            )
            result[name] = {
                estimator: Estimate(float(points[i]), float(low[i]), float(high[i]))
                for i, estimator in enumerate(ESTIMATORS)
            }
    return result


PER_STEP: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": lambda pooled: np.asarray(trim_mean(pooled, IQM_TRIM, axis=0)),
    "mean": lambda pooled: np.mean(pooled, axis=0),
    "median": lambda pooled: np.median(pooled, axis=0),
}
"""Estimators over the pooled runs and tasks (axis 0) of each logged step (axis 1)."""


def curve_intervals(
    scores: np.ndarray,
    estimator: str = "iqm",
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step estimate and percentile band of a ``runs x tasks x steps`` array of curves.

    Each replicate of rliable's stratified bootstrap resamples whole curves
    (runs) within each task, the same runs at every step, as in rliable's
    sample-efficiency curves. Returns ``(estimate, low, high)``, one value per step.
    """
    from rliable import library as rly

    statistic = PER_STEP[estimator]
    steps = scores.shape[-1]

    def per_step(resample: np.ndarray) -> np.ndarray:
        return statistic(resample.reshape(-1, steps))

    with _seeded(seed) as generator:
        bootstrap = rly.StratifiedBootstrap(scores, random_state=generator)
        low, high = _percentile_interval(bootstrap, per_step, reps, confidence)
    return per_step(scores), low, high


def curve_area(steps: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under a logged curve divided by its span: the curve's mean over training."""
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    if len(steps) == 0:
        return math.nan
    if len(steps) == 1 or steps[-1] == steps[0]:
        return float(values[-1])
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))


def probability_of_improvement(
    scores: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    higher_is_better: bool = True,
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[tuple[str, str], Estimate]:
    """P(X > Y) for each pair (X, Y): the chance that a run of X beats a run of Y on a task.

    Averaged over tasks (Agarwal et al. 2021, section 4.3), with percentile
    intervals from rliable's stratified independent bootstrap. When lower is
    better, "beats" means lower.
    """
    from rliable import library as rly
    from rliable import metrics

    sign = 1.0 if higher_is_better else -1.0
    prepared = {
        name: sign * worst_as_infinite(np.atleast_2d(values.T).T, higher_is_better)
        for name, values in scores.items()
    }
    result = {}
    with _seeded(seed) as generator:
        for x, y in pairs:
            point = float(metrics.probability_of_improvement(prepared[x], prepared[y]))
            bootstrap = rly.StratifiedIndependentBootstrap(
                prepared[x], prepared[y], random_state=generator
            )
            low, high = np.ravel(_percentile_interval(bootstrap, improvement, reps, confidence))
            result[(x, y)] = Estimate(point, float(low), float(high))
    return result


def proportion_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> Estimate:
    """A fraction with its Wilson score interval (sound for small counts and 0 or 1 rates)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=1 - confidence, method="wilson")
    # The Wilson bounds at 0 and n successes are exactly 0 and 1, up to rounding.
    low = 0.0 if successes == 0 else float(low)
    high = 1.0 if successes == trials else float(high)
    return Estimate(successes / trials, low, high)


def performance_profiles(
    scores: Mapping[str, np.ndarray],
    thresholds: np.ndarray,
    higher_is_better: bool = True,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score distributions: the fraction of runs scoring above each threshold (below, when
    lower is better), with ``2 x len(thresholds)`` stratified bootstrap bands.
    """
    from rliable import library as rly

    sign = 1.0 if higher_is_better else -1.0
    prepared = {
        name: sign * worst_as_infinite(np.atleast_2d(values.T).T, higher_is_better)
        for name, values in scores.items()
    }
    taus = sign * np.asarray(thresholds, dtype=float)

    def profile(runs: np.ndarray) -> np.ndarray:
        # rliable's run_score_deviation (the mean of runs > tau), for all thresholds at once.
        return np.mean(runs.reshape(-1, 1) > taus, axis=0)

    with _seeded(seed) as generator:
        profiles, bands = rly.get_interval_estimates(
            prepared, profile, reps=reps, random_state=generator
        )
    return profiles, bands
