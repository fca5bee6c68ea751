"""Kolter's counterexample (NeurIPS 2011): the off-policy TD fixed point's error against p.

`fixed_point_errors` computes, for each weighting p of triad/Kolter-v0, the exact
TD fixed point's error, ||X w_TD - v_pi|| (unweighted, as Zhang, Yao & Whiteson
2021 plot it, Figure 1a) and ||X w_TD - v_pi||_D, and the best approximation's
D-norm error; `fixed_point_figure` draws them on a log scale with the singular
weighting p* marked; `write_fixed_point_figure` saves it:
    python -m rlharness.analysis.kolter_figure [DIRECTORY]   (default experiments/figures)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rlharness.agents.linear.fixed_points import (
    best_approximation,
    euclidean_value_error,
    td_fixed_point,
    value_error,
)
from rlharness.agents.linear.problem import build_problem
from rlharness.analysis.style import PAPER_FORMATS, save_figure
from rlharness_envs.kolter import GAMMA, REPRESENTATION_ERROR, TRUE_VALUES, kolter_dynamics

FIGURE_NAME = "kolter_fixed_point"
DEFAULT_DIRECTORY = "experiments/figures"


def singular_weighting(epsilon: float = REPRESENTATION_ERROR) -> float:
    """p* where X^T D (X - gamma P X) = 0 on Kolter's chain: the TD fixed point's pole.

    With x = (1, c), c = 1.05 + epsilon, and P = 1/2 everywhere, P X = m (1, 1) with
    m = (1 + c) / 2, so the matrix is p (1 - gamma m) + (1 - p) c (c - gamma m),
    zero at the p returned.
    """
    c = TRUE_VALUES[1] + epsilon
    bootstrapped = GAMMA * (1.0 + c) / 2.0
    second = c * (c - bootstrapped)
    return second / (second + bootstrapped - 1.0)


def fixed_point_errors(
    weightings: Sequence[float], epsilon: float = REPRESENTATION_ERROR
) -> pd.DataFrame:
    """One row per p: ``p``, ``td_error``, ``td_error_d`` and ``best_approximation_error_d``."""
    rows = []
    for p in weightings:
        problem = build_problem(kolter_dynamics(p, epsilon), "env", off_policy=True, control=False)
        w = td_fixed_point(problem)
        rows.append(
            {
                "p": float(p),
                "td_error": euclidean_value_error(problem, w),
                "td_error_d": value_error(problem, w),
                "best_approximation_error_d": value_error(problem, best_approximation(problem)),
            }
        )
    return pd.DataFrame(rows)


def fixed_point_figure(errors: pd.DataFrame, epsilon: float = REPRESENTATION_ERROR) -> Figure:
    """The errors of `fixed_point_errors` against p on a log scale, p* marked."""
    figure, axes = plt.subplots(figsize=(5.0, 3.5))
    axes.semilogy(errors["p"], errors["td_error"], label="TD fixed point, ||Xw - v||")
    axes.semilogy(errors["p"], errors["td_error_d"], ":", label="TD fixed point, ||Xw - v||_D")
    axes.semilogy(
        errors["p"], errors["best_approximation_error_d"], "--", label="best approximation, D-norm"
    )
    axes.axvline(singular_weighting(epsilon), color="grey", linewidth=0.8, label="singular p*")
    axes.set_xlabel("p, the weighting of state 0")
    axes.set_ylabel("value error")
    axes.set_title(f"Kolter (2011), epsilon = {epsilon:g}: off-policy TD fixed point")
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def kolter_weightings(points: int, epsilon: float = REPRESENTATION_ERROR) -> list[float]:
    """``points`` weightings evenly inside (0, 1), with p* itself left out."""
    pole = singular_weighting(epsilon)
    grid = np.linspace(0.0, 1.0, points + 2)[1:-1]
    return [float(p) for p in grid if abs(p - pole) > 1e-9]


def write_fixed_point_figure(
    directory: Path | str,
    points: int = 999,
    epsilon: float = REPRESENTATION_ERROR,
    formats: Sequence[str] = PAPER_FORMATS,
) -> list[Path]:
    """Draw the figure over `kolter_weightings`; save it as ``directory/kolter_fixed_point.*``."""
    figure = fixed_point_figure(
        fixed_point_errors(kolter_weightings(points, epsilon), epsilon), epsilon
    )
    try:
        return save_figure(figure, Path(directory) / FIGURE_NAME, formats)
    finally:
        plt.close(figure)


if __name__ == "__main__":
    for written in write_fixed_point_figure(
        sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIRECTORY
    ):
        print(written)
