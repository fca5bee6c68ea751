"""Zhang, Yao & Whiteson (ICML 2021): a Polyak target, ridge and a projection stop Baird's
divergence, and the learner lands on the exact regularised TD fixed point."""

from __future__ import annotations

import numpy as np
import pytest

from rlharness.agents.linear.regularised import (
    regularised_q_fixed_point,
    regularised_td_fixed_point,
)
from rlharness.agents.linear.trial import resolve_linear
from rlharness.errors import SpecError
from rlharness.runner import check_experiment
from tests.helpers import BAIRD_W0, make_spec, run_one

WEIGHTS = [f"w_{i}" for i in range(8)]


def _final_weights(result_metrics, count: int) -> np.ndarray:
    last = result_metrics[result_metrics["step"] == result_metrics["step"].max()]
    return last[[f"w_{i}" for i in range(count)]].to_numpy()


def _baird_bound() -> float:
    """-min Re eig(X^T D (X - gamma P X)): the ridge above which Baird's regularised TD
    matrix has only eigenvalues with positive real part."""
    spec = make_spec("triad/Baird-v0", {"name": "semi_gradient_dp", "alpha": 0.01}, 1)
    problem = resolve_linear(spec).problem
    X, D = problem.state_features, np.diag(problem.weighting)
    A = X.T @ D @ (X - problem.model.gamma * problem.policy_transition @ X)
    return float(-np.linalg.eigvals(A).real.min())


def test_the_ridge_bound_of_baird() -> None:
    assert _baird_bound() == pytest.approx(0.2393, abs=1e-4)


@pytest.mark.parametrize("update", ["expected", "sampled"])
def test_target_and_ridge_converge_on_baird_where_td_diverges(update: str) -> None:
    name = "semi_gradient_dp" if update == "expected" else "semi_gradient_td"
    agent = {"name": name, "alpha": 0.01, "initial_weights": BAIRD_W0}
    plain = run_one(make_spec("triad/Baird-v0", agent, 3000, log_every=3000))
    assert plain.outcomes["outcome"].iloc[0] in ("soft-diverged", "hard-diverged")
    stabilised = run_one(
        make_spec(
            "triad/Baird-v0",
            {**agent, "ridge": 0.5, "projection_radius": 100.0},
            20000,
            log_every=10000,
            seeds=2,
            triad={"target_update_tau": 0.1},
        )
    )
    assert stabilised.outcomes["outcome"].tolist() == ["converged"] * 2
    # every reward is 0, so the regularised fixed point is w = 0
    spec = make_spec("triad/Baird-v0", agent, 1)
    fixed = regularised_td_fixed_point(resolve_linear(spec).problem, 0.5)
    assert np.abs(fixed).max() < 1e-12
    tolerance = 1e-9 if update == "expected" else 1e-3
    assert np.abs(_final_weights(stabilised.metrics, 8) - fixed).max() < tolerance


def test_a_ridge_below_the_bound_does_not_stop_the_divergence() -> None:
    agent = {"name": "semi_gradient_dp", "alpha": 0.01, "initial_weights": BAIRD_W0, "ridge": 0.1}
    result = run_one(
        make_spec("triad/Baird-v0", agent, 5000, log_every=5000, triad={"target_update_tau": 0.1})
    )
    assert result.outcomes["outcome"].iloc[0] in ("soft-diverged", "hard-diverged")


def test_the_learner_lands_on_the_regularised_fixed_point_where_rewards_are_not_zero() -> None:
    """On the random walk the ridge biases the fixed point away from v_pi: the learner
    reaches the exact solution of (X^T D (X - gamma P X) + eta I) w = X^T D r, not v_pi."""
    agent = {"name": "semi_gradient_dp", "alpha": 0.1, "ridge": 0.05}
    spec = make_spec(
        "triad/RandomWalk-v0", agent, 20000, log_every=20000, triad={"target_update_tau": 0.5}
    )
    problem = resolve_linear(spec).problem
    fixed = regularised_td_fixed_point(problem, 0.05)
    unregularised = regularised_td_fixed_point(problem, 0.0)
    assert np.abs(fixed - unregularised).max() > 1e-2
    learned = _final_weights(run_one(spec).metrics, problem.n_features)[0]
    np.testing.assert_allclose(learned, fixed, atol=1e-10)


@pytest.mark.parametrize("update", ["expected", "sampled"])
def test_q_learning_with_target_and_ridge_converges_on_baird_control(update: str) -> None:
    agent = {
        "name": "q_learning",
        "alpha": 0.01,
        "update": update,
        "initial_weights": BAIRD_W0 + BAIRD_W0,
    }
    plain = run_one(make_spec("triad/BairdControl-v0", agent, 5000, log_every=5000))
    assert plain.outcomes["outcome"].iloc[0] in ("soft-diverged", "hard-diverged")
    spec = make_spec(
        "triad/BairdControl-v0",
        {**agent, "ridge": 0.5, "projection_radius": 100.0},
        20000,
        log_every=20000,
        triad={"target_update_tau": 0.1},
    )
    result = run_one(spec)
    assert result.outcomes["outcome"].tolist() == ["converged"]
    problem = resolve_linear(spec).problem
    fixed = regularised_q_fixed_point(problem, 0.5)
    tolerance = 1e-9 if update == "expected" else 1e-3
    learned = _final_weights(result.metrics, problem.n_features)[0]
    assert np.abs(learned - fixed).max() < tolerance


def test_default_knobs_change_nothing() -> None:
    agent = {"name": "semi_gradient_dp", "alpha": 0.01, "initial_weights": BAIRD_W0}
    plain = run_one(make_spec("triad/Baird-v0", agent, 300, log_every=100)).metrics
    explicit = run_one(
        make_spec(
            "triad/Baird-v0",
            {**agent, "ridge": 0.0},
            300,
            log_every=100,
            triad={"target_update_tau": 1.0},
        )
    ).metrics
    assert plain[WEIGHTS].to_numpy().tobytes() == explicit[WEIGHTS].to_numpy().tobytes()


@pytest.mark.parametrize(
    ("agent", "triad", "message"),
    [
        ({"name": "tdc", "alpha": 0.01, "beta": 0.1, "ridge": 0.1}, {}, "agent.ridge: only"),
        (
            {"name": "emphatic_td", "alpha": 0.01},
            {"target_update_tau": 0.5},
            "triad.target_update_tau: emphatic_td has no target network",
        ),
        (
            {"name": "gtd2", "alpha": 0.01, "beta": 0.1, "projection_radius": 5.0},
            {},
            "agent.projection_radius: only semi_gradient_td, semi_gradient_dp, q_learning",
        ),
    ],
)
def test_rules_without_the_knobs_refuse_them(
    agent: dict[str, object], triad: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError) as raised:
        check_experiment(make_spec("triad/Baird-v0", agent, 10, triad=triad))
    assert any(message in line for line in raised.value.messages), raised.value.messages


@pytest.mark.parametrize(
    ("agent", "triad", "message"),
    [
        ({"ridge": -1.0}, {}, "agent.ridge: Input should be greater than or equal to 0"),
        ({"ridge": float("inf")}, {}, "agent.ridge: Input should be a finite number"),
        ({"projection_radius": 0.0}, {}, "agent.projection_radius: Input should be greater than 0"),
        ({}, {"target_update_tau": 0.0}, "triad.target_update_tau: Input should be greater than 0"),
        (
            {},
            {"target_update_tau": 1.5},
            "triad.target_update_tau: Input should be less than or equal to 1",
        ),
    ],
)
def test_out_of_range_knobs_are_refused_by_field(
    agent: dict[str, object], triad: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError) as raised:
        make_spec(
            "triad/Baird-v0", {"name": "semi_gradient_dp", "alpha": 0.01, **agent}, 1, triad=triad
        )
    assert any(line.startswith(message) for line in raised.value.messages), raised.value.messages


def test_n_step_td_with_target_and_ridge_converges_on_baird() -> None:
    """The n-step kernel takes the knobs too: 3-step sampled TD diverges plainly and
    converges to the regularised fixed point w = 0 with a Polyak target and ridge."""
    agent = {"name": "semi_gradient_td", "alpha": 0.01, "initial_weights": BAIRD_W0}
    plain = run_one(make_spec("triad/Baird-v0", agent, 5000, log_every=5000, triad={"n_step": 3}))
    assert plain.outcomes["outcome"].iloc[0] in ("soft-diverged", "hard-diverged")
    stabilised = run_one(
        make_spec(
            "triad/Baird-v0",
            {**agent, "ridge": 0.5, "projection_radius": 100.0},
            20000,
            log_every=20000,
            triad={"n_step": 3, "target_update_tau": 0.1},
        )
    )
    assert stabilised.outcomes["outcome"].iloc[0] == "converged"
    assert np.abs(_final_weights(stabilised.metrics, 8)).max() < 1e-3
