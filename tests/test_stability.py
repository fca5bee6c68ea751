"""Exact stability maps of expected linear learning: closed forms, the triad cube, run_expected,
and ``rlharness stability`` end to end."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlharness.agents.linear import RULES, hyperparameters_of
from rlharness.agents.linear.expected import run_expected
from rlharness.agents.linear.stability import period_map, seen_subspace, stationary_emphasis
from rlharness.agents.linear.trial import resolve_linear
from rlharness.analysis.stability_map import point_spec, predict
from rlharness.errors import SpecError
from rlharness.spec import AgentName, ExperimentSpec, LinearAgentSpec, load_spec
from tests.conftest import REPO
from tests.test_cli import BAD_INPUT, PNG_SIGNATURE, cli, write_spec

W2W = REPO / "experiments" / "two_state_w2w.yaml"
TVR = REPO / "experiments" / "tsitsiklis_van_roy.yaml"
CUBE = REPO / "experiments" / "triad_cube_baird.yaml"


def at(path: Path, **settings: object) -> ExperimentSpec:
    return point_spec(load_spec(path), {k.replace("__", "."): v for k, v in settings.items()}, "t")


@pytest.mark.parametrize("gamma", [0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 0.99])
@pytest.mark.parametrize("alpha", [0.01, 0.1, 1.0, 3.0])
def test_w_to_2w_radius_is_the_closed_form(gamma: float, alpha: float) -> None:
    """Sampled TD updates only on the w -> 2w transition (rho = 0 in the second state), which
    the behaviour visits half the time: w <- (1 + alpha c (2 gamma - 1)) w, c = mu(1) x(1)^2."""
    spec = at(W2W, env__kwargs__gamma=gamma, agent__alpha=alpha)
    problem = resolve_linear(spec).problem
    c = problem.weighting[0] * problem.state_features[0, 0] ** 2
    assert c == 0.5
    expected = abs(1 + alpha * c * (2 * gamma - 1))
    assert predict(spec).radius == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0, 3.9])
def test_w_to_2w_boundary_is_gamma_one_half_below_the_overshoot_bound(alpha: float) -> None:
    """Below alpha = 2 / c = 4, 1 + alpha c (2 gamma - 1) > -1 for every gamma in [0, 1)."""
    verdicts = {
        gamma: predict(at(W2W, env__kwargs__gamma=gamma, agent__alpha=alpha)).verdict
        for gamma in (0.0, 0.3, 0.49, 0.5, 0.51, 0.7, 0.99)
    }
    assert verdicts == {
        0.0: "stable",
        0.3: "stable",
        0.49: "stable",
        0.5: "marginal",
        0.51: "divergent",
        0.7: "divergent",
        0.99: "divergent",
    }


def test_w_to_2w_overshoots_above_the_bound() -> None:
    """At alpha = 5 and gamma = 0: 1 - 5/2 = -1.5, an oscillating divergence."""
    assert predict(at(W2W, env__kwargs__gamma=0.0, agent__alpha=5.0)).radius == pytest.approx(1.5)


def test_expected_dp_on_w_to_2w_also_weights_the_second_state() -> None:
    """semi_gradient_dp applies the target policy's stay in the second state as well:
    w <- w + alpha [1/2 (2 gamma - 1) + 1/2 (2 gamma - 2) 2] w = (1 + alpha (3 gamma - 5/2)) w."""
    for gamma, alpha in itertools.product((0.25, 0.75, 0.9), (0.05, 0.1)):
        spec = at(W2W, env__kwargs__gamma=gamma, agent__alpha=alpha, agent__name="semi_gradient_dp")
        expected = abs(1 + alpha * (3 * gamma - 2.5))
        assert predict(spec).radius == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epsilon", [0.01, 0.1, 0.5])
@pytest.mark.parametrize("gamma", [0.5, 0.8, 0.9, 0.99])
def test_tsitsiklis_van_roy_factor(epsilon: float, gamma: float) -> None:
    """Example 11.1: least-squares DP with the uniform weighting multiplies w by
    (6 - 4 eps) gamma / 5; the on-policy weighting converges."""
    spec = at(TVR, env__kwargs__epsilon=epsilon, env__kwargs__gamma=gamma)
    factor = (6 - 4 * epsilon) * gamma / 5
    assert predict(spec).radius == pytest.approx(factor, rel=1e-12)
    on_policy = at(
        TVR, env__kwargs__epsilon=epsilon, env__kwargs__gamma=gamma, triad__off_policy=False
    )
    assert predict(on_policy).verdict == "stable"


def test_baird_triad_cube_only_the_all_on_corner_diverges() -> None:
    """Expected semi-gradient DP on Baird's counterexample: only features=env, n_step=1,
    off_policy=true has rho > 1; the off-policy corners converge. The on-policy ones are
    marginal (rho = 1): the target policy always moves to the seventh state, so d_pi sits
    there and the values of the other states are never updated."""
    spec = load_spec(CUBE)
    verdicts = {
        corner: predict(point_spec(spec, dict(zip(spec.grid, corner, strict=True)), "t")).verdict
        for corner in itertools.product(*spec.grid.values())
    }
    assert verdicts == {
        ("tabular", "inf", False): "marginal",
        ("tabular", "inf", True): "stable",
        ("tabular", 1, False): "marginal",
        ("tabular", 1, True): "stable",
        ("env", "inf", False): "marginal",
        ("env", "inf", True): "stable",
        ("env", 1, False): "marginal",
        ("env", 1, True): "divergent",
    }


@pytest.mark.parametrize("ridge", [0.0, 0.2, 0.2393, 0.3, 1.0])
def test_baird_ridge_radius_is_that_of_the_regularised_td_matrix(ridge: float) -> None:
    """Expected TD with a ridge eta (Zhang, Yao & Whiteson 2021) is w <- w - alpha (A + eta I) w
    with A = X^T D (X - gamma P_pi X): rho = max |1 - alpha (lambda + eta)| over A's eigenvalues;
    -min Re lambda = 0.2393 is the ridge bound of experiments/what_stops_it_baird.yaml."""
    spec = at(
        CUBE, agent__ridge=ridge, triad__features="env", triad__n_step=1, triad__off_policy=True
    )
    problem = resolve_linear(spec).problem
    X, D = problem.state_features, np.diag(problem.weighting)
    gamma = problem.model.gamma
    eigenvalues = np.linalg.eigvals(X.T @ D @ (X - gamma * problem.policy_transition @ X))
    assert -eigenvalues.real.min() == pytest.approx(0.2393, abs=1e-4)
    alpha = 0.01
    expected = np.abs(1 - alpha * (eigenvalues + ridge)).max()
    assert predict(spec).radius == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "period", "tau"),
    [
        ("semi_gradient_dp", 7, 1.0),
        ("semi_gradient_dp", 1000, 1.0),
        ("semi_gradient_dp", 3, 0.3),
        ("semi_gradient_dp", 1, 0.5),
        ("tdc", 1, 1.0),
        ("emphatic_td", 1, 1.0),
    ],
)
def test_period_map_equals_run_expected(name: AgentName, period: int, tau: float) -> None:
    """Three target periods of the map equal 3 P sweeps of run_expected from a random w."""
    spec = point_spec(
        load_spec(CUBE),
        {
            "agent.name": name,
            "agent.beta": 0.05 if RULES[name].uses_beta else None,
            "agent.ridge": 0.1 if RULES[name].regularised else 0.0,
            "triad.features": "env",
            "triad.n_step": 1,
            "triad.off_policy": True,
            "triad.target_update_period": period,
            "triad.target_update_tau": tau,
        },
        "t",
    )
    agent = spec.agent
    assert isinstance(agent, LinearAgentSpec)
    problem = resolve_linear(spec).problem
    hyperparameters = hyperparameters_of(agent, spec.triad)
    w0 = np.random.default_rng(3).standard_normal((1, problem.n_features))
    rule = RULES[agent.name]
    assert rule.expected is not None
    auxiliary = np.zeros((1, problem.n_features if rule.auxiliary == "features" else 0))
    if rule.auxiliary == "states":  # emphatic TD's map holds the emphasis at its limit
        auxiliary = stationary_emphasis(problem, hyperparameters)[None, :]
    trace = run_expected(
        rule.expected(problem, hyperparameters),
        w0,
        auxiliary if auxiliary.size else np.zeros(0),
        problem.row_weighting,
        period,
        np.array([0, 3 * period]),
        np.array([np.inf]),
        target_update_tau=tau,
    )
    affine = period_map(problem, agent.name, hyperparameters).power(3)
    state = [w0[0], w0[0]] + ([] if rule.auxiliary == "states" else [auxiliary[0]])
    z = affine.matrix @ np.concatenate(state) + affine.offset
    np.testing.assert_allclose(
        z[: problem.n_features], trace.weights[-1, 0], rtol=1e-12, atol=1e-12
    )


def test_feature_null_space_is_left_out() -> None:
    """Baird's 8 features over 7 states leave one direction of w that no update moves; with it the
    Monte Carlo off-policy corner would look marginal (eigenvalue 1), without it it converges."""
    spec = at(CUBE, triad__features="env", triad__n_step="inf", triad__off_policy=True)
    problem = resolve_linear(spec).problem
    agent = spec.agent
    assert isinstance(agent, LinearAgentSpec)
    matrix = period_map(problem, agent.name, hyperparameters_of(agent, spec.triad)).matrix
    assert np.abs(np.linalg.eigvals(matrix)).max() == pytest.approx(1.0, abs=1e-12)
    assert seen_subspace(problem, matrix.shape[0]).shape == (16, 14)
    assert predict(spec).radius < 1 - 1e-3


def test_q_learning_is_refused() -> None:
    with pytest.raises(SpecError, match=r"agent\.name: q_learning's expected update takes a max"):
        predict(
            load_spec(REPO / "experiments" / "baird_control_dqn.yaml").model_copy(
                update={"agent": LinearAgentSpec(name="q_learning", alpha=0.1)}
            )
        )


def test_uncovered_sampled_n_step_is_refused() -> None:
    """The mean of sampled n-step TD where the behaviour skips the target's action is not
    derived: refused by name rather than predicted by the wrong (expected DP) map."""
    with pytest.raises(SpecError, match=r"triad\.n_step: the behaviour never takes"):
        predict(at(W2W, env__kwargs__gamma=0.9, triad__n_step=2))


def test_cli_on_w_to_2w_agrees_with_runs(tmp_path: Path) -> None:
    out = tmp_path / "map"
    result = cli(
        "stability",
        W2W,
        "--x",
        "env.kwargs.gamma",
        "--y",
        "agent.alpha",
        "--x-values",
        "0.25,0.5,0.75",
        "--y-values",
        "0.05,0.1",
        "--resolution",
        "5",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert "semi_gradient_dp" in result.stdout
    assert "agreement: 6/6 points" in result.stdout
    table = pd.read_csv(out / "stability.csv")
    assert list(table["predicted"]) == ["stable", "marginal", "divergent"] * 2
    assert list(table["measured"]) == ["stable", "stable", "diverged"] * 2
    assert table["agree"].all()
    assert (out / "stability.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (out / "stability.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--x", "agent.alhpa", "--y", "env.kwargs.gamma"], "agent.alhpa"),
        (
            ["--x", "triad.features", "--y", "env.kwargs.gamma", "--x-values", "env,tabular"],
            "not a number: 'env'",
        ),
        (
            ["--x", "triad.off_policy", "--y", "env.kwargs.gamma"],
            "triad.off_policy must take numbers",
        ),
        (["--x", "agent.alpha", "--y", "env.kwargs.gamma"], "agent.alpha has 1 value(s)"),
        (["--x", "agent.alpha", "--y", "agent.alpha"], "the two axes must differ"),
    ],
)
def test_cli_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = cli("stability", W2W, *args, "--no-runs", "--out", tmp_path)
    assert result.returncode == BAD_INPUT
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_refuses_a_deep_agent(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        {
            "name": "deep",
            "env": {"id": "triad/Baird-v0"},
            "agent": {"name": "dqn", "learning_rate": 0.001},
            "run": {"steps": 10},
            "grid": {
                "agent.learning_rate": [0.001, 0.01],
                "diagnostics.divergence_factor": [10, 20],
            },
        },
    )
    result = cli(
        "stability",
        spec,
        "--x",
        "agent.learning_rate",
        "--y",
        "diagnostics.divergence_factor",
        "--no-runs",
        "--out",
        tmp_path,
    )
    assert result.returncode == BAD_INPUT, result.stderr
    assert "agent.name: stability maps need a linear learner" in result.stderr
