"""Objectives: per-seed values from linear and DQN results, and how they aggregate."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import trim_mean

from rlharness.errors import SpecError
from rlharness.runner import TrialConfig, TrialResult
from rlharness.spec import parse_spec
from rlharness.sweep.objectives import aggregate, check_objective, kinds, per_seed_values
from tests.conftest import TINY_SPEC

DQN_SPEC = {
    "name": "dqn",
    "env": {"id": "CartPole-v1"},
    "agent": {"name": "dqn"},
    "run": {"steps": 300, "log_every": 100, "seeds": 2},
}


def linear_result() -> TrialResult:
    spec = parse_spec({**copy.deepcopy(TINY_SPEC), "grid": {}})
    outcomes = pd.DataFrame(
        {
            "seed": [0, 1, 2],
            "outcome": ["converged", "soft-diverged", "hard-diverged"],
            "final_max_abs_value": [1.0, 200.0, 1e11],
            "final_sqrt_ve": [0.5, 3.0, math.nan],
            "final_sqrt_pbe": [0.1, 0.2, 0.3],
        }
    )
    return TrialResult(TrialConfig(spec, (0, 1, 2)), pd.DataFrame(), outcomes, 100.0)


def dqn_result() -> TrialResult:
    spec = parse_spec(DQN_SPEC)
    metrics = pd.DataFrame(
        {
            "seed": [0, 0, 0, 0, 1, 1, 1, 1],
            "step": [0, 100, 200, 300] * 2,
            "eval_return": [10.0, 20.0, np.nan, 40.0, 9.0, 9.0, 9.0, 9.0],
        }
    )
    outcomes = pd.DataFrame(
        {
            "seed": [0, 1],
            "outcome": ["stable", "soft-diverged-then-recovered"],
            "final_eval_return": [40.0, 9.0],
            "final_probe_max_abs_q": [5.0, 120.0],
        }
    )
    return TrialResult(TrialConfig(spec, (0, 1)), metrics, outcomes, 100.0)


def test_linear_objectives_read_the_outcome_columns():
    result = linear_result()
    assert per_seed_values("final_max_abs_value", result) == [1.0, 200.0, 1e11]
    assert per_seed_values("final_sqrt_pbe", result) == [0.1, 0.2, 0.3]
    assert per_seed_values("divergence_rate", result) == [0.0, 1.0, 1.0]
    ve = per_seed_values("final_sqrt_ve", result)
    assert ve[:2] == [0.5, 3.0] and math.isnan(ve[2])


def test_dqn_objectives_read_returns_and_max_q():
    result = dqn_result()
    assert per_seed_values("final_return", result) == [40.0, 9.0]
    assert per_seed_values("final_max_abs_value", result) == [5.0, 120.0]
    assert per_seed_values("divergence_rate", result) == [0.0, 1.0]
    # seed 0 logs (0, 10), (100, 20), (300, 40): trapezoids 1500 + 6000 over 300 steps
    assert per_seed_values("return_auc", result) == pytest.approx([25.0, 9.0])


def test_aggregates_and_non_numbers_as_the_worst_value():
    values = [1.0, 2.0, 3.0, 4.0, 100.0, 0.0, 2.5, 3.5]
    assert aggregate(values, "mean", "minimize") == pytest.approx(np.mean(values))
    assert aggregate(values, "median", "minimize") == pytest.approx(np.median(values))
    assert aggregate(values, "iqm", "minimize") == pytest.approx(trim_mean(values, 0.25))
    assert aggregate(values, "iqm", "minimize") == pytest.approx(np.mean([2.0, 2.5, 3.0, 3.5]))
    assert aggregate([1.0, math.nan], "mean", "minimize") == math.inf
    assert aggregate([1.0, math.nan], "mean", "maximize") == -math.inf
    assert aggregate([1.0, math.nan, 2.0], "median", "minimize") == 2.0


def test_an_objective_the_agent_does_not_measure_is_a_field_error():
    assert kinds("divergence_rate") == ("linear", "dqn")
    check_objective("return_auc", parse_spec(DQN_SPEC), "x")
    with pytest.raises(SpecError) as caught:
        check_objective("final_sqrt_ve", parse_spec(DQN_SPEC), "experiment file e.yaml")
    assert caught.value.messages == [
        "sweep.objective: final_sqrt_ve is not measured for dqn agents; allowed: "
        "final_max_abs_value, final_return, divergence_rate, return_auc"
    ]
