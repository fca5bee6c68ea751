"""TDRC (Ghiassian et al. 2020): TDC whose secondary weights carry a ridge term."""

from __future__ import annotations

import numpy as np
import pytest

from rlharness.agents.linear.fixed_points import td_fixed_point, td_matrix
from rlharness.agents.linear.problem import build_problem
from rlharness.agents.linear.sampling import behave, continue_from, draw, new_stream, seed_keys
from rlharness.agents.linear.sampling import sampled_model as compiled_model
from rlharness.errors import SpecError
from rlharness.runner import check_experiment
from rlharness_envs.baird import baird_dynamics
from rlharness_envs.kolter import kolter_dynamics
from tests.helpers import BAIRD_W0, make_spec, run_one

COLUMNS = ("sqrt_ve", "sqrt_pbe", "td_error_mean", "td_error_rms", *[f"w_{i}" for i in range(8)])


def _tdrc(update: str, **knobs: object) -> dict[str, object]:
    return {
        "name": "tdrc",
        "alpha": 0.005,
        "beta": 0.05,
        "initial_weights": BAIRD_W0,
        "update": update,
        **knobs,
    }


@pytest.mark.parametrize(
    ("update", "off_policy"), [("expected", True), ("expected", False), ("sampled", False)]
)
def test_tdrc_without_its_regularisation_is_tdc_bit_for_bit(update: str, off_policy: bool) -> None:
    """In expectation and on-policy (rho = 1) the paper's v update is the book's."""
    triad = {"off_policy": off_policy}
    tdc = make_spec("triad/Baird-v0", {**_tdrc(update), "name": "tdc"}, 600, 50, 3, triad)
    tdrc = make_spec(
        "triad/Baird-v0", _tdrc(update, correction_regularisation=0.0), 600, 50, 3, triad
    )
    first, second = run_one(tdc).metrics, run_one(tdrc).metrics
    for column in COLUMNS:
        assert first[column].to_numpy().tobytes() == second[column].to_numpy().tobytes(), column


def test_sampled_tdrc_follows_the_authors_update_step_by_step() -> None:
    """The authors' TDRC on the kernel's own transitions (Baird, off-policy, kappa = 1):
    dh = (rho delta - h^T x) x - kappa h; w += alpha rho (delta x - gamma (h^T x) x');
    h += beta dh. Off-policy this differs from the book's TDC v update, rho (delta - v^T x) x."""
    steps, alpha, beta, kappa = 300, 0.005, 0.05, 1.0
    spec = make_spec("triad/Baird-v0", _tdrc("sampled"), steps, steps)
    result = run_one(spec)
    problem = build_problem(baird_dynamics(0.99), "env", off_policy=True, control=False)
    model = compiled_model(problem)
    X, gamma = model.features, model.gamma
    w, h = np.array(BAIRD_W0, dtype=float), np.zeros(8)
    rng = new_stream(seed_keys([result.metrics["seed"].iloc[-1]])[0])
    s = draw(model.start_cum, rng)
    rhos = set()
    for _ in range(steps):
        a, s_next = behave(model, s, rng)
        rho = model.importance_ratio[s, a]
        rhos.add(float(rho))
        x, x_next = X[s], X[s_next]
        delta = model.reward[s, a, s_next] + gamma * x_next @ w - x @ w
        delta_hat = h @ x
        dw = rho * (delta * x - gamma * delta_hat * x_next)
        dh = (rho * delta - delta_hat) * x - kappa * h
        w, h = w + alpha * dw, h + beta * dh
        s = continue_from(model, s_next, rng)
    assert rhos == {0.0, 7.0}, "off-policy transitions on both sides"
    logged = result.metrics[[f"w_{i}" for i in range(8)]].iloc[-1].to_numpy()
    np.testing.assert_allclose(logged, w, rtol=1e-12, atol=1e-12)


def test_the_regularisation_changes_the_trajectory_but_tdrc_still_converges_on_baird() -> None:
    """Expected TDRC with the paper's kappa = 1: PBE falls from 8.2 by more than 99% and no seed
    diverges, where semi-gradient DP diverges from the same w0 (Figure 11.2)."""
    result = run_one(make_spec("triad/Baird-v0", _tdrc("expected"), 4000, log_every=1000))
    metrics = result.metrics
    pbe = metrics["sqrt_pbe"].to_numpy()
    assert pbe[0] == pytest.approx(8.2214, abs=1e-3)
    assert pbe[-1] < 0.01 * pbe[0]
    assert result.outcomes["outcome"].tolist() == ["converged"]
    tdc = run_one(make_spec("triad/Baird-v0", {**_tdrc("expected"), "name": "tdc"}, 4000, 1000))
    assert not np.allclose(tdc.metrics["sqrt_ve"], metrics["sqrt_ve"])


def test_tdrc_converges_to_the_td_fixed_point_where_rewards_are_not_zero() -> None:
    """On the random walk the TD fixed point solves X^T D (X - gamma P X) w = X^T D r; TDRC's
    secondary weights are 0 there, so it is TDRC's fixed point too."""
    agent = {"name": "tdrc", "alpha": 0.1, "beta": 0.1, "update": "expected"}
    result = run_one(make_spec("triad/RandomWalk-v0", agent, 20000, log_every=20000))
    assert result.metrics["sqrt_pbe"].iloc[-1] < 1e-9
    assert result.metrics["sqrt_ve"].iloc[-1] < 1e-6


def _kolter(p: float):
    return build_problem(kolter_dynamics(p), "env", off_policy=True, control=False)


def test_expected_tdrc_reaches_kolters_off_policy_td_fixed_point_below_the_pole() -> None:
    """Kolter's chain off-policy with the paper's kappa = 1: TDRC settles on the linear solve
    of X^T D (X - gamma P X) w = X^T D r (non-zero rewards, a poor fixed point)."""
    agent = {"name": "tdrc", "alpha": 0.5, "beta": 0.5, "update": "expected"}
    result = run_one(make_spec("triad/Kolter-v0", agent, 10000, 10000, env_kwargs={"p": 0.3}))
    w_td = td_fixed_point(_kolter(0.3))[0]
    assert result.metrics["w_0"].iloc[-1] == pytest.approx(w_td, rel=1e-12)


@pytest.mark.parametrize(("fraction", "converges"), [(0.5, True), (2.0, False)])
def test_above_the_pole_expected_tdrc_is_stable_iff_kappa_is_below_minus_a(
    fraction: float, converges: bool
) -> None:
    """With one feature, expected TDRC's Jacobian in (w, v) is
    [[-alpha A, -alpha gamma F], [-beta A, -beta (C + kappa)]], A = C - gamma F, so its
    determinant is alpha beta A (A + kappa): where A < 0 (p above Kolter's pole) it is stable
    only for kappa < -A, and the paper's kappa = 1 diverges where TDC (kappa 0) converges."""
    p = 0.9
    a = td_matrix(_kolter(p))[0, 0]
    assert a < 0
    kappa = fraction * -a
    agent = {"name": "tdrc", "alpha": 1.0, "beta": 1.0, "correction_regularisation": kappa}
    steps = 100_000 if converges else 20_000
    spec = make_spec(
        "triad/Kolter-v0", {**agent, "update": "expected"}, steps, steps, env_kwargs={"p": p}
    )
    result = run_one(spec)
    if converges:
        w_td = td_fixed_point(_kolter(p))[0]
        assert result.metrics["w_0"].iloc[-1] == pytest.approx(w_td, rel=1e-3)
    else:
        assert result.outcomes["outcome"].item() in ("soft-diverged", "hard-diverged")


def test_only_tdrc_takes_a_correction_regularisation() -> None:
    with pytest.raises(SpecError, match=r"agent\.correction_regularisation: only tdrc uses it"):
        check_experiment(
            make_spec(
                "triad/Baird-v0",
                {**_tdrc("expected", correction_regularisation=1.0), "name": "tdc"},
                10,
            )
        )
