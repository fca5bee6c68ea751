"""Kolter (NeurIPS 2011), section 3: the off-policy TD fixed point's error against the weighting.

The closed form here is derived by hand for the two-state chain: x = (1, c), c = 1.05 + eps,
P = 1/2 everywhere (so P X = m (1, 1), m = (1 + c) / 2), v = (1, 1.05), r = v - gamma 1.025,
gamma = 0.99, D = diag(p, 1 - p):
    w_TD(p) = (p r_0 + (1 - p) c r_1) / (p (1 - gamma m) + (1 - p) c (c - gamma m)),
    ||X w_TD - v||   = sqrt((w_TD - 1)^2 + (c w_TD - 1.05)^2),
    ||X w_TD - v||_D = sqrt(p (w_TD - 1)^2 + (1 - p) (c w_TD - 1.05)^2),
with a simple pole where the denominator vanishes, at the p* Zhang, Yao & Whiteson (2021)
write as (2961 + 45240 eps + 40400 eps^2) / (4141 + 84840 eps + 40400 eps^2).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import yaml

from rlharness.agents.linear.fixed_points import (
    SingularFixedPointError,
    best_approximation,
    td_fixed_point,
    value_error,
)
from rlharness.agents.linear.problem import build_problem
from rlharness.agents.linear.regularised import regularised_td_fixed_point
from rlharness.analysis.kolter_figure import (
    fixed_point_errors,
    kolter_weightings,
    singular_weighting,
    write_fixed_point_figure,
)
from rlharness.spec import parse_spec
from rlharness_envs.kolter import kolter_dynamics
from tests.conftest import REPO
from tests.helpers import make_spec, run_all, run_one

GAMMA = 0.99
V0, V1 = 1.0, 1.05
R0, R1 = V0 - GAMMA * 1.025, V1 - GAMMA * 1.025
EPSILONS = [0.01, 0.0, 0.001, 0.1]


def closed_form_w(p: np.ndarray, eps: float) -> np.ndarray:
    c = 1.05 + eps
    m = (1 + c) / 2
    return (p * R0 + (1 - p) * c * R1) / (p * (1 - GAMMA * m) + (1 - p) * c * (c - GAMMA * m))


def closed_form_errors(p: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    w, c = closed_form_w(p, eps), 1.05 + eps
    first, second = (w - V0) ** 2, (c * w - V1) ** 2
    return np.sqrt(first + second), np.sqrt(p * first + (1 - p) * second)


def published_pole(eps: float) -> float:
    return (2961 + 45240 * eps + 40400 * eps**2) / (4141 + 84840 * eps + 40400 * eps**2)


def _problem(p: float, eps: float = 0.01, off_policy: bool = True):
    return build_problem(kolter_dynamics(p, eps), "env", off_policy=off_policy, control=False)


@pytest.mark.parametrize("eps", EPSILONS)
def test_the_singular_weighting_is_the_published_pole(eps):
    assert singular_weighting(eps) == pytest.approx(published_pole(eps), rel=1e-14)
    with pytest.raises(SingularFixedPointError, match="singular under this state weighting"):
        td_fixed_point(_problem(singular_weighting(eps), eps))


def test_the_pole_at_the_papers_settings():
    assert singular_weighting(0.0) == pytest.approx(2961 / 4141, rel=1e-14)  # 0.71505
    assert singular_weighting(0.01) == pytest.approx(0.684386, abs=1e-6)


@pytest.mark.parametrize("eps", [0.01, 0.1])
def test_the_fixed_point_error_curve_matches_the_closed_form_over_many_weightings(eps):
    p = np.asarray(kolter_weightings(1999, eps))
    p = p[np.abs(p - singular_weighting(eps)) > 1e-3]
    curve = fixed_point_errors(p, eps)
    euclidean, weighted = closed_form_errors(p, eps)
    np.testing.assert_array_equal(curve["p"], p)
    np.testing.assert_allclose(curve["td_error"], euclidean, rtol=1e-11)
    np.testing.assert_allclose(curve["td_error_d"], weighted, rtol=1e-11)
    for p_value in p[::97]:
        w = td_fixed_point(_problem(float(p_value), eps))
        np.testing.assert_allclose(w, [closed_form_w(p_value, eps)], rtol=1e-11)
        regularised = regularised_td_fixed_point(_problem(float(p_value), eps), ridge=0.0)
        np.testing.assert_allclose(w, regularised, rtol=1e-11)


def test_without_representation_error_td_is_exact_at_every_weighting_but_the_pole():
    p = np.asarray(kolter_weightings(199, 0.0))
    p = p[np.abs(p - singular_weighting(0.0)) > 1e-3]
    curve = fixed_point_errors(p, 0.0)
    assert curve["td_error"].max() < 1e-11


@pytest.mark.parametrize("side", [-1.0, 1.0])
def test_the_error_grows_without_bound_as_p_approaches_the_pole_from_either_side(side):
    pole = singular_weighting(0.01)
    gaps = [1e-2, 1e-4, 1e-6, 1e-8, 1e-10]
    errors = fixed_point_errors([pole + side * gap for gap in gaps], 0.01)["td_error"].tolist()
    assert all(later > 50.0 * earlier for earlier, later in itertools.pairwise(errors))
    assert errors[-1] > 1e7
    # The pole is simple: error * |p - p*| tends to a constant, the same on both sides.
    scaled = [error * gap for error, gap in zip(errors, gaps, strict=True)]
    assert scaled[-1] == pytest.approx(scaled[-2], rel=1e-3)
    assert scaled[-1] == pytest.approx(_residue(pole), rel=1e-3)


def _residue(pole: float) -> float:
    """lim |p - p*| ||X w_TD - v|| = |b(p*)| / |A'(p*)| * ||x||, by hand."""
    c = 1.06
    m = (1 + c) / 2
    slope = (1 - GAMMA * m) - c * (c - GAMMA * m)
    b = pole * R0 + (1 - pole) * c * R1
    return abs(b / slope) * float(np.hypot(1.0, c))


def test_on_policy_the_fixed_point_is_within_the_tsitsiklis_van_roy_bound():
    """With D = d_pi = (1/2, 1/2): ||X w_TD - v||_D <= ||X w* - v||_D / sqrt(1 - gamma^2)."""
    problem = _problem(0.5, off_policy=False)
    td_error = value_error(problem, td_fixed_point(problem))
    best_error = value_error(problem, best_approximation(problem))
    assert best_error < td_error <= best_error / np.sqrt(1 - GAMMA**2)
    assert td_error == pytest.approx(closed_form_errors(np.array(0.5), 0.01)[1], rel=1e-12)


@pytest.mark.parametrize(
    ("p", "agent"),
    [
        (0.5, {"name": "least_squares_dp"}),
        (0.2, {"name": "least_squares_dp"}),
        (0.5, {"name": "semi_gradient_dp", "alpha": 50.0}),
        (0.5, {"name": "tdrc", "alpha": 10.0, "beta": 0.5, "update": "expected"}),
    ],
)
def test_dp_rules_and_tdrc_converge_to_the_td_fixed_point_below_the_pole(p, agent):
    result = run_one(make_spec("triad/Kolter-v0", agent, 3000, 3000, env_kwargs={"p": p}))
    w = result.metrics["w_0"].iloc[-1]
    assert w == pytest.approx(td_fixed_point(_problem(p))[0], rel=1e-9)
    assert w == pytest.approx(closed_form_w(np.array(p), 0.01), rel=1e-9)


@pytest.mark.parametrize(
    "agent", [{"name": "least_squares_dp"}, {"name": "semi_gradient_dp", "alpha": 50.0}]
)
def test_dp_diverges_above_the_pole(agent):
    """For p > p* the TD matrix A is negative: semi-gradient DP's factor 1 - alpha A and
    least-squares DP's gamma X^T D P X / X^T D X both exceed 1, so the iterations run away
    from the finite w_TD."""
    spec = make_spec("triad/Kolter-v0", agent, 3000, 3000, env_kwargs={"p": 0.9})
    assert run_one(spec).outcomes["outcome"].item() == "hard-diverged"


def test_the_figure_is_written(tmp_path):
    written = write_fixed_point_figure(tmp_path, points=99)
    assert [path.name for path in written] == [
        "kolter_fixed_point.png",
        "kolter_fixed_point.svg",
        "kolter_fixed_point.pdf",
    ]
    assert all(path.stat().st_size > 0 for path in written)


def test_the_shipped_experiment_traces_the_exact_curve_below_the_pole_and_diverges_above():
    """experiments/kolter_fixed_point.yaml at three of its weightings: 0.3, 0.683 (error 19.8,
    0.0014 below p*) and 0.7 (above p*)."""
    data = yaml.safe_load((REPO / "experiments" / "kolter_fixed_point.yaml").read_text())
    assert 0.683 in data["grid"]["env.kwargs.p"]
    data["grid"] = {"env.kwargs.p": [0.3, 0.683, 0.7]}
    below, near, above = run_all(parse_spec(data))
    exact = fixed_point_errors([0.3, 0.683], 0.01)["td_error_d"]
    assert below.metrics["sqrt_ve"].iloc[-1] == pytest.approx(exact[0], rel=1e-9)
    assert near.metrics["sqrt_ve"].iloc[-1] == pytest.approx(exact[1], rel=1e-9)
    assert exact[1] == pytest.approx(19.847, abs=1e-3)
    assert above.outcomes["outcome"].item() == "hard-diverged"
