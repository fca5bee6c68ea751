"""The linear divergence criterion: outcomes that do not depend on the scale of w0.

With zero rewards every linear learner is linear in w0, so scaling w0 by c > 0
scales the whole run by c; a criterion a researcher can trust must then give
the same outcome, at the same steps, at every scale.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rlharness.errors import SpecError
from rlharness.runner import check_experiment, plan_trials, run_trial
from rlharness.spec import ExperimentSpec, diagnostics_problems, load_spec, parse_spec
from tests.conftest import REPO
from tests.helpers import BAIRD_W0, make_spec, run_all, run_one

SCALES = (0.01, 0.1, 10.0, 100.0)
LABELS = ["outcome", "hard_divergence_step", "soft_divergence_step"]
"""What must not change with the scale of w0: the outcome and the steps it was reached at."""


def _scaled(spec: ExperimentSpec, scale: float) -> ExperimentSpec:
    """``spec`` with w0 and its per-seed noise multiplied by ``scale``."""
    agent = spec.agent
    assert agent.name != "dqn" and agent.initial_weights is not None
    update = {
        "initial_weights": [scale * w for w in agent.initial_weights],
        "initial_weight_noise": scale * agent.initial_weight_noise,
    }
    return spec.model_copy(update={"agent": agent.model_copy(update=update)})


def _experiment(file: str, **run: int) -> ExperimentSpec:
    spec = load_spec(REPO / "experiments" / file)
    return spec.model_copy(update={"run": spec.run.model_copy(update=run)})


def _labels(spec: ExperimentSpec) -> dict[str, pd.DataFrame]:
    """The outcome labels of every grid point, keyed by its label."""
    return {
        trial.label: run_trial(trial).outcomes[["seed", *LABELS]] for trial in plan_trials(spec)
    }


def _diverged(labels: dict[str, pd.DataFrame]) -> dict[str, set[str]]:
    return {label: set(frame["outcome"]) for label, frame in labels.items()}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(
            "figure_11_2",
            {
                "name=semi_gradient_td": {"soft-diverged"},
                "name=semi_gradient_dp": {"soft-diverged"},
            },
            id="figure-11.2-td-and-dp",
        ),
        pytest.param("triad_cube_baird.yaml", "all-on", id="expected-triad-cube"),
        pytest.param("triad_cube_baird_sampled.yaml", "all-on", id="sampled-triad-cube"),
        pytest.param(
            "two_state_w2w.yaml",
            {
                "gamma=0.25": {"converged"},
                "gamma=0.5": {"converged"},
                "gamma=0.75": {"soft-diverged"},
                "gamma=0.9": {"soft-diverged"},
            },
            id="w-to-2w",
        ),
        pytest.param(
            "tsitsiklis_van_roy.yaml",
            {"off_policy=True": {"soft-diverged"}, "off_policy=False": {"converged"}},
            id="tsitsiklis-van-roy",
        ),
        pytest.param("hard", {"semi_gradient_dp": {"hard-diverged"}}, id="dp-hard-divergence"),
    ],
)
def test_outcomes_do_not_depend_on_the_scale_of_w0(case: str, expected: Any) -> None:
    """Every published zero-reward result keeps its label, and its steps, at w0 x 0.01 ... x 100."""
    if case == "figure_11_2":
        spec = make_spec(
            "triad/Baird-v0",
            {"name": "semi_gradient_td", "alpha": 0.01, "initial_weights": BAIRD_W0},
            steps=1000,
            log_every=50,
            seeds=3,
            grid={"agent.name": ["semi_gradient_td", "semi_gradient_dp"]},
        )
    elif case == "hard":
        spec = make_spec(
            "triad/Baird-v0",
            {
                "name": "semi_gradient_dp",
                "alpha": 2.0,
                "initial_weights": BAIRD_W0,
                "initial_weight_noise": 0.5,
            },
            steps=200,
            log_every=10,
            seeds=4,
        )
    elif case.startswith("triad_cube"):
        spec = _experiment(case, steps=1000, log_every=50, seeds=3)
    else:
        spec = _experiment(case)
    reference = _labels(spec)
    if expected == "all-on":
        all_on = "features=env, n_step=1, off_policy=True"
        expected = {
            label: {"soft-diverged" if label == all_on else "converged"} for label in reference
        }
        assert len(expected) == 8
    assert _diverged(reference) == expected
    for scale in SCALES:
        for label, labels in _labels(_scaled(spec, scale)).items():
            pd.testing.assert_frame_equal(labels, reference[label], obj=f"{label} at w0 x {scale}")


@pytest.mark.parametrize("update", ["sampled", "expected"])
@pytest.mark.parametrize(
    "agent",
    [
        {"name": "tdc", "alpha": 0.005, "beta": 0.05},
        {"name": "gtd2", "alpha": 0.005, "beta": 0.05},
        {"name": "emphatic_td", "alpha": 0.005},
    ],
    ids=lambda agent: agent["name"],
)
def test_gradient_and_emphatic_td_outcomes_do_not_depend_on_the_scale_of_w0(
    agent: dict[str, Any], update: str
) -> None:
    """The other rules on Baird from Figure 11.2's w0. Sampled emphatic TD's variance
    (Sutton & Barto, section 11.9) makes some seeds' errors grow 7-8 fold, still rising:
    soft-diverged by their growth at every scale."""
    spec = make_spec(
        "triad/Baird-v0",
        {**agent, "update": update, "initial_weights": BAIRD_W0},
        steps=1000,
        log_every=50,
        seeds=3,
    )
    (reference,) = _labels(spec).values()
    growth_only = (
        reference["outcome"].eq("soft-diverged") & reference["soft_divergence_step"].isna()
    )
    assert growth_only.any() == (agent["name"] == "emphatic_td" and update == "sampled")
    for scale in SCALES:
        (labels,) = _labels(_scaled(spec, scale)).values()
        pd.testing.assert_frame_equal(labels, reference, obj=f"w0 x {scale}")


def test_hard_limits_are_per_seed() -> None:
    """Seeds whose w0 differ in scale by 100 (one batch) hard-diverge at the same step."""
    spec = make_spec(
        "triad/TwoState-v0",
        {"name": "semi_gradient_td", "alpha": 1.0, "initial_weights": [1.0]},
        steps=200,
        log_every=10,
        env_kwargs={"gamma": 0.9},
    )
    small, large = (run_one(_scaled(spec, scale)) for scale in (1.0, 100.0))
    # w = 1.8^k w0 after k updates (the k-th at step 2k - 1) and 1.8^36 > 1e9 > 1.8^35.
    assert small.outcomes["hard_divergence_step"].tolist() == [71]
    assert large.outcomes["hard_divergence_step"].tolist() == [71]


@pytest.mark.parametrize(
    "agent",
    [
        {"name": "semi_gradient_td", "alpha": 0.01},
        {"name": "semi_gradient_dp", "alpha": 0.01},
        {"name": "tdc", "update": "expected", "alpha": 0.005, "beta": 0.05},
        {"name": "tdc", "update": "sampled", "alpha": 0.005, "beta": 0.05},
        {"name": "emphatic_td", "update": "expected", "alpha": 0.03},
    ],
    ids=lambda agent: f"{agent['name']}-{agent.get('update', 'default')}",
)
@pytest.mark.parametrize(
    "w0",
    [[0.0] * 8, [1, 1, 1, 1, 1, 1, 4, -2]],
    ids=["zero", "null-space-of-the-features"],
)
def test_zero_initial_error_stays_converged(agent: dict[str, Any], w0: list[float]) -> None:
    """e_0 = 0 on a zero-reward task (w0 = 0, or w0 in the null space of Baird's features:
    v(s) = 2 w_s + w_8 = 0 and v(7) = w_7 + 2 w_8 = 0): nothing to divide by, nothing grows."""
    spec = make_spec(
        "triad/Baird-v0", {**agent, "initial_weights": w0}, steps=200, log_every=20, seeds=2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outcomes = run_one(spec).outcomes
    assert set(outcomes["outcome"]) == {"converged"}
    assert (outcomes["initial_max_abs_error"] == 0).all()
    assert (outcomes["final_max_abs_error"] == 0).all()
    assert outcomes["soft_divergence_step"].isna().all()


def test_zero_initial_error_with_rewards_is_judged_against_the_return_bound() -> None:
    """On the random walk from w0 = v_pi exactly, sampled TD's noise moves the error off 0; its
    reference is the largest return 9, so it stays converged."""
    spec = make_spec(
        "triad/RandomWalk-v0",
        {"name": "semi_gradient_td", "alpha": 0.1, "initial_weights": [0.0, 1.0]},
        steps=2000,
        log_every=100,
        seeds=3,
        triad={"off_policy": False},
    )
    outcomes = run_one(spec).outcomes
    assert (outcomes["initial_max_abs_error"] < 1e-12).all()
    assert (outcomes["final_max_abs_error"] > 1e-3).all()
    assert set(outcomes["outcome"]) == {"converged"}


@pytest.mark.parametrize(
    ("gamma", "outcome"),
    [(0.5, "converged"), (0.52, "converged"), (0.55, "soft-diverged"), (0.6, "soft-diverged")],
)
def test_steady_growth_short_of_the_factor_counts_when_it_would_pass_it(
    gamma: float, outcome: str
) -> None:
    """w -> 2w over 200 updates grows w by (1 + 0.1 (2 gamma - 1))^200: 1, 2.2, 7.3, 50.

    gamma = 0.55 ends below 10 x e_0, but at its rate it passes 10 x e_0 within another run
    as long (7.3^2 = 53); gamma = 0.52 would not (2.2^2 = 4.9) and counts as converged.
    """
    spec = make_spec(
        "triad/TwoState-v0",
        {"name": "semi_gradient_td", "alpha": 0.1, "initial_weights": [1.0]},
        steps=400,
        log_every=2,
        env_kwargs={"gamma": gamma},
    )
    (record,) = run_one(spec).outcomes.to_dict(orient="records")
    assert record["outcome"] == outcome
    growth = record["final_max_abs_error"] / record["initial_max_abs_error"]
    assert growth == pytest.approx((1 + 0.1 * (2 * gamma - 1)) ** 200)
    if gamma == 0.55:
        assert growth < 10 and pd.isna(record["soft_divergence_step"])
    assert record["error_growth_rate"] == pytest.approx(np.log(1 + 0.1 * (2 * gamma - 1)) / 2)


def test_absolute_bound_applies_where_rewards_are_non_zero() -> None:
    """On the random walk (largest return 9), values held at 20 are soft-diverged; raising the
    bound with soft_divergence_threshold makes the same run converged."""
    agent = {"name": "semi_gradient_td", "alpha": 1e-4, "initial_weights": [20.0, 0.0]}
    held = make_spec("triad/RandomWalk-v0", agent, steps=100, log_every=50, seeds=2)
    assert set(run_one(held).outcomes["outcome"]) == {"soft-diverged"}
    raised = make_spec(
        "triad/RandomWalk-v0",
        agent,
        steps=100,
        log_every=50,
        seeds=2,
        diagnostics={"soft_divergence_threshold": 25.0},
    )
    assert set(run_one(raised).outcomes["outcome"]) == {"converged"}


def test_explicit_bound_applies_on_a_zero_reward_task() -> None:
    """soft_divergence_threshold is an absolute bound on max |v| wherever a user sets it."""
    agent = {"name": "tdc", "update": "expected", "alpha": 0.005, "beta": 0.05}
    agent["initial_weights"] = BAIRD_W0
    spec = make_spec(
        "triad/Baird-v0",
        agent,
        steps=1000,
        log_every=100,
        diagnostics={"soft_divergence_threshold": 1.0},
    )
    result = run_one(spec)
    assert result.outcomes.loc[0, "final_max_abs_value"] > 1.0
    assert result.outcomes.loc[0, "outcome"] == "soft-diverged"
    assert result.soft_divergence_threshold == 1.0


def test_divergence_factor_sets_the_soft_label() -> None:
    """Figure 11.2's DP ends 56 x e_0 after 1000 sweeps, growing 17-fold per 1000 sweeps (so
    about 960 x e_0 after another 1000): soft-diverged by its end at k = 50, by its growth at
    k = 100, and converged at k = 10^4, which it would not reach within another run."""
    agent = {"name": "semi_gradient_dp", "alpha": 0.01, "initial_weights": BAIRD_W0}
    found = {}
    for k in (50.0, 100.0, 1e4):
        spec = make_spec(
            "triad/Baird-v0", agent, steps=1000, log_every=50, diagnostics={"divergence_factor": k}
        )
        record = run_one(spec).outcomes.iloc[0]
        found[k] = (record["outcome"], pd.notna(record["soft_divergence_step"]))
    assert found == {
        50.0: ("soft-diverged", True),
        100.0: ("soft-diverged", False),
        1e4: ("converged", False),
    }


def test_the_summary_records_the_criterion(tmp_path: Path) -> None:
    from rlharness.local_run import run_experiment

    spec = make_spec(
        "triad/Baird-v0",
        {"name": "semi_gradient_dp", "alpha": 0.01, "initial_weights": BAIRD_W0},
        steps=20,
        log_every=10,
        diagnostics={"divergence_factor": 5, "hard_divergence_factor": 1e7},
        grid={"env.kwargs.gamma": [0.99]},
    )
    run_dir, _ = run_experiment(spec, tmp_path, seeds=1)
    (variant,) = json.loads((run_dir / "summary.json").read_text())["variants"]
    criterion = variant["divergence_criterion"]
    assert criterion["divergence_factor"] == 5
    assert criterion["hard_divergence_factor"] == 1e7
    assert criterion["return_bound"] == 0
    assert criterion["soft_divergence_threshold"] is None
    assert variant["soft_divergence_threshold"] is None
    statement = criterion["statement"]
    assert "above 5 x e_ref" in statement and "e_ref = e_0" in statement
    assert "1e+07 x the seed's max |w0|" in statement
    walk = make_spec("triad/RandomWalk-v0", {"name": "semi_gradient_td", "alpha": 0.01}, steps=1)
    (result,) = run_all(walk)
    assert result.divergence_criterion is not None
    assert result.divergence_criterion["return_bound"] == pytest.approx(9.0)
    assert "max(e_0, 9)" in result.divergence_criterion["statement"]
    assert "max |v(s)| ends above 9" in result.divergence_criterion["statement"]


def _spec_data(agent: dict[str, Any], diagnostics: dict[str, Any], env: str) -> dict[str, Any]:
    return {
        "name": "family",
        "env": {"id": env},
        "agent": agent,
        "run": {"steps": 10},
        "diagnostics": diagnostics,
    }


@pytest.mark.parametrize(
    ("agent", "env", "diagnostics", "message"),
    [
        (
            {"name": "semi_gradient_dp", "alpha": 0.01},
            "triad/Baird-v0",
            {"hard_divergence_threshold": 100},
            "diagnostics.hard_divergence_threshold: only dqn agents use it",
        ),
        (
            {"name": "dqn"},
            "CartPole-v1",
            {"divergence_factor": 5},
            "diagnostics.divergence_factor: only linear learners use it",
        ),
        (
            {"name": "dqn"},
            "CartPole-v1",
            {"hard_divergence_factor": 1e6},
            "diagnostics.hard_divergence_factor: only linear learners use it",
        ),
    ],
)
def test_a_field_the_agent_family_ignores_is_refused(
    agent: dict[str, Any], env: str, diagnostics: dict[str, Any], message: str
) -> None:
    spec = parse_spec(_spec_data(agent, diagnostics, env))
    with pytest.raises(SpecError) as raised:
        check_experiment(spec)
    assert [m for m in raised.value.messages if m.startswith(message)], raised.value.messages


def test_the_defaults_of_the_other_family_are_accepted() -> None:
    """A published config.yaml holds every default; it must be accepted again."""
    defaults = {
        "hard_divergence_threshold": 1e10,
        "divergence_factor": 10,
        "hard_divergence_factor": 1e9,
    }
    for agent, env in (
        ({"name": "semi_gradient_dp", "alpha": 0.01}, "triad/Baird-v0"),
        ({"name": "dqn"}, "CartPole-v1"),
    ):
        assert diagnostics_problems(parse_spec(_spec_data(agent, defaults, env))) == []
