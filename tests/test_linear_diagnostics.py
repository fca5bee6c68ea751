"""Exact diagnostics against hand-computed values, and divergence outcomes as data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.helpers import BAIRD_W0, make_spec, run_one

GAMMA = 0.99


def test_baird_errors_at_w0_match_hand_computation() -> None:
    """At w0, v = (3,3,3,3,3,3,12), v_pi = 0, mu uniform; the features span R^7 so PBE = BE."""
    spec = make_spec(
        "triad/Baird-v0",
        {"name": "semi_gradient_dp", "alpha": 0.01, "initial_weights": BAIRD_W0},
        steps=1,
    )
    first = run_one(spec).metrics.iloc[0]
    values = np.array([3.0] * 6 + [12.0])
    bellman = GAMMA * 12.0 - values  # the target policy always moves to the lower state
    assert first["max_abs_value"] == 12.0
    assert first["weight_norm"] == pytest.approx(math.sqrt(6 + 100 + 1))
    assert first["sqrt_ve"] == pytest.approx(math.sqrt(np.mean(values**2)))
    assert first["sqrt_pbe"] == pytest.approx(math.sqrt(np.mean(bellman**2)))


def test_tabular_projection_is_the_identity() -> None:
    """With one-hot features the projected Bellman error equals the Bellman error."""
    spec = make_spec(
        "triad/RandomWalk-v0",
        {"name": "semi_gradient_td", "alpha": 0.1, "initial_weights": [0.0, 1.0]},
        steps=1,
        triad={"features": "tabular"},
    )
    first = run_one(spec).metrics.iloc[0]
    values = np.arange(1, 6) / 6  # x(i) w0 = i / 6: the true values
    assert first["sqrt_ve"] == pytest.approx(0.0, abs=1e-12)
    assert first["sqrt_pbe"] == pytest.approx(0.0, abs=1e-12)
    assert first["max_abs_value"] == pytest.approx(values.max())


def test_expected_td_error_statistics_are_the_weighted_bellman_error() -> None:
    """The TD-error mean logged by an expected update is sum_s mu(s) delta(s) of the sweep."""
    spec = make_spec(
        "triad/Baird-v0",
        {"name": "semi_gradient_dp", "alpha": 0.01, "initial_weights": BAIRD_W0},
        steps=1,
    )
    second = run_one(spec).metrics.iloc[1]
    bellman = GAMMA * 12.0 - np.array([3.0] * 6 + [12.0])
    assert second["td_error_mean"] == pytest.approx(bellman.mean())
    assert second["td_error_rms"] == pytest.approx(math.sqrt(np.mean(bellman**2)))


def test_hard_divergence_is_recorded_at_its_exact_step() -> None:
    """w -> 2w with gamma = 0.9, alpha = 1: w = 1.8^k after k updates, the k-th at step 2k - 1.

    From w0 = 1 the hard limit is 1e9 x max |w0| = 1e9; 1.8^36 > 1e9 > 1.8^35, so the
    36th update (step 71) crosses it.
    """
    spec = make_spec(
        "triad/TwoState-v0",
        {"name": "semi_gradient_td", "alpha": 1.0, "initial_weights": [1.0]},
        steps=200,
        log_every=10,
        seeds=3,
        env_kwargs={"gamma": 0.9},
    )
    result = run_one(spec)
    assert list(result.outcomes["outcome"]) == ["hard-diverged"] * 3
    assert list(result.outcomes["hard_divergence_step"]) == [71] * 3
    assert result.metrics["step"].max() == 70
    assert np.isfinite(result.metrics.drop(columns=["td_error_mean", "td_error_rms"])).all().all()


def test_divergence_of_some_seeds_does_not_stop_the_others() -> None:
    """Sampled TD with a huge step size on Baird: diverging seeds end early, the run completes."""
    spec = make_spec(
        "triad/Baird-v0",
        {"name": "semi_gradient_td", "alpha": 0.5, "initial_weights": BAIRD_W0},
        steps=2000,
        log_every=100,
        seeds=8,
    )
    result = run_one(spec)
    outcomes = result.outcomes.set_index("seed")
    assert (outcomes["outcome"] == "hard-diverged").all()
    steps = outcomes["hard_divergence_step"]
    assert steps.between(1, 2000).all() and steps.nunique() > 1
    last = result.metrics.groupby("seed")["step"].max()
    assert (last < steps).all() and (last >= steps - 100).all()


def test_expected_update_hard_divergence_stops_only_that_seed() -> None:
    """With per-seed initial noise, DP at a large step size: every seed records its own step."""
    spec = make_spec(
        "triad/Baird-v0",
        {
            "name": "semi_gradient_dp",
            "alpha": 2.0,
            "initial_weights": BAIRD_W0,
            "initial_weight_noise": 0.5,
        },
        steps=3000,
        log_every=50,
        seeds=4,
    )
    result = run_one(spec)
    assert set(result.outcomes["outcome"]) == {"hard-diverged"}
    assert (result.outcomes["hard_divergence_step"] < 3000).all()


def test_absolute_bound_is_the_largest_realisable_return_where_rewards_are_non_zero() -> None:
    """The random walk's largest return is 9 (reward 1, undiscounted, at most 9 steps expected);
    Baird's rewards are all zero, so it has no absolute bound unless the spec sets one."""
    baird = make_spec("triad/Baird-v0", {"name": "semi_gradient_dp", "alpha": 0.01}, steps=1)
    walk = make_spec("triad/RandomWalk-v0", {"name": "semi_gradient_td", "alpha": 0.01}, steps=1)
    bound = make_spec(
        "triad/Baird-v0",
        {"name": "semi_gradient_dp", "alpha": 0.01},
        steps=1,
        diagnostics={"soft_divergence_threshold": 50.0},
    )
    assert run_one(baird).soft_divergence_threshold is None
    assert run_one(walk).soft_divergence_threshold == pytest.approx(9.0)
    assert run_one(bound).soft_divergence_threshold == 50.0
