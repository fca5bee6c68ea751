"""Figures of a `Comparison`: interval estimates and performance profiles (Agarwal et al. 2021).

Both take the result of `rlharness.analysis.compare.compare`, so a report, a
notebook and the CLI draw the same pictures; both save to PNG and SVG. A
diverged seed's score counts as the worst value (see
`rlharness.analysis.statistics`): an interval reaching it is drawn to the edge
of the axis and marked with an arrow.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rlharness.analysis.compare import Comparison
from rlharness.analysis.statistics import CONFIDENCE, performance_profiles
from rlharness.analysis.style import STYLE, plain, series_style

PROFILE_POINTS = 60
WIDE_RATIO = 100.0
"""Scores spanning this factor or more (a diverged group beside converged ones) get a log axis."""


PROFILE_MARGIN = 0.05
"""How far the profile's thresholds reach beyond the scores (a fraction of their span or ratio)."""


def _direction(comparison: Comparison) -> str:
    return "higher is better" if comparison.higher_is_better else "lower is better"


def _seeds(comparison: Comparison) -> str:
    """How many seeds each group's interval is over: ``N seeds`` or ``N-M seeds``."""
    counts = sorted({len(group.rows) for group in comparison.groups})
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{span} seeds per group"


def _finite_range(values: Sequence[float]) -> tuple[float, float]:
    """The span of the finite ``values``, widened when it is a point and (0, 1) when empty."""
    finite = [value for value in values if np.isfinite(value)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if low == high:
        pad = abs(low) * 0.1 or 0.5
        return low - pad, high + pad
    return low, high


def _log_axis(values: Sequence[float]) -> float | None:
    """None for a linear axis; else the smallest positive finite value, where a log axis starts.

    Non-negative scores spanning `WIDE_RATIO` or more get a log axis (symmetric-log
    when one is zero, linear below that smallest positive value).
    """
    finite = np.array([value for value in values if np.isfinite(value)])
    positive = finite[finite > 0]
    if not positive.size or finite.min() < 0 or positive.max() < WIDE_RATIO * positive.min():
        return None
    return float(positive.min())


def _set_scale(axis: Axes, values: Sequence[float]) -> None:
    start = _log_axis(values)
    if start is None:
        return
    if start == min(value for value in values if np.isfinite(value)):
        axis.set_xscale("log")
    else:
        axis.set_xscale("symlog", linthresh=start)


def interval_figure(comparison: Comparison) -> Figure:
    """The IQM of each group with its confidence interval, as one horizontal bar per group."""
    names = [group.name for group in comparison.groups]
    iqm = [comparison.estimates[name]["iqm"] for name in names]
    values = [v for e in iqm for v in (e.value, e.low, e.high)]
    left, right = _finite_range(values)
    start = _log_axis(values)
    if start is None:
        margin = 0.08 * (right - left)
        left, right = left - margin, right + margin
    else:
        factor = (right / start) ** 0.05
        left, right = (left / factor if left > 0 else left), right * factor
    with plt.style.context(STYLE):
        figure, axis = plt.subplots(figsize=(8.0, 1.3 + 0.42 * len(names)))
        _set_scale(axis, values)
        positions = np.arange(len(names))[::-1]
        for index, (position, estimate) in enumerate(zip(positions, iqm, strict=True)):
            low = float(np.clip(estimate.low, left, right))
            high = float(np.clip(estimate.high, left, right))
            colour = series_style(index)["color"]
            axis.barh(position, high - low, left=low, height=0.6, color=colour, alpha=0.75)
            if np.isfinite(estimate.value):
                axis.plot(
                    estimate.value, position, marker="o", color=colour, markeredgecolor="black"
                )
            else:
                axis.annotate("IQM = worst", (right, position), ha="right", va="center")
            for bound, edge, arrow in ((estimate.low, left, "<"), (estimate.high, right, ">")):
                if not np.isfinite(bound):
                    axis.plot(edge, position, marker=arrow, color="black", clip_on=False)
        axis.set_yticks(positions, [plain(name) for name in names], fontsize=8)
        axis.set_xlim(left, right)
        axis.set_xlabel(
            f"IQM of {plain(comparison.metric)} ({_direction(comparison)}); bars: "
            f"{comparison.confidence:.0%} stratified bootstrap CI over {_seeds(comparison)}"
        )
        axis.set_ylabel("group")
        axis.set_title(f"Interval estimates: {plain(comparison.metric)}", fontsize=10)
        figure.tight_layout()
    return figure


def profile_thresholds(comparison: Comparison, points: int = PROFILE_POINTS) -> np.ndarray:
    """Thresholds a little beyond every finite score of the comparison, so that each profile
    runs from no run to all of its finite runs; log-spaced on a log axis."""
    scores = np.concatenate([np.ravel(values) for values in comparison.scores.values()]).tolist()
    low, high = _finite_range(scores)
    start = _log_axis(scores)
    if start is None:
        pad = PROFILE_MARGIN * (high - low)
        return np.linspace(low - pad, high + pad, points)
    widened = 1 + PROFILE_MARGIN
    if low < start:
        below = low - PROFILE_MARGIN * start  # in the symmetric-log axis's linear part
        return np.concatenate([[below], np.geomspace(start, high * widened, points - 1)])
    return np.geomspace(start / widened, high * widened, points)


def profile_figure(comparison: Comparison, thresholds: np.ndarray | None = None) -> Figure:
    """The fraction of runs beating each threshold per group, with bootstrap bands.

    ``thresholds`` default to `profile_thresholds`. A run beats a threshold by
    scoring above it, or below it when lower is better.
    """
    taus = profile_thresholds(comparison) if thresholds is None else np.asarray(thresholds)
    profiles, bands = performance_profiles(
        comparison.scores, taus, comparison.higher_is_better, comparison.reps
    )
    relation = ">" if comparison.higher_is_better else "<"
    with plt.style.context(STYLE):
        figure, axis = plt.subplots(figsize=(7.5, 4.2))
        _set_scale(axis, taus.tolist())
        for index, group in enumerate(comparison.groups):
            style = series_style(index)
            axis.plot(taus, profiles[group.name], label=plain(group.name), **style)
            low, high = bands[group.name]
            axis.fill_between(taus, low, high, color=style["color"], alpha=0.2, linewidth=0)
        axis.set_ylim(-0.02, 1.02)
        axis.set_xlabel(f"threshold \N{GREEK SMALL LETTER TAU} on {plain(comparison.metric)}")
        axis.set_ylabel(f"fraction of runs with score {relation} \N{GREEK SMALL LETTER TAU}")
        axis.set_title(
            f"Performance profile ({_direction(comparison)}); bands: {CONFIDENCE:.0%} bootstrap "
            f"CI over {_seeds(comparison)}",
            fontsize=10,
        )
        axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        figure.tight_layout()
    return figure
