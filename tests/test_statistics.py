"""Aggregate statistics against values computed by hand or independently on fixed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlharness.analysis.statistics import (
    curve_area,
    curve_intervals,
    improvement,
    interval_estimates,
    performance_profiles,
    point_estimates,
    probability_of_improvement,
    proportion_interval,
    resampled_estimates,
)

Z95 = 1.959963984540054


def test_point_estimates_match_hand_computed_values() -> None:
    # Sorted: 1 2 3 4 5 6 7 100; the middle half is 3 4 5 6.
    sample = np.array([7.0, 1.0, 100.0, 3.0, 5.0, 2.0, 6.0, 4.0])
    estimates = interval_estimates({"a": sample}, reps=200)["a"]
    assert estimates["iqm"].value == pytest.approx(4.5, abs=1e-12)
    assert estimates["mean"].value == pytest.approx(128 / 8, abs=1e-12)
    assert estimates["median"].value == pytest.approx(4.5, abs=1e-12)


def test_iqm_pools_runs_and_tasks() -> None:
    # 4 runs x 2 tasks = 8 scores 1..8; the middle half 3..6 has mean 4.5.
    scores = np.array([[1.0, 8.0], [2.0, 7.0], [3.0, 6.0], [4.0, 5.0]])
    assert interval_estimates({"a": scores}, reps=200)["a"]["iqm"].value == pytest.approx(4.5)


def test_intervals_contain_the_estimate_and_are_reproducible() -> None:
    rng = np.random.default_rng(3)
    scores = {"a": rng.normal(size=12), "b": rng.exponential(size=12)}
    first = interval_estimates(scores, reps=500, seed=7)
    again = interval_estimates(scores, reps=500, seed=7)
    assert first == again
    for by_estimator in first.values():
        for estimate in by_estimator.values():
            assert estimate.low <= estimate.value <= estimate.high
            assert estimate.low < estimate.high


def test_bootstrap_is_stratified_over_tasks() -> None:
    # Resampling runs within each task keeps one 0 and one 10 per row in every resample,
    # so the mean is exactly 5 and its interval has zero width. Pooled resampling would not.
    scores = np.column_stack([np.zeros(6), np.full(6, 10.0)])
    mean = interval_estimates({"a": scores}, reps=300)["a"]["mean"]
    assert (mean.value, mean.low, mean.high) == (5.0, 5.0, 5.0)


def test_percentile_interval_coverage_on_a_synthetic_distribution() -> None:
    """About 95% of the 95% intervals of the mean contain the true mean."""
    rng = np.random.default_rng(2021)
    samples = {f"sample {i}": rng.normal(loc=3.0, scale=2.0, size=25) for i in range(100)}
    estimates = interval_estimates(samples, reps=300, seed=1)
    covered = [e["mean"].low <= 3.0 <= e["mean"].high for e in estimates.values()]
    # 100 intervals at 95%: misses are Binomial(100, ~0.05); 0.87 is about 3.5 sd below.
    assert 0.87 <= np.mean(covered) <= 1.0


def test_a_nan_counts_as_the_worst_value_and_iqm_trims_it() -> None:
    sample = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, np.nan])
    lower = interval_estimates({"a": sample}, higher_is_better=False, reps=200)["a"]
    assert lower["mean"].value == math.inf
    assert lower["mean"].high == math.inf
    assert lower["iqm"].value == pytest.approx(np.mean([3.0, 4.0, 5.0, 6.0]))
    higher = interval_estimates({"a": sample}, higher_is_better=True, reps=200)["a"]
    assert higher["mean"].value == -math.inf
    assert higher["iqm"].value == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))


def test_probability_of_improvement_counts_pairs_with_ties_as_half() -> None:
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([0.0, 2.0, 2.5])
    # Pairs x > y: 1>0; 2>0, 2=2 (half); 3>0, 3>2, 3>2.5 -> 5.5 of 9.
    result = probability_of_improvement({"x": x, "y": y}, [("x", "y"), ("y", "x")], reps=300)
    assert result[("x", "y")].value == pytest.approx(5.5 / 9)
    assert result[("y", "x")].value == pytest.approx(3.5 / 9)
    lower = probability_of_improvement({"x": x, "y": y}, [("x", "y")], False, reps=300)
    assert lower[("x", "y")].value == pytest.approx(3.5 / 9)
    for estimate in result.values():
        assert 0.0 <= estimate.low <= estimate.value <= estimate.high <= 1.0


def test_probability_of_improvement_averages_over_tasks() -> None:
    x = np.array([[1.0, 0.0], [1.0, 0.0]])
    y = np.array([[0.0, 1.0], [0.0, 1.0]])
    result = probability_of_improvement({"x": x, "y": y}, [("x", "y")], reps=200)
    assert result[("x", "y")].value == pytest.approx(0.5)


@pytest.mark.parametrize(("successes", "trials"), [(0, 3), (3, 3), (4, 10), (17, 144)])
def test_wilson_interval_matches_the_formula(successes: int, trials: int) -> None:
    p = successes / trials
    centre = (p + Z95**2 / (2 * trials)) / (1 + Z95**2 / trials)
    half = Z95 / (1 + Z95**2 / trials) * math.sqrt(p * (1 - p) / trials + Z95**2 / (4 * trials**2))
    estimate = proportion_interval(successes, trials)
    assert estimate.value == p
    assert estimate.low == pytest.approx(max(0.0, centre - half), abs=1e-12)
    assert estimate.high == pytest.approx(min(1.0, centre + half), abs=1e-12)


def test_performance_profile_is_the_fraction_beyond_each_threshold() -> None:
    scores = {"a": np.array([1.0, 2.0, 3.0, 4.0])}
    thresholds = np.array([0.0, 1.5, 3.5, 5.0])
    above, bands = performance_profiles(scores, thresholds, reps=200)
    np.testing.assert_allclose(above["a"], [1.0, 0.75, 0.25, 0.0])
    assert bands["a"].shape == (2, 4)
    below, _ = performance_profiles(scores, thresholds, higher_is_better=False, reps=200)
    np.testing.assert_allclose(below["a"], [0.0, 0.25, 0.75, 1.0])
    from rliable import library as rly

    matrix = np.random.default_rng(0).normal(size=(9, 2))
    profile, _ = performance_profiles({"m": matrix}, thresholds, reps=100)
    expected = [rly.run_score_deviation(matrix, tau) for tau in thresholds]
    np.testing.assert_allclose(profile["m"], expected)


@pytest.mark.parametrize("shape", [(4, 1), (10, 1), (7, 3), (25, 2)])
def test_resample_statistics_equal_rliables_on_random_and_tied_scores(
    shape: tuple[int, int],
) -> None:
    from rliable import metrics

    rng = np.random.default_rng(sum(shape))
    x = rng.integers(0, 4, size=shape).astype(float)
    y = rng.normal(size=shape)
    y[0, 0] = np.inf
    for scores in (x, y):
        np.testing.assert_allclose(resampled_estimates(scores), point_estimates(scores), rtol=1e-12)
    assert improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y), abs=1e-12)
    assert improvement(y, x) == pytest.approx(metrics.probability_of_improvement(y, x), abs=1e-12)
    assert improvement(x, x) == pytest.approx(0.5)


def test_curve_band_holds_the_iqm_per_step_and_is_deterministic() -> None:
    from rliable import metrics

    curves = np.random.default_rng(7).lognormal(size=(10, 1, 40))  # seeds x task x steps
    value, low, high = curve_intervals(curves, "iqm", reps=500, seed=3)
    expected = [metrics.aggregate_iqm(curves[:, :, step]) for step in range(40)]
    np.testing.assert_allclose(value, expected)
    assert np.all(low <= value) and np.all(value <= high) and np.all(low < high)
    again = curve_intervals(curves, "iqm", reps=500, seed=3)
    for first, second in zip((value, low, high), again, strict=True):
        np.testing.assert_array_equal(first, second)
    constant = curve_intervals(np.full((5, 1, 3), 2.5), "mean", reps=100)
    for array in constant:
        np.testing.assert_array_equal(array, 2.5)


def test_curve_area_is_the_trapezoid_mean_over_the_logged_span() -> None:
    # 0 -> 10 over steps 0..10, then flat at 10 until step 20: area 50 + 100 over a span of 20.
    assert curve_area(np.array([0, 10, 20]), np.array([0.0, 10.0, 10.0])) == pytest.approx(7.5)
    assert curve_area(np.array([5]), np.array([3.0])) == 3.0
    assert curve_area(np.array([5, 5]), np.array([1.0, 2.0])) == 2.0, "no span: the last value"
    assert math.isnan(curve_area(np.array([]), np.array([])))
