"""Planning a sweep: the space as Optuna distributions, grid points, budgets, field errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from rlharness.errors import SpecError
from rlharness.spec import load_spec, parse_spec
from rlharness.sweep.search_space import SweepPlan, plan_sweep
from tests.conftest import REPO, TINY_SPEC


def plan(
    grid: dict[str, list[Any]] | None = None, n_trials: int | None = None, **sweep
) -> SweepPlan:
    data = copy.deepcopy(TINY_SPEC)
    data["grid"] = grid or {}
    if sweep:
        data["sweep"] = sweep
    return plan_sweep(parse_spec(data), n_trials)


def problems(**kwargs: Any) -> list[str]:
    with pytest.raises(SpecError) as caught:
        plan(**kwargs)
    return caught.value.messages


def test_the_grid_is_the_space_when_the_sweep_has_none():
    planned = plan(grid={"triad.off_policy": [False, True], "triad.features": ["env", "tabular"]})
    assert planned.is_grid and planned.source == "grid"
    assert planned.points == (
        {"triad.off_policy": False, "triad.features": "env"},
        {"triad.off_policy": False, "triad.features": "tabular"},
        {"triad.off_policy": True, "triad.features": "env"},
        {"triad.off_policy": True, "triad.features": "tabular"},
    )
    assert planned.budget == 4
    assert planned.distributions == {
        "triad.off_policy": CategoricalDistribution([False, True]),
        "triad.features": CategoricalDistribution(["env", "tabular"]),
    }
    assert plan(grid={"triad.off_policy": [False, True]}, n_trials=1).points == (
        {"triad.off_policy": False},
    ), "n_trials caps a grid, in grid order"


def test_grid_over_int_and_float_steps():
    planned = plan(
        space={
            "triad.n_step": {"type": "int", "low": 1, "high": 5, "step": 2},
            "agent.alpha": {"type": "float", "low": 0.01, "high": 0.03, "step": 0.01},
        }
    )
    assert planned.source == "sweep.space"
    assert [p["triad.n_step"] for p in planned.points[::3]] == [1, 3, 5]
    assert [p["agent.alpha"] for p in planned.points[:3]] == [0.01, 0.02, 0.03]
    assert planned.budget == 9


def test_other_samplers_get_distributions_and_a_budget():
    planned = plan(
        sampler="tpe",
        n_trials=7,
        space={
            "agent.alpha": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
            "triad.n_step": {"type": "int", "low": 1, "high": 4},
            "triad.features": {"type": "categorical", "choices": ["env", "tabular"]},
        },
    )
    assert planned.points == () and planned.budget == 7
    assert planned.distributions == {
        "agent.alpha": FloatDistribution(1e-4, 0.1, log=True),
        "triad.n_step": IntDistribution(1, 4),
        "triad.features": CategoricalDistribution(["env", "tabular"]),
    }
    assert (
        plan(
            sampler="random",
            n_trials=2,
            space={"agent.alpha": {"type": "float", "low": 0.1, "high": 0.2}},
        ).budget
        == 2
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "sweep.space: nothing to search; give sweep.space or a grid"),
        (
            {
                "grid": {"triad.off_policy": [True]},
                "space": {"agent.alpha": {"type": "categorical", "choices": [0.1]}},
            },
            "grid: a sweep with sweep.space searches only that space",
        ),
        (
            {"space": {"triad.nstep": {"type": "int", "low": 1, "high": 2}}},
            "sweep.space.triad.nstep: 'triad.nstep' is not a field; allowed: feature_seed, "
            "feature_width, features, n_step, off_policy, target_update_period, target_update_tau",
        ),
        (
            {"space": {"name": {"type": "categorical", "choices": ["a"]}}},
            "sweep.space.name: cannot sweep 'name'",
        ),
        (
            {
                "space": {"agent.alpha": {"type": "float", "low": -1.0, "high": 0.1}},
                "sampler": "random",
                "n_trials": 3,
            },
            "agent.alpha: Input should be greater than 0 (got -1.0) (in sweep.space point",
        ),
        (
            {"space": {"triad.n_step": {"type": "categorical", "choices": [1, "inf"]}}},
            "triad.n_step: a sampled Monte Carlo target ('inf') needs an episodic env; use a "
            "finite n_step or an expected update (semi_gradient_dp) (in sweep.space point "
            "triad.n_step='inf')",
        ),
        (
            {"space": {"agent.alpha": {"type": "float", "low": 0.1, "high": 0.2}}},
            "sweep.space.agent.alpha: the grid sampler needs choices or a step",
        ),
        (
            {
                "sampler": "cmaes",
                "space": {"agent.alpha": {"type": "float", "low": 0.1, "high": 1}},
            },
            "sweep.n_trials: the cmaes sampler needs a trial budget; set sweep.n_trials or pass "
            "--n-trials",
        ),
        (
            {
                "sampler": "random",
                "n_trials": 2,
                "space": {"agent.alpha": {"type": "float", "low": 0.1, "high": 0.35, "step": 0.1}},
            },
            "sweep.space.agent.alpha: high - low = 0.25 is not a multiple of step 0.1; Optuna "
            "would lower high to 0.3: set high to 0.3, or change the step",
        ),
        (
            {
                "sampler": "tpe",
                "n_trials": 2,
                "space": {"triad.n_step": {"type": "int", "low": 1, "high": 4, "step": 2}},
            },
            "sweep.space.triad.n_step: high - low = 3 is not a multiple of step 2; Optuna "
            "would lower high to 3: set high to 3, or change the step",
        ),
        (
            {"grid": {"triad.off_policy": [True]}, "objective": "return_auc"},
            "sweep.objective: return_auc is not measured for linear agents; allowed: "
            "final_max_abs_value, final_sqrt_ve, final_sqrt_pbe, divergence_rate",
        ),
    ],
)
def test_plan_problems_name_the_field(kwargs, expected):
    assert any(expected in message for message in problems(**kwargs)), problems(**kwargs)


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ({"type": "float", "low": 2, "high": 1}, "an float needs 'low' <= 'high'"),
        ({"type": "float", "low": 0, "high": 1, "log": True}, "needs 'low' > 0"),
        ({"type": "float", "low": 0.1, "high": 1, "log": True, "step": 0.1}, "cannot be combined"),
        ({"type": "int", "low": 1.5, "high": 3}, "whole-number"),
        ({"type": "categorical", "choices": [[1, 2]]}, "choices must be strings, numbers"),
        ({"type": "categorical", "choices": []}, "non-empty 'choices'"),
    ],
)
def test_bad_parameters_are_refused_when_the_spec_is_read(parameter, expected):
    data = copy.deepcopy(TINY_SPEC)
    data["sweep"] = {"space": {"agent.alpha": parameter}}
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    [message] = caught.value.messages
    assert message.startswith("sweep.space.agent.alpha: ") and expected in message, message


def test_definition_identifies_what_trials_compute_not_how_they_run():
    base = plan(grid={"triad.off_policy": [False, True]})
    assert base.definition()["space"] == ["triad.off_policy"]
    for same in (
        plan(grid={"triad.off_policy": [False, True]}, n_trials=1),
        plan(grid={"triad.off_policy": [False, True]}, retries=0, cpus_per_trial=2.0),
    ):
        assert same.definition() == base.definition()
    other = plan(grid={"triad.off_policy": [False, True]}, objective="final_sqrt_ve")
    assert other.definition()["objective"] == "final_sqrt_ve"
    assert other.definition()["spec_sha256"] != base.definition()["spec_sha256"]


def test_shipped_sweeps_plan():
    cube = plan_sweep(load_spec(REPO / "experiments" / "triad_cube_baird.yaml"))
    assert cube.is_grid and cube.budget == 8 and cube.sweep.objective == "divergence_rate"
    tdc = plan_sweep(load_spec(REPO / "experiments" / "baird_tdc_sweep.yaml"))
    assert (tdc.sweep.sampler, tdc.budget, tdc.sweep.prunes) == ("tpe", 40, True)
    assert tdc.distributions["agent.beta"] == FloatDistribution(0.001, 0.5, log=True)


@pytest.mark.parametrize(
    ("parameter", "count"),
    [
        ({"type": "int", "low": 1, "high": 10**12}, "1,000,000,000,000"),
        ({"type": "int", "low": 0, "high": 10**6, "step": 99}, "10,102"),
        ({"type": "float", "low": 0.001, "high": 0.1, "step": 1e-12}, "99,000,000,001"),
        ({"type": "float", "low": 0, "high": 1e308, "step": 1e-300}, "about 10^608"),
    ],
)
def test_grid_sampler_counts_a_range_without_listing_it(parameter, count):
    [message] = problems(space={"agent.initial_weight_noise": parameter})
    assert message == (
        f"sweep.space (grid sampler): {count} points are more than the 10,000 a grid may have; "
        "vary fewer fields or values"
    )


def test_grid_sampler_takes_a_range_at_the_limit():
    space = {"agent.alpha": {"type": "float", "low": 0.0001, "high": 1.0, "step": 0.0001}}
    planned = plan(space=space)
    assert planned.budget == 10_000
    assert planned.points[0] == {"agent.alpha": 0.0001} and planned.points[-1] == {
        "agent.alpha": 1.0
    }


def test_a_step_optuna_cannot_divide_by_is_a_field_error():
    space = {"agent.alpha": {"type": "float", "low": 0.5, "high": 1, "step": 1e-300}}
    [message] = problems(sampler="random", n_trials=2, space=space)
    assert message.startswith("sweep.space.agent.alpha: "), message
