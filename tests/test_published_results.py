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


def _book_expected_emphatic_td(sweeps: int) -> tuple[np.ndarray, np.ndarray]:
    """w and sqrt(VE) after each sweep, computed state by state as the book's reference code does.

    An independent rewrite of ``expected_emphatic_TD`` and ``figure_11_7`` in Shangtong Zhang's
    reinforcement-learning-an-introduction (chapter11/counterexample.py), which draws the
    book's Figure 11.6: one mean emphasis m starts at 0; each sweep, the state reached by the
    solid action (the lower one, rho = 7) has emphasis gamma 7 m + 1 and every upper state
    (reached by dashed, rho = 0) has 1; w then takes the synchronous step
    alpha sum_s (1/7) M(s) delta(s) x(s), with delta(s) = gamma x(lower)^T w - x(s)^T w (the
    target policy always goes to the lower state, every reward is 0); m becomes the mean of
    M; sqrt(VE) is recorded after the step, under the uniform weighting, as v_pi = 0.
    """
    gamma, alpha, solid_probability, lower = 0.99, 0.03, 1 / 7, 6
    features = np.zeros((7, 8))
    for state in range(6):
        features[state, state], features[state, 7] = 2.0, 1.0
    features[lower, 6], features[lower, 7] = 1.0, 2.0
    w = np.array(BAIRD_W0, dtype=float)
    mean_emphasis = 0.0
    weights, errors = [w.copy()], [np.sqrt(np.mean((features @ w) ** 2))]
    for _ in range(sweeps):
        update, emphases = np.zeros(8), []
        for state in range(7):
            rho_into_state = 1 / solid_probability if state == lower else 0.0
            emphasis = gamma * rho_into_state * mean_emphasis + 1.0
            emphases.append(emphasis)
            td_error = gamma * features[lower] @ w - features[state] @ w
            update += (1 / 7) * emphasis * td_error * features[state]
        w = w + alpha * update
        mean_emphasis = float(np.mean(emphases))
        weights.append(w.copy())
        errors.append(np.sqrt(np.mean((features @ w) ** 2)))
    return np.array(weights), np.array(errors)


def test_expected_emphatic_td_follows_the_books_trajectory() -> None:
    """Figure 11.6: expected ETD (alpha = 0.03) from the emphasis at 0, sweep by sweep.

    sqrt(VE) rises from sqrt(198/7) = 5.32 to a peak of 10.656 at sweep 26, the weights
    reverse (w8 turns down after sweep 22 and is negative from sweep 52, w1..w6 turn down
    after sweep 48, w7 turns back up after sweep 71, w8 back up after 102), sqrt(VE) falls
    below 1 at sweep 99 and reaches 4.6e-13 at sweep 1000.
    """
    sweeps = 1000
    spec = make_spec(
        "triad/Baird-v0",
        {"name": "emphatic_td", "update": "expected", "alpha": 0.03, "initial_weights": BAIRD_W0},
        steps=sweeps,
    )
    metrics = run_one(spec).metrics
    weights = metrics[[f"w_{j}" for j in range(8)]].to_numpy()
    ve = metrics["sqrt_ve"].to_numpy()
    book_weights, book_ve = _book_expected_emphatic_td(sweeps)
    np.testing.assert_array_equal(metrics["step"], np.arange(sweeps + 1))
    np.testing.assert_allclose(weights, book_weights, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ve, book_ve, rtol=0, atol=1e-12)

    assert ve[0] == pytest.approx(np.sqrt(198 / 7), rel=1e-15)
    peak = int(np.argmax(ve))
    assert (peak, round(ve[peak], 3)) == (26, 10.656)
    assert np.all(np.diff(ve[: peak + 1]) > 0) and np.all(np.diff(ve[peak:400]) < 0)
    upper, w7, w8 = weights[:, 0], weights[:, 6], weights[:, 7]  # the book's 1-based names
    assert np.ptp(weights[:, :6], axis=1).max() < 1e-12  # w1..w6 move together
    assert (int(np.argmax(w8[:200])), int(np.argmax(upper[:200]))) == (22, 48)
    assert (int(np.argmin(w7[:200])), int(np.argmin(w8[:200]))) == (71, 102)
    assert int(np.argmax(w8 < 0)) == 52 and np.all(w8[52:] < 0)
    assert int(np.argmax(ve < 1)) == 99 and np.all(ve[99:] < 1)
    assert ve[-1] < 1e-12
    # Every update lies in the span of the x(s), orthogonal to X's null space n: w ends at
    # w0's orthogonal projection onto n, (w0 . n / n . n) n = (22 / 13) n.
    n = np.array([1, 1, 1, 1, 1, 1, 4, -2])
    np.testing.assert_allclose(weights[-1], 22 / 13 * n, rtol=0, atol=1e-11)


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
