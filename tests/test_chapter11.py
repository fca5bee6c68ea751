"""The chapter-11 check of Figure 11.6 on runs of experiments/baird_emphatic_td.yaml."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from rlharness.analysis.chapter11 import RunData, check_baird_emphatic_td
from rlharness.runner import plan_trials, run_trial
from rlharness.spec import parse_spec
from tests.conftest import REPO


def emphatic_run(log_every: int) -> RunData:
    """The experiment file's run (1000 sweeps), logged every ``log_every`` sweeps."""
    data = yaml.safe_load((REPO / "experiments" / "baird_emphatic_td.yaml").read_text())
    data["run"] = {"steps": 1000, "log_every": log_every}
    (trial,) = plan_trials(parse_spec(data))
    result = run_trial(trial)
    metrics = result.metrics.assign(variant=0)
    return RunData("baird_emphatic_td/test", data, result.outcomes, metrics, {0: {}})


def test_the_experiment_agrees_with_figure_11_6_on_every_statement() -> None:
    found = check_baird_emphatic_td(emphatic_run(log_every=2))
    assert [row.agrees for row in found] == [True, True, True]
    assert all(type(row.agrees) is bool for row in found)
    peak, reversal, settled = found
    assert peak.value == pytest.approx(10.656, abs=5e-4)
    assert "peak 10.66 at sweep 26" in peak.measured
    assert "w8 highest at sweep 22" in reversal.measured and reversal.value == 52
    assert "below 1 from sweep 100" in settled.measured and settled.value < 1e-12


def test_logs_too_coarse_to_place_the_turning_points_do_not_agree() -> None:
    found = check_baird_emphatic_td(emphatic_run(log_every=50))
    assert [row.agrees for row in found] == [False, False, False]
    assert all("logged every 50 sweeps" in row.measured for row in found)


def test_a_trajectory_that_never_rises_does_not_agree() -> None:
    """As with the stationary emphasis from sweep 0: sqrt(VE) falls from the start, soon below 1."""
    data = emphatic_run(log_every=2)
    metrics = data.metrics
    falling = metrics.assign(sqrt_ve=metrics["sqrt_ve"].iloc[0] * 0.9 ** metrics["step"])
    peak, _, settled = check_baird_emphatic_td(replace(data, metrics=falling))
    assert not peak.agrees and not settled.agrees
    assert "peak 5.318 at sweep 0" in peak.measured
