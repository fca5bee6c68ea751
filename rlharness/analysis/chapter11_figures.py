"""The figures of Sutton & Barto (2nd ed.) chapter 11, redrawn from the runs in a catalog.

`reproduction_figures` draws, for each chapter-11 experiment present, the
figure the book shows for it, laid out as in the book (weights and errors
against steps in one panel per variant), so a notebook can set each beside
the statement `rlharness.analysis.chapter11.reproductions` checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from rlharness.analysis import plots
from rlharness.analysis.chapter11 import (
    RunData,
    run_data,
    tsitsiklis_van_roy_factor,
    w_to_2w_factor,
)
from rlharness.analysis.curves import catalog_curves, plot_curves
from rlharness.analysis.style import plain
from rlharness.catalog import Catalog

ERROR_NAMES = {"sqrt_ve": "sqrt(VE)", "sqrt_pbe": "sqrt(PBE)"}
UPPER_TOGETHER = 1e-9
"""Baird's w1..w6 within this of each other are drawn as one line, as the book does."""


def weights_and_errors(data: RunData, title: str) -> Figure:
    """Weight components and errors against steps, one panel per variant (Fig. 11.5).

    Lines are medians over seeds; errors are black (solid sqrt(VE), dashed sqrt(PBE)).
    """
    labels = _labels(data)
    with plt.style.context(plots.STYLE):
        figure, axes = plt.subplots(
            1, len(labels), figsize=(5.0 * len(labels), 3.8), squeeze=False, sharex=True
        )
        for axis, (variant, label) in zip(axes[0], labels.items(), strict=True):
            rows = data.metrics[data.metrics["variant"] == variant]
            weights = sorted((c for c in rows.columns if c.startswith("w_")), key=_index)
            medians = rows.groupby("step")[[*weights, *ERROR_NAMES]].median()
            for column in weights:
                axis.plot(medians.index, medians[column], linewidth=1, label=f"w{_index(column)}")
            for column, style in zip(ERROR_NAMES, ("-", "--"), strict=True):
                axis.plot(
                    medians.index,
                    medians[column],
                    color="black",
                    linestyle=style,
                    linewidth=2,
                    label=ERROR_NAMES[column],
                )
            axis.set_title(plain(label), fontsize=9)
            axis.set_xlabel("steps (transitions, or sweeps for expected updates)")
            axis.set_ylabel("weight value / error (value units)")
            axis.legend(fontsize=7, ncol=2)
        figure.suptitle(plain(title))
        figure.tight_layout()
    return figure


def emphatic_trajectory(data: RunData, title: str) -> Figure:
    """Figure 11.6 as the book draws it: w1-w6, w7, w8 and sqrt(VE) against sweeps, linear axes.

    One panel per variant; lines are medians over seeds, w1..w6 one line where they coincide.
    """
    labels = _labels(data)
    with plt.style.context(plots.STYLE):
        figure, axes = plt.subplots(
            1, len(labels), figsize=(6.0 * len(labels), 4.2), squeeze=False, sharex=True
        )
        for axis, (variant, label) in zip(axes[0], labels.items(), strict=True):
            rows = data.metrics[data.metrics["variant"] == variant]
            medians = rows.groupby("step").median(numeric_only=True)
            upper = medians[[f"w_{j}" for j in range(6)]]
            if bool((upper.max(axis=1) - upper.min(axis=1) <= UPPER_TOGETHER).all()):
                axis.plot(medians.index, upper["w_0"], label="w1-w6")
            else:
                for j in range(6):
                    axis.plot(medians.index, upper[f"w_{j}"], linewidth=1, label=f"w{j + 1}")
            axis.plot(medians.index, medians["w_6"], label="w7")
            axis.plot(medians.index, medians["w_7"], label="w8")
            axis.plot(
                medians.index, medians["sqrt_ve"], color="black", linewidth=2, label="sqrt(VE)"
            )
            axis.axhline(0.0, color="grey", linewidth=0.5)
            axis.set_title(plain(label), fontsize=9)
            axis.set_xlabel("sweeps")
            axis.set_ylabel("weight value / sqrt(VE) (value units)")
            axis.legend(fontsize=7)
        figure.suptitle(plain(title))
        figure.tight_layout()
    return figure


def growth_against_analytic(
    data: RunData, factors: Mapping[int, float], steps_per_update: int, title: str, xlabel: str
) -> Figure:
    """|w| against steps (log scale) per variant, with the analytic growth as a dashed line."""
    labels = _labels(data)
    with plt.style.context(plots.STYLE):
        figure, axis = plt.subplots(figsize=(7.5, 4.5))
        for variant, label in labels.items():
            rows = data.metrics[(data.metrics["variant"] == variant) & (data.metrics["seed"] == 0)]
            steps, weight = rows["step"].to_numpy(), rows["w_0"].abs().to_numpy()
            (line,) = axis.plot(
                steps,
                weight,
                marker="o",
                markersize=3,
                linestyle="none",
                markevery=max(1, len(steps) // 25),
                label=plain(f"{label} (measured)"),
            )
            if variant in factors:
                analytic = weight[0] * factors[variant] ** ((steps - steps[0]) / steps_per_update)
                axis.plot(steps, analytic, color=line.get_color(), linestyle="--", linewidth=1)
        axis.plot([], [], color="black", linestyle="--", linewidth=1, label="analytic")
        axis.set_yscale("log")
        axis.set_xlabel(plain(xlabel))
        axis.set_ylabel("|w| (weight units)")
        axis.set_title(plain(title))
        axis.legend(fontsize=7)
        figure.tight_layout()
    return figure


def reproduction_figures(catalog: Catalog) -> dict[str, Figure]:
    """The book's figure for each chapter-11 experiment present, keyed by `FIGURE_NAMES` name."""
    figures = {}
    for experiment, draw in DRAWERS.items():
        key = catalog.latest_run(experiment)
        if key is not None:
            figures[FIGURE_NAMES[experiment]] = draw(catalog, key)
    return figures


def _figure_11_2(catalog: Catalog, key: str) -> Figure:
    data = run_data(catalog, key)
    title = "Figure 11.2: semi-gradient off-policy TD (sampled) and DP on Baird's counterexample"
    return plots.weight_components(data.metrics, _labels(data), title)


def _figure_11_5(catalog: Catalog, key: str) -> Figure:
    title = "Figure 11.5: TDC on Baird's counterexample, sampled and expected"
    return weights_and_errors(run_data(catalog, key), title)


def _figure_11_6(catalog: Catalog, key: str) -> Figure:
    title = "Figure 11.6: emphatic TD in expectation on Baird's counterexample"
    return emphatic_trajectory(run_data(catalog, key), title)


def _w_to_2w(catalog: Catalog, key: str) -> Figure:
    data = run_data(catalog, key)
    factors = {
        variant: w_to_2w_factor(
            float(data.variant_value(variant, "agent.alpha")), data.env_argument(variant, "gamma")
        )
        for variant in data.settings
    }
    title = "Section 11.2: w -> 2w, |w| grows by 1 + alpha (2 gamma - 1) per update"
    return growth_against_analytic(data, factors, 2, title, "environment steps")


def _example_11_1(catalog: Catalog, key: str) -> Figure:
    data = run_data(catalog, key)
    factors = {
        variant: tsitsiklis_van_roy_factor(
            data.env_argument(variant, "epsilon"), data.env_argument(variant, "gamma")
        )
        for variant in data.settings
        if data.variant_value(variant, "triad.off_policy") is not False
    }
    title = "Example 11.1: least-squares DP, |w| grows by (6 - 4 epsilon) gamma / 5 per iteration"
    return growth_against_analytic(data, factors, 1, title, "iterations (sweeps)")


def _triad_cube(catalog: Catalog, key: str) -> Figure:
    data = run_data(catalog, key)
    return plots.triad_cube(data.outcomes, data.settings, "Section 11.3")


def _random_walk(catalog: Catalog, key: str) -> Figure:
    curves = catalog_curves(catalog, [key], "sqrt_ve")
    title = "Section 9.4: on-policy linear TD converges (IQM over seeds, 95% band)"
    return plot_curves(curves, title=title)


FIGURE_NAMES = {
    "baird_td_dp": "figure_11_2",
    "baird_tdc": "figure_11_5",
    "baird_emphatic_td": "figure_11_6",
    "two_state_w2w": "w_to_2w",
    "tsitsiklis_van_roy": "example_11_1",
    "triad_cube_baird": "triad_cube",
    "random_walk_td": "random_walk",
}
"""The name of each chapter-11 experiment's figure (the book's figure number where it has one)."""
DRAWERS: dict[str, Callable[[Catalog, str], Figure]] = {
    "baird_td_dp": _figure_11_2,
    "baird_tdc": _figure_11_5,
    "baird_emphatic_td": _figure_11_6,
    "two_state_w2w": _w_to_2w,
    "tsitsiklis_van_roy": _example_11_1,
    "triad_cube_baird": _triad_cube,
    "random_walk_td": _random_walk,
}


def _labels(data: RunData) -> dict[int, str]:
    labels = data.outcomes.drop_duplicates("variant").set_index("variant")["label"]
    return {int(variant): str(label) for variant, label in labels.items()}


def _index(column: str) -> int:
    """The book's 1-based number of weight column ``w_<i>``."""
    return int(column[2:]) + 1
