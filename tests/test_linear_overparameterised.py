"""Che et al. (ICML 2024): a target network and over-parameterised linear features together
stabilise off-policy TD on Baird's counterexample, each alone does not; the learner lands on
the exact over-parameterised limit (I - X^+ X) w0 + X^+ v_pi."""

from __future__ import annotations

import numpy as np
import pytest

from rlharness.agents.linear.overparameterised import overparameterised_limit
from rlharness.agents.linear.problem import random_projection
from rlharness.agents.linear.trial import resolve_linear
from rlharness.errors import SpecError
from rlharness.spec import ExperimentSpec
from tests.helpers import BAIRD_W0, make_spec, run_one

CHE_GAMMA = {"gamma": 0.95}
"""Che et al.'s Baird (their baird.py): gamma 0.95, uniform weighting 1/7, w0 of Figure 11.2."""


def _baird(width: int | None, period: int, steps: int, **triad: object) -> ExperimentSpec:
    agent = {"name": "semi_gradient_dp", "alpha": 0.5, "initial_weights": BAIRD_W0}
    features = {"features": "projected", "feature_width": width} if width else {}
    return make_spec(
        "triad/Baird-v0",
        agent,
        steps,
        log_every=steps,
        triad={**features, "target_update_period": period, **triad},
        env_kwargs=CHE_GAMMA,
    )


def _outcome(spec: ExperimentSpec) -> str:
    return str(run_one(spec).outcomes["outcome"].iloc[0])


def _final_weights(spec: ExperimentSpec) -> np.ndarray:
    metrics = run_one(spec).metrics
    last = metrics[metrics["step"] == metrics["step"].max()]
    count = resolve_linear(spec).problem.n_features
    return last[[f"w_{i}" for i in range(count)]].to_numpy()[0]


def test_the_papers_baird_figure() -> None:
    """Their baird.py on Baird's own features (8 for 7 states, rank 7: over-parameterised):
    'TD' (step 0.5, Polyak target rate 0.8 every step) diverges, 'TD target' (step 0.999,
    the target copied every 3 steps) converges to v_pi = 0."""
    agent = {"name": "semi_gradient_dp", "initial_weights": BAIRD_W0}
    td = make_spec(
        "triad/Baird-v0",
        {**agent, "alpha": 0.5},
        3000,
        log_every=3000,
        triad={"target_update_tau": 0.8},
        env_kwargs=CHE_GAMMA,
    )
    assert _outcome(td) in ("soft-diverged", "hard-diverged")
    target = make_spec(
        "triad/Baird-v0",
        {**agent, "alpha": 0.999},
        3000,
        log_every=3000,
        triad={"target_update_period": 3},
        env_kwargs=CHE_GAMMA,
    )
    problem = resolve_linear(target).problem
    limit = overparameterised_limit(problem, np.asarray(BAIRD_W0, dtype=float))
    # v_pi = 0, but w0's part in the null space of X, along (1, 1, 1, 1, 1, 1, 4, -2), stays
    null = np.array([1, 1, 1, 1, 1, 1, 4, -2]) * 44 / 26
    np.testing.assert_allclose(limit, null, atol=1e-12)
    np.testing.assert_allclose(_final_weights(target), limit, atol=1e-9)


@pytest.mark.parametrize("width", [16, 64])
def test_over_parameterised_td_without_a_target_diverges(width: int) -> None:
    assert _outcome(_baird(width, 1, 5000)) in ("soft-diverged", "hard-diverged")


@pytest.mark.parametrize("width", [3, 6])
def test_a_target_network_with_under_parameterised_features_diverges(width: int) -> None:
    assert _outcome(_baird(width, 20, 5000)) in ("soft-diverged", "hard-diverged")


@pytest.mark.parametrize("width", [16, 64])
def test_target_network_and_over_parameterisation_converge_to_the_exact_limit(
    width: int,
) -> None:
    spec = _baird(width, 20, 20000)
    resolved = resolve_linear(spec)
    limit = overparameterised_limit(resolved.problem, resolved.initial_weights)
    # v_pi = 0 and the least-squares w0 has no null-space part: the limit is w = 0
    assert np.abs(limit).max() < 1e-12
    np.testing.assert_allclose(_final_weights(spec), limit, atol=1e-9)


def test_projected_features_span_the_env_values_and_keep_w0() -> None:
    spec = _baird(16, 20, 1)
    resolved = resolve_linear(spec)
    problem = resolved.problem
    G = random_projection(16, 8, 0)
    np.testing.assert_array_equal(problem.state_features, problem.model.features @ G.T)
    assert np.linalg.matrix_rank(problem.state_features) == 7
    np.testing.assert_allclose(
        problem.state_features @ resolved.initial_weights,
        problem.model.features @ np.asarray(BAIRD_W0),
        atol=1e-12,
    )
    under = resolve_linear(_baird(6, 20, 1)).problem
    assert np.linalg.matrix_rank(under.state_features) == 6
    with pytest.raises(ValueError, match="rank 6 < 7 live value rows"):
        overparameterised_limit(under, np.zeros(6))


def test_the_features_are_a_function_of_the_spec_not_the_run_seed() -> None:
    first = resolve_linear(_baird(16, 1, 1)).problem.state_features
    again = resolve_linear(_baird(16, 1, 1)).problem.state_features
    other = resolve_linear(_baird(16, 1, 1, feature_seed=1)).problem.state_features
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_the_control_form_projects_the_state_action_features() -> None:
    agent = {"name": "q_learning", "alpha": 0.01, "update": "expected"}
    spec = make_spec(
        "triad/BairdControl-v0",
        agent,
        1,
        triad={"features": "projected", "feature_width": 20},
    )
    problem = resolve_linear(spec).problem
    model = problem.model
    assert model.action_features is not None and problem.action_features is not None
    G = random_projection(20, model.action_features.shape[2], 0)
    np.testing.assert_array_equal(problem.action_features, model.action_features @ G.T)
    assert np.linalg.matrix_rank(problem.rows) == 14


@pytest.mark.parametrize(
    ("triad", "message"),
    [
        ({"features": "projected"}, "features 'projected' needs a feature_width"),
        ({"feature_width": 8}, "only features 'projected' takes a width"),
        ({"features": "projected", "feature_width": 0}, "greater than or equal to 1"),
        ({"features": "projected", "feature_width": 8, "feature_seed": -1}, "feature_seed"),
    ],
)
def test_bad_feature_knobs_are_refused_by_field(triad: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as raised:
        make_spec("triad/Baird-v0", {"name": "semi_gradient_dp", "alpha": 0.01}, 1, triad=triad)
    assert any(message in line for line in raised.value.messages), raised.value.messages


def test_q_learning_with_a_target_and_over_parameterised_features_reaches_q_star() -> None:
    """Che et al.'s control extension on Baird's control form (14 state-action rows, 16 features,
    projected to 64): Q-learning without a target diverges, with one it reaches q* = 0."""

    def spec(period: int, steps: int) -> ExperimentSpec:
        agent = {
            "name": "q_learning",
            "update": "expected",
            "alpha": 0.5,
            "initial_weights": BAIRD_W0 + BAIRD_W0,
        }
        triad = {
            "features": "projected",
            "feature_width": 64,
            "feature_seed": 1,
            "target_update_period": period,
        }
        return make_spec(
            "triad/BairdControl-v0", agent, steps, steps, triad=triad, env_kwargs=CHE_GAMMA
        )

    assert _outcome(spec(1, 5000)) in ("soft-diverged", "hard-diverged")
    converging = spec(100, 50000)
    resolved = resolve_linear(converging)
    limit = overparameterised_limit(resolved.problem, resolved.initial_weights)
    np.testing.assert_allclose(_final_weights(converging), limit, atol=1e-8)
