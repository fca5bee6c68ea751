"""Sutton & Barto (2nd ed.) chapter 11 facts, reproduced by the linear learners."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import BAIRD_W0, make_spec, run_one


def _final(result, column: str) -> np.ndarray:
    return result.metrics.groupby("seed")[column].last().to_numpy()


def test_semi_gradient_td_diverges_on_baird() -> None:
    """Figure 11.2 (left): off-policy TD(0) at alpha = 0.01 from w0 grows without bound."""
    spec = make_spec(
        "triad/Baird-v0",
        {"name": "semi_gradient_td", "alpha": 0.01, "initial_weights": BAIRD_W0},
        steps=1000,
        log_every=250,
        seeds=10,
    )
    result = run_one(spec)
    norms = result.metrics.pivot(index="step", columns="seed", values="weight_norm")
    initial = np.linalg.norm(BAIRD_W0)
    assert (norms.loc[1000] > 20 * initial).all()
    assert (norms.loc[1000] > norms.loc[500]).all() and (norms.loc[500] > norms.loc[250]).all()
    assert set(result.outcomes["outcome"]) == {"soft-diverged"}
    assert (result.outcomes["weight_norm_growth_rate"] > 0).all()


def test_semi_gradient_dp_diverges_on_baird_with_the_figure_shape() -> None:
    """Figure 11.2 (right): DP diverges; w1..w6 move together, w8 leads, w7 stays small."""
    spec = make_spec(
        "triad/Baird-v0",
        {"name": "semi_gradient_dp", "alpha": 0.01, "initial_weights": BAIRD_W0},
        steps=1000,
        log_every=100,
    )
    result = run_one(spec)
    final = result.metrics.iloc[-1]
    upper = [final[f"w_{j}"] for j in range(6)]
    assert np.ptp(upper) < 1e-9
    assert final["w_7"] > upper[0] > 50 > abs(final["w_6"])
    log_norm = np.log(result.metrics["weight_norm"].to_numpy())
    assert np.all(np.diff(log_norm[3:]) > 0)
    assert result.outcomes.loc[0, "outcome"] == "soft-diverged"


@pytest.mark.parametrize("update", ["expected", "sampled"])
def test_tdc_drives_pbe_to_zero_but_not_ve(update: str) -> None:
    """Figure 11.5: sqrt(PBE) falls towards 0 while sqrt(VE) stays near 2 after 1000 steps."""
    spec = make_spec(
        "triad/Baird-v0",
        {
            "name": "tdc",
            "update": update,
            "alpha": 0.005,
            "beta": 0.05,
            "initial_weights": BAIRD_W0,
        },
        steps=1000,
        log_every=100,
        seeds=10 if update == "sampled" else 1,
    )
    result = run_one(spec)
    start = result.metrics[result.metrics["step"] == 0]
    pbe, ve = _final(result, "sqrt_pbe"), _final(result, "sqrt_ve")
    assert start["sqrt_pbe"].iloc[0] == pytest.approx(8.22, abs=0.01)
    assert np.median(pbe) < (0.01 if update == "expected" else 0.2)
    assert np.all(np.abs(ve - 2.0) < 0.25)
    assert set(result.outcomes["outcome"]) == {"converged"}


def test_expected_emphatic_td_drives_ve_to_zero() -> None:
    """Figure 11.6: expected ETD at alpha = 0.03 converges to the true values v = 0."""
    spec = make_spec(
        "triad/Baird-v0",
        {"name": "emphatic_td", "update": "expected", "alpha": 0.03, "initial_weights": BAIRD_W0},
        steps=1000,
        log_every=100,
    )
    result = run_one(spec)
    assert result.metrics["sqrt_ve"].iloc[0] == pytest.approx(np.sqrt(198 / 7))
    assert result.metrics["sqrt_ve"].iloc[-1] < 1e-6
    assert result.metrics["weight_norm"].iloc[-1] > 1.0  # w sits in the null space of X


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.75, 0.9])
def test_w_to_2w_grows_by_the_analytic_factor(gamma: float) -> None:
    """Section 11.2: w grows by 1 + alpha (2 gamma - 1) per update; stable iff gamma <= 1/2."""
    alpha = 0.1
    spec = make_spec(
        "triad/TwoState-v0",
        {"name": "semi_gradient_td", "alpha": alpha, "initial_weights": [1.0]},
        steps=40,
        env_kwargs={"gamma": gamma},
    )
    weights = run_one(spec).metrics["w_0"].to_numpy()
    ratios = weights[1:] / weights[:-1]
    factor = 1 + alpha * (2 * gamma - 1)
    # The walk alternates: the w -> 2w transition (an update), then the reset (rho = 0).
    np.testing.assert_allclose(ratios[0::2], factor, rtol=1e-12)
    np.testing.assert_array_equal(ratios[1::2], 1.0)
    assert (abs(weights[-1]) <= abs(weights[0])) == (gamma <= 0.5)


@pytest.mark.parametrize(("epsilon", "gamma"), [(0.01, 0.99), (0.5, 0.99), (0.1, 0.8), (1.0, 0.9)])
def test_tsitsiklis_van_roy_least_squares_factor(epsilon: float, gamma: float) -> None:
    """Example 11.1: least-squares DP multiplies w by (6 - 4 epsilon) gamma / 5 per iteration."""
    spec = make_spec(
        "triad/TsitsiklisVanRoy-v0",
        {"name": "least_squares_dp", "initial_weights": [1.0]},
        steps=20,
        env_kwargs={"epsilon": epsilon, "gamma": gamma},
    )
    result = run_one(spec)
    weights = result.metrics["w_0"].to_numpy()
    factor = (6 - 4 * epsilon) * gamma / 5
    np.testing.assert_allclose(weights[1:] / weights[:-1], factor, rtol=1e-10)
    diverges = gamma > 5 / (6 - 4 * epsilon)
    assert (weights[-1] > weights[0]) == diverges


def test_tsitsiklis_van_roy_converges_under_on_policy_weighting() -> None:
    """Weighting the regression by the on-policy distribution d = (eps, 1) / (1 + eps) contracts.

    The fit then gives w_{k+1} = 2 gamma (d0 + 2 (1 - eps) d1) / (d0 + 4 d1) w_k, below 1.
    """
    epsilon, gamma = 0.01, 0.99
    spec = make_spec(
        "triad/TsitsiklisVanRoy-v0",
        {"name": "least_squares_dp", "initial_weights": [1.0]},
        steps=50,
        triad={"off_policy": False},
        env_kwargs={"epsilon": epsilon, "gamma": gamma},
    )
    weights = run_one(spec).metrics["w_0"].to_numpy()
    d0, d1 = epsilon / (1 + epsilon), 1 / (1 + epsilon)
    factor = 2 * gamma * (d0 + 2 * (1 - epsilon) * d1) / (d0 + 4 * d1)
    assert factor < 1
    np.testing.assert_allclose(weights[1:] / weights[:-1], factor, rtol=1e-10)


@pytest.mark.parametrize("n_step", [1, 4, "inf"])
def test_on_policy_linear_td_converges_on_the_random_walk(n_step: int | str) -> None:
    """On-policy linear TD converges (Tsitsiklis & Van Roy 1997); affine features fit v_pi."""
    spec = make_spec(
        "triad/RandomWalk-v0",
        {"name": "semi_gradient_td", "alpha": 0.01},
        steps=20_000,
        log_every=1000,
        seeds=8,
        triad={"n_step": n_step},
    )
    result = run_one(spec)
    ve = _final(result, "sqrt_ve")
    assert result.metrics[result.metrics["step"] == 0]["sqrt_ve"].iloc[0] == pytest.approx(
        np.sqrt(np.dot([1, 2, 3, 2, 1], (np.arange(1, 6) / 6) ** 2) / 9)
    )
    assert np.median(ve) < 0.15
    assert set(result.outcomes["outcome"]) == {"converged"}


def test_tabular_q_learning_converges_to_q_star_on_baird_control() -> None:
    """Tabular Q-learning is a gamma-contraction: expected and sampled forms approach q* = 0."""
    for update in ("expected", "sampled"):
        spec = make_spec(
            "triad/BairdControl-v0",
            {"name": "q_learning", "update": update, "alpha": 0.5, "initial_weights": BAIRD_W0 * 2},
            steps=20_000,
            log_every=20_000,
            seeds=4,
            triad={"features": "tabular"},
            env_kwargs={"gamma": 0.9},
        )
        result = run_one(spec)
        first = result.metrics[result.metrics["step"] == 0]["max_abs_value"]
        assert (first == 12.0).all()
        assert (_final(result, "max_abs_value") < 0.01).all(), update


@pytest.mark.parametrize("update", ["expected", "sampled"])
def test_linear_q_learning_on_baird_control_diverges(update: str) -> None:
    """With Baird's features per action, Q-learning from the fixed behaviour policy diverges."""
    spec = make_spec(
        "triad/BairdControl-v0",
        {"name": "q_learning", "update": update, "alpha": 0.01, "initial_weights": BAIRD_W0 * 2},
        steps=6000,
        log_every=1000,
        seeds=3,
    )
    result = run_one(spec)
    growth = result.metrics.pivot(index="step", columns="seed", values="max_abs_value")
    assert (growth.diff().iloc[1:] > 0).all().all()
    assert (growth.loc[6000] > 300).all()
    assert set(result.outcomes["outcome"]) == {"soft-diverged"}
