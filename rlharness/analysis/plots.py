"""Figures of a run, drawn from its metrics and outcomes tables.

Each function takes the tables a run writes (``metrics``: one row per
variant x seed x logged step; ``outcomes``: one row per variant x seed) and
returns a matplotlib Figure, so notebooks and the CLI draw the same pictures.
Lines differ by colour and line style (`rlharness.analysis.style.STYLE`);
curves across seeds are medians with interquartile bands, which their legends
name. `CAPTIONS` says what each figure of a published run shows. Titles,
labels and grid values are shown as plain text (`rlharness.analysis.style.plain`),
never as math text.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rlharness.analysis.style import STYLE, plain, series_style
from rlharness.outcomes import DIVERGED

OUTCOME_COLOURS = {
    "converged": "#0173B2",
    "stable": "#0173B2",
    "soft-diverged-then-recovered": "#CC78BC",
    "soft-diverged": "#DE8F05",
    "hard-diverged": "#D55E00",
}
TRIAD_AXES = ("triad.features", "triad.n_step", "triad.off_policy")
CHARACTERS_PER_INCH = 14
"""About how many characters of 9-point text fit in an inch: where captions wrap."""
LOG_SCALE_DECADES = 3.0
"""Errors spanning more decades than this (a diverging run) are drawn on a log axis."""
CAPTIONS = {
    "weights": "Each weight component against steps, one panel per grid point; lines: median "
    "over seeds (Sutton & Barto Figs. 11.2, 11.5, 11.6).",
    "errors": "sqrt(VE) and sqrt(PBE) under the behaviour distribution against steps, one panel "
    "per grid point; lines: median over seeds, bands: interquartile range over seeds.",
    "max_abs_value": "Largest value estimate max |v| over states against steps (log axis); "
    "lines: median over seeds, bands: interquartile range over seeds; dashed: the absolute "
    "soft-divergence threshold.",
    "max_abs_q": "Largest Q over the probe states against env steps (log axis); lines: median "
    "over seeds, bands: interquartile range over seeds; dashed: the soft-divergence threshold.",
    "returns": "Greedy evaluation return against env steps per grid point; lines: median over "
    "seeds, bands: interquartile range over seeds.",
    "loss": "Huber loss against env steps per grid point; lines: median over seeds, bands: "
    "interquartile range over seeds.",
    "outcomes": "Fraction of seeds ending in each outcome, per grid point.",
    "knob_effects": "Fraction of seeds diverged for each value of each grid field: mean over "
    "grid points, with its 95% stratified bootstrap interval.",
    "triad_cube": "The triad cube: median final max |v| (colour, log10) and the fraction of "
    "seeds diverged for each corner of the three axes.",
}
"""What each figure a run publishes (``plots/<name>``) shows: the report's captions."""


def _panels(
    count: int, width: float = 4.2, height: float = 3.2, share_x: bool = True
) -> tuple[Figure, np.ndarray]:
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, sharex=share_x
    )
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, axes


def _band_label(label: str, frame: pd.DataFrame) -> str:
    """A series' legend entry naming its line and band: median, IQR over N seeds."""
    seeds = frame["seed"].nunique() if "seed" in frame.columns else 1
    return f"{label} (median, IQR over {seeds} seeds)"


def _value_scale(axis: Axes, values: Iterable[float]) -> None:
    """A linear axis, as the book draws errors, unless they span `LOG_SCALE_DECADES` decades."""
    positive = np.array([v for v in values if math.isfinite(v) and v > 0])
    if positive.size and np.log10(positive.max() / positive.min()) > LOG_SCALE_DECADES:
        axis.set_yscale("log")


def _quantiles(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    grouped = frame.groupby("step")[column]
    return pd.DataFrame(
        {"median": grouped.median(), "low": grouped.quantile(0.25), "high": grouped.quantile(0.75)}
    )


def weight_components(metrics: pd.DataFrame, labels: dict[int, str], title: str) -> Figure:
    """Each weight component against steps, one panel per variant (S&B Figs. 11.2, 11.5, 11.6).

    With several seeds, each line is the median over seeds.
    """
    with plt.style.context(STYLE):
        figure, axes = _panels(len(labels))
        for axis, (variant, label) in zip(axes.flat, labels.items(), strict=False):
            frame = metrics[metrics["variant"] == variant]
            components = sorted(
                (c for c in frame.columns if c.startswith("w_") and frame[c].notna().any()),
                key=lambda name: int(name[2:]),
            )
            medians = frame.groupby("step")[components].median()
            for index, component in enumerate(components):
                axis.plot(
                    medians.index,
                    medians[component],
                    label=f"w{int(component[2:]) + 1}",
                    **series_style(index),
                )
            axis.set_title(plain(label), fontsize=9)
            axis.set_xlabel("step (updates or sweeps)")
            axis.set_ylabel("weight value")
            axis.legend(fontsize=7, ncol=2)
        figure.suptitle(f"{plain(title)}: weight components")
        figure.tight_layout()
    return figure


def error_curves(metrics: pd.DataFrame, labels: dict[int, str], title: str) -> Figure:
    """sqrt(VE) and sqrt(PBE) against steps, one panel per variant, median and IQR over seeds."""
    with plt.style.context(STYLE):
        figure, axes = _panels(len(labels))
        for axis, (variant, label) in zip(axes.flat, labels.items(), strict=False):
            frame = metrics[metrics["variant"] == variant]
            drawn: list[float] = []
            errors = (("sqrt_ve", "sqrt(VE)"), ("sqrt_pbe", "sqrt(PBE)"))
            for index, (column, name) in enumerate(errors):
                curve = _quantiles(frame, column)
                (line,) = axis.plot(
                    curve.index,
                    curve["median"],
                    label=_band_label(name, frame),
                    **series_style(index),
                )
                axis.fill_between(
                    curve.index, curve["low"], curve["high"], color=line.get_color(), alpha=0.2
                )
                drawn.extend(curve.to_numpy().ravel())
            axis.set_title(plain(label), fontsize=9)
            axis.set_xlabel("step (updates or sweeps)")
            axis.set_ylabel("error (value units)")
            _value_scale(axis, drawn)
            axis.legend(fontsize=7)
        figure.suptitle(f"{plain(title)}: value error and projected Bellman error (under mu)")
        figure.tight_layout()
    return figure


def soft_bounds(axis: Axes, bounds: Iterable[float]) -> None:
    """Each absolute soft-divergence bound (R_max / (1 - gamma), or the spec's) as a labelled
    dashed line."""
    for bound in sorted(set(bounds)):
        axis.axhline(bound, color="black", linestyle="--", linewidth=1)
        axis.annotate(
            f"soft-divergence threshold {bound:.3g}",
            (0.01, bound),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="bottom",
        )


def max_abs_value_curves(
    metrics: pd.DataFrame,
    labels: dict[int, str],
    thresholds: dict[int, float],
    title: str,
    column: str = "max_abs_value",
) -> Figure:
    """max |v| (or probe max |Q|) against steps per variant, log scale, with the absolute soft
    bounds of the variants that have one."""
    with plt.style.context(STYLE):
        figure, axis = plt.subplots(figsize=(7.5, 4.5))
        for index, (variant, label) in enumerate(labels.items()):
            frame = metrics[metrics["variant"] == variant]
            curve = _quantiles(frame, column)
            (line,) = axis.plot(
                curve.index,
                curve["median"],
                label=_band_label(plain(label), frame),
                **series_style(index),
            )
            axis.fill_between(
                curve.index, curve["low"], curve["high"], color=line.get_color(), alpha=0.2
            )
        soft_bounds(axis, thresholds.values())
        axis.set_yscale("log")
        deep = column == "probe_max_abs_q"
        axis.set_xlabel("env steps" if deep else "step (updates or sweeps)")
        axis.set_ylabel(
            "max |Q| over probe states (return units)"
            if deep
            else "max |v| over states (value units)"
        )
        axis.set_title(f"{plain(title)}: largest value estimate")
        axis.legend(fontsize=7, loc="best")
        figure.tight_layout()
    return figure


def metric_curves(
    metrics: pd.DataFrame, labels: dict[int, str], column: str, ylabel: str, title: str
) -> Figure:
    """Any logged metric against env steps, one line per variant, median and IQR over seeds."""
    with plt.style.context(STYLE):
        figure, axis = plt.subplots(figsize=(7.5, 4.5))
        for index, (variant, label) in enumerate(labels.items()):
            frame = metrics[metrics["variant"] == variant].dropna(subset=[column])
            curve = _quantiles(frame, column)
            (line,) = axis.plot(
                curve.index,
                curve["median"],
                label=_band_label(plain(label), frame),
                **series_style(index),
            )
            axis.fill_between(
                curve.index, curve["low"], curve["high"], color=line.get_color(), alpha=0.2
            )
        axis.set_xlabel("env steps")
        axis.set_ylabel(plain(ylabel))
        axis.set_title(plain(title))
        axis.legend(fontsize=7, loc="best")
        figure.tight_layout()
    return figure


def outcome_fractions(outcomes: pd.DataFrame, labels: dict[int, str], title: str) -> Figure:
    """The fraction of seeds per outcome for each variant, as stacked bars."""
    counts = pd.crosstab(outcomes["variant"], outcomes["outcome"], normalize="index")
    present = [o for o in OUTCOME_COLOURS if o in counts.columns]
    counts = counts.reindex(columns=present, fill_value=0.0)
    figure, axis = plt.subplots(figsize=(7.5, 0.45 * len(labels) + 1.6))
    left = np.zeros(len(counts))
    names = [plain(labels[variant]) for variant in counts.index]
    for outcome in present:
        colour = OUTCOME_COLOURS[outcome]
        axis.barh(names, counts[outcome], left=left, color=colour, label=outcome)
        left += counts[outcome].to_numpy()
    axis.set_xlim(0, 1)
    axis.set_xlabel("fraction of seeds")
    axis.set_title(f"{plain(title)}: outcomes")
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def knob_effects(effects: pd.DataFrame, title: str) -> Figure:
    """Diverged fraction (mean over grid points) with its 95% stratified bootstrap interval
    for each value of each grid field (`rlharness.analysis.knobs.knob_effects`)."""
    knobs = list(dict.fromkeys(effects["knob"]))
    with plt.style.context(STYLE):
        figure, axes = _panels(len(knobs), width=3.6, height=3.0, share_x=False)
        for axis, knob in zip(axes.flat, knobs, strict=False):
            rows = effects[effects["knob"] == knob]
            positions = np.arange(len(rows))
            fraction = rows["diverged_fraction"]
            errors = np.clip([fraction - rows["ci_low"], rows["ci_high"] - fraction], 0.0, None)
            axis.errorbar(positions, fraction, yerr=errors, fmt="o", capsize=4)
            axis.set_xticks(positions, [plain(v) for v in rows["value"]], rotation=20, fontsize=8)
            axis.set_xlim(-0.5, len(rows) - 0.5)
            axis.set_ylim(-0.02, 1.02)
            axis.set_title(plain(knob), fontsize=9)
            axis.set_ylabel("fraction diverged")
        caption = (
            "Mean over grid points of the fraction of seeds diverged; bars: 95% CI, "
            "stratified bootstrap of the seeds within each grid point."
        )
        wrap = int(CHARACTERS_PER_INCH * figure.get_figwidth())
        figure.suptitle(
            f"{textwrap.fill(f'{plain(title)}: divergence by knob value', wrap)}\n"
            f"{textwrap.fill(caption, wrap)}",
            fontsize=9,
        )
        figure.tight_layout()
    return figure


def is_triad_cube(grid: Mapping[str, Sequence[object]]) -> bool:
    """Whether a grid is the 2 x 2 x 2 cube of the three triad axes."""
    return set(grid) == set(TRIAD_AXES) and all(len(grid[axis]) == 2 for axis in TRIAD_AXES)


def triad_cube(
    outcomes: pd.DataFrame, settings: dict[int, dict[str, object]], title: str
) -> Figure:
    """The triad cube as two 2 x 2 panels (off-policy off / on).

    Rows: function approximation; columns: bootstrapping. Each cell shows the
    median final max |v| (colour, log10) and the fraction of seeds that diverged.
    """
    per_variant = outcomes.groupby("variant").agg(
        max_value=("final_max_abs_value", "median"),
        diverged=("outcome", lambda o: float(np.mean(o.isin(DIVERGED)))),
    )
    values = {axis: list(dict.fromkeys(s[axis] for s in settings.values())) for axis in TRIAD_AXES}
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    colour_limit = max(2.0, float(np.log10(per_variant["max_value"].clip(lower=1e-12)).max()))
    image = None
    for axis, off_policy in zip(axes, values["triad.off_policy"], strict=True):
        grid = np.full((2, 2), np.nan)
        notes = [["", ""], ["", ""]]
        for variant, point in settings.items():
            if point["triad.off_policy"] != off_policy:
                continue
            row = values["triad.features"].index(point["triad.features"])
            column = values["triad.n_step"].index(point["triad.n_step"])
            grid[row, column] = np.log10(max(per_variant.loc[variant, "max_value"], 1e-12))
            notes[row][column] = (
                f"max|v| {per_variant.loc[variant, 'max_value']:.3g}\n"
                f"diverged {per_variant.loc[variant, 'diverged']:.0%}"
            )
        image = axis.imshow(grid, cmap="cividis", vmin=-2, vmax=colour_limit)
        for row in range(2):
            for column in range(2):
                axis.text(
                    column,
                    row,
                    notes[row][column],
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if grid[row, column] < colour_limit / 2 else "black",
                )
        axis.set_xticks([0, 1], [plain(f"n_step={v}") for v in values["triad.n_step"]])
        axis.set_yticks([0, 1], [plain(f"features={v}") for v in values["triad.features"]])
        axis.set_title(plain(f"off_policy={off_policy}"))
    assert image is not None
    figure.colorbar(image, ax=list(axes), label="log10 median final max |v|")
    figure.suptitle(f"{plain(title)}: the deadly triad cube")
    return figure
