"""Same spec and seed -> bitwise-identical metrics; batched and one-seed-at-a-time runs agree."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from rlharness.runner import plan_trials, run_trial
from tests.helpers import BAIRD_W0, make_spec, run_one

SAMPLED_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("triad/Baird-v0", {"name": "semi_gradient_td", "alpha": 0.01}, {}),
    ("triad/Baird-v0", {"name": "semi_gradient_td", "alpha": 0.01}, {"n_step": 3}),
    ("triad/Baird-v0", {"name": "semi_gradient_td", "alpha": 0.01}, {"target_update_period": 7}),
    ("triad/Baird-v0", {"name": "tdc", "update": "sampled", "alpha": 0.005, "beta": 0.05}, {}),
    ("triad/Baird-v0", {"name": "gtd2", "update": "sampled", "alpha": 0.005, "beta": 0.05}, {}),
    ("triad/Baird-v0", {"name": "tdrc", "update": "sampled", "alpha": 0.005, "beta": 0.05}, {}),
    ("triad/Baird-v0", {"name": "emphatic_td", "update": "sampled", "alpha": 0.001}, {}),
    ("triad/BairdControl-v0", {"name": "q_learning", "alpha": 0.01}, {}),
    ("triad/RandomWalk-v0", {"name": "semi_gradient_td", "alpha": 0.05}, {"n_step": "inf"}),
    (
        "triad/Baird-v0",
        {"name": "semi_gradient_td", "alpha": 0.01, "ridge": 0.5, "projection_radius": 5.0},
        {"target_update_tau": 0.1},
    ),
    (
        "triad/BairdControl-v0",
        {"name": "q_learning", "alpha": 0.01, "ridge": 0.5, "projection_radius": 5.0},
        {"target_update_tau": 0.1, "target_update_period": 3},
    ),
    (
        "triad/Baird-v0",
        {"name": "semi_gradient_td", "alpha": 0.01},
        {"features": "projected", "feature_width": 16, "target_update_period": 7},
    ),
    (
        "triad/Baird-v0",
        {"name": "semi_gradient_td", "alpha": 0.001, "ridge": 0.5, "projection_radius": 5.0},
        {"n_step": 3, "target_update_tau": 0.1},
    ),
]


def _spec(env: str, agent: dict[str, Any], triad: dict[str, Any], seeds: int):
    agent = dict(agent)
    if env.startswith("triad/Baird"):
        agent["initial_weights"] = BAIRD_W0 * (2 if "Control" in env else 1)
    return make_spec(env, agent, steps=300, log_every=20, seeds=seeds, triad=triad)


def _assert_bitwise_equal(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert list(left.columns) == list(right.columns)
    for column in left.columns:
        a, b = left[column].to_numpy(), right[column].to_numpy()
        assert a.dtype == b.dtype, column
        if a.dtype.kind in "biuf":
            assert a.tobytes() == b.tobytes(), column
        else:
            assert left[column].equals(right[column]), column


@pytest.mark.parametrize(("env", "agent", "triad"), SAMPLED_CASES)
def test_same_seed_gives_bitwise_identical_metrics(env: str, agent: dict, triad: dict) -> None:
    first = run_one(_spec(env, agent, triad, seeds=3))
    second = run_one(_spec(env, agent, triad, seeds=3))
    _assert_bitwise_equal(first.metrics, second.metrics)
    _assert_bitwise_equal(first.outcomes, second.outcomes)


@pytest.mark.parametrize(("env", "agent", "triad"), SAMPLED_CASES)
def test_batched_and_one_seed_at_a_time_agree_exactly(env: str, agent: dict, triad: dict) -> None:
    spec = _spec(env, agent, triad, seeds=6)
    (batched_trial,) = plan_trials(spec)
    batched = run_trial(batched_trial)
    singles = []
    for seed in batched_trial.seeds:
        single = run_trial(
            type(batched_trial)(batched_trial.spec, (seed,), batched_trial.variant, {})
        )
        singles.append(single.metrics)
    _assert_bitwise_equal(batched.metrics, pd.concat(singles, ignore_index=True))


def test_batch_order_does_not_change_a_seed() -> None:
    spec = _spec("triad/Baird-v0", {"name": "semi_gradient_td", "alpha": 0.01}, {}, seeds=4)
    (trial,) = plan_trials(spec)
    forward = run_trial(trial).metrics
    backward = run_trial(type(trial)(trial.spec, trial.seeds[::-1], 0, {})).metrics
    backward = backward.sort_values(["seed", "step"], kind="stable").reset_index(drop=True)
    _assert_bitwise_equal(forward, backward)


def test_different_seeds_follow_different_trajectories() -> None:
    result = run_one(_spec("triad/Baird-v0", {"name": "semi_gradient_td", "alpha": 0.01}, {}, 5))
    finals = result.metrics.groupby("seed")["w_0"].last().to_numpy()
    assert np.unique(finals).size == finals.size


def test_initial_weight_noise_is_per_seed_and_reproducible() -> None:
    agent = {"name": "semi_gradient_dp", "alpha": 0.01, "initial_weight_noise": 0.5}
    spec = _spec("triad/Baird-v0", agent, {}, seeds=3)
    first, second = run_one(spec), run_one(spec)
    _assert_bitwise_equal(first.metrics, second.metrics)
    starts = first.metrics[first.metrics["step"] == 0][["w_0", "w_1"]].to_numpy()
    assert np.unique(starts[:, 0]).size == 3
    assert np.all(np.abs(starts - 1.0) < 5 * 0.5)


EXPECTED_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("triad/Baird-v0", {"name": "semi_gradient_dp", "alpha": 0.01}, {}),
    ("triad/Baird-v0", {"name": "least_squares_dp"}, {"n_step": 3}),
    ("triad/Baird-v0", {"name": "tdc", "update": "expected", "alpha": 0.005, "beta": 0.05}, {}),
    ("triad/Baird-v0", {"name": "gtd2", "update": "expected", "alpha": 0.005, "beta": 0.05}, {}),
    ("triad/Baird-v0", {"name": "tdrc", "update": "expected", "alpha": 0.005, "beta": 0.05}, {}),
    ("triad/Baird-v0", {"name": "emphatic_td", "update": "expected", "alpha": 0.03}, {}),
    ("triad/BairdControl-v0", {"name": "q_learning", "update": "expected", "alpha": 0.01}, {}),
    (
        "triad/Baird-v0",
        {"name": "semi_gradient_dp", "alpha": 0.01, "ridge": 0.5, "projection_radius": 5.0},
        {"target_update_tau": 0.1},
    ),
    (
        "triad/BairdControl-v0",
        {
            "name": "q_learning",
            "update": "expected",
            "alpha": 0.01,
            "ridge": 0.5,
            "projection_radius": 5.0,
        },
        {"target_update_tau": 0.1, "target_update_period": 3},
    ),
    (
        "triad/Baird-v0",
        {"name": "semi_gradient_dp", "alpha": 0.5},
        {"features": "projected", "feature_width": 16, "target_update_period": 20},
    ),
]


@pytest.mark.parametrize(("env", "agent", "triad"), EXPECTED_CASES)
def test_expected_updates_batched_and_one_seed_at_a_time_agree_exactly(
    env: str, agent: dict, triad: dict
) -> None:
    """Seeds that differ only in their noisy w0: each seed's expected trajectory is the same bits
    whether its row is updated alone or among others (no matrix kernel that depends on the rows)."""
    spec = _spec(env, {**agent, "initial_weight_noise": 0.5}, triad, seeds=6)
    (batched_trial,) = plan_trials(spec)
    batched = run_trial(batched_trial)
    singles = [
        run_trial(type(batched_trial)(batched_trial.spec, (seed,), batched_trial.variant, {}))
        for seed in batched_trial.seeds
    ]
    _assert_bitwise_equal(
        batched.metrics, pd.concat([s.metrics for s in singles], ignore_index=True)
    )
