"""Aggregate statistics over seeds with stratified bootstrap intervals (Agarwal et al. 2021).

Scores of one group (an agent, a grid point, a trial) are a matrix of
``runs x tasks``: one row per seed, one column per environment. The
interquartile mean, the mean and the 95% stratified bootstrap intervals come
from rliable; the stratified bootstrap resamples seeds within each task.
The median is the median over all runs and tasks (rliable's median is the
median of per-task means, which for one task is the mean).

A score that is not a number (a metric of a diverged seed) counts as the
worst value: +inf when lower is better, -inf when higher is better. An
interval bound that falls among infinite bootstrap values is that infinity.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
DEFAULT_REPS = 2000
ESTIMATORS = ("mean", "median", "iqm")


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


def _aggregates(scores: np.ndarray) -> np.ndarray:
    from rliable import metrics

    with np.errstate(invalid="ignore"):
        return np.array(
            [
                metrics.aggregate_mean(scores),
                float(np.median(scores)),
                metrics.aggregate_iqm(scores),
            ]
        )


def interval_estimates(
    scores: Mapping[str, np.ndarray],
    higher_is_better: bool = True,
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, dict[str, Estimate]]:
    """Mean, median and IQM of each group's ``runs x tasks`` scores, with bootstrap intervals.

    The same ``seed`` gives the same intervals. Returns
    ``{group: {"mean" | "median" | "iqm": Estimate}}``.
    """
    from rliable import library as rly

    prepared = {
        name: worst_as_infinite(np.atleast_2d(values.T).T, higher_is_better)
        for name, values in scores.items()
    }
    with _seeded(seed) as generator:
        points, intervals = rly.get_interval_estimates(
            prepared,
            _aggregates,
            reps=reps,
            confidence_interval_size=confidence,
            random_state=generator,
        )
    result = {}
    for name in prepared:
        worst = -np.inf if higher_is_better else np.inf
        low, high = (np.where(np.isnan(bound), worst, bound) for bound in intervals[name])
        result[name] = {
            estimator: Estimate(float(points[name][i]), float(low[i]), float(high[i]))
            for i, estimator in enumerate(ESTIMATORS)
        }
    return result


def probability_of_improvement(
    scores: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    higher_is_better: bool = True,
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[tuple[str, str], Estimate]:
    """P(X > Y) for each pair (X, Y): the chance that a run of X beats a run of Y on a task.

    Averaged over tasks (Agarwal et al. 2021, eq. in section 4.3), with
    stratified bootstrap intervals. When lower is better, "beats" means lower.
    """
    from rliable import library as rly
    from rliable import metrics

    sign = 1.0 if higher_is_better else -1.0
    prepared = {
        name: sign * worst_as_infinite(np.atleast_2d(values.T).T, higher_is_better)
        for name, values in scores.items()
    }
    keyed = {f"{x}\x00{y}": [prepared[x], prepared[y]] for x, y in pairs}
    with _seeded(seed) as generator:
        points, intervals = rly.get_interval_estimates(
            keyed,
            metrics.probability_of_improvement,
            reps=reps,
            confidence_interval_size=confidence,
            random_state=generator,
        )
    return {
        (x, y): Estimate(
            float(points[f"{x}\x00{y}"]),
            float(np.ravel(intervals[f"{x}\x00{y}"])[0]),
            float(np.ravel(intervals[f"{x}\x00{y}"])[1]),
        )
        for x, y in pairs
    }


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
        return np.array([rly.run_score_deviation(runs, tau) for tau in taus])

    with _seeded(seed) as generator:
        profiles, bands = rly.get_interval_estimates(
            prepared, profile, reps=reps, random_state=generator
        )
    return profiles, bands


def estimates_table(estimates: Mapping[str, Mapping[str, Estimate]]) -> pd.DataFrame:
    """One row per group: ``mean``, ``mean_low``, ``mean_high``, ``median``, ..., ``iqm_high``."""
    rows = []
    for name, by_estimator in estimates.items():
        row: dict[str, object] = {"group": name}
        for estimator, estimate in by_estimator.items():
            row[estimator] = estimate.value
            row[f"{estimator}_low"] = estimate.low
            row[f"{estimator}_high"] = estimate.high
        rows.append(row)
    return pd.DataFrame.from_records(rows)
