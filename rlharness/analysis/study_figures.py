"""The deadly-triad study's figures, after van Hasselt et al. (2018), one panel per environment.

- `soft_divergence_by_target`: the fraction of seeds that soft-diverged for each
  bootstrap target (x) and n-step return (markers), as the paper's Figure 2;
- `max_q_against_return`: each member's peak max |Q| (log scale, soft bound
  dashed) against its final return, coloured and shaped by bootstrap target;
- `overestimation_by_n`: the greedy policy's predicted Q minus the discounted
  return it obtained, against n, one line per bootstrap target.

Rates are means over the cells of the knobs not shown, with 95% stratified
bootstrap intervals over the seeds within each cell (`rlharness.analysis.cells`),
as each figure's caption says. Series differ by marker or line style as well as
colour. Save them at `PAPER_DPI` (PNG and SVG: `rlharness.analysis.style.save_figures`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rlharness.analysis.cells import CellSample, levels, value_key
from rlharness.analysis.hypotheses import ENV, N_STEP, STUDY_KNOBS, TARGET, TARGETS
from rlharness.analysis.plots import CHARACTERS_PER_INCH, soft_bounds
from rlharness.analysis.statistics import DEFAULT_REPS
from rlharness.analysis.study import Study
from rlharness.analysis.style import STYLE, plain

PAPER_DPI = 200
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINE_STYLES = ("-", "--", "-.", ":")
SPREAD = 0.4
"""The width, in x units, over which the series at one x position are spread apart."""
SYMLOG_ABOVE = 10.0
"""Over-estimation is drawn on a symmetric log scale when a cell's mean passes this."""


def study_figures(study: Study, reps: int = DEFAULT_REPS, seed: int = 0) -> dict[str, Figure]:
    """The study's three figures by name: ``soft_divergence``, ``max_q_against_return`` and
    ``overestimation``."""
    outcomes, knobs, title = study.outcomes, study.knobs, study.experiment
    return {
        "soft_divergence": soft_divergence_by_target(outcomes, knobs, title, reps, seed),
        "max_q_against_return": max_q_against_return(outcomes, study.thresholds, title),
        "overestimation": overestimation_by_n(outcomes, knobs, title, reps, seed),
    }


def soft_divergence_by_target(
    outcomes: pd.DataFrame,
    knobs: Sequence[str] = STUDY_KNOBS,
    title: str = "",
    reps: int = DEFAULT_REPS,
    seed: int = 0,
) -> Figure:
    """Fraction of seeds soft-diverged per bootstrap target (x) and n (markers), per env."""
    sample = CellSample(outcomes, knobs, "diverged", reps, seed)
    targets, steps = _targets(outcomes), levels(outcomes, N_STEP)
    with plt.style.context(STYLE):
        figure, axes = _env_panels(outcomes, title, "soft divergence by bootstrap target and n")
        for axis, env in zip(axes, levels(outcomes, ENV), strict=True):
            for index, n in enumerate(steps):
                where = {ENV: env, N_STEP: n}
                _rates(axis, sample, where, TARGET, targets, (index, len(steps)), f"n = {n}")
            axis.set_xticks(range(len(targets)), [plain(t) for t in targets], rotation=15)
            axis.set_ylim(-0.03, 1.03)
            axis.set_xlabel("bootstrap target")
            axis.set_title(plain(env), fontsize=10)
        axes[0].set_ylabel("fraction of seeds soft-diverged")
        axes[-1].legend(title="multi-step return", fontsize=8)
        _caption(
            figure,
            f"Each marker: mean over {_cells_of(sample, (ENV, TARGET, N_STEP))} of the fraction "
            "of seeds whose max |Q| over probe states went beyond the soft bound R_max/(1-gamma) "
            f"at some point. Bars: {_band(sample)}.",
        )
    return figure


def max_q_against_return(
    outcomes: pd.DataFrame, thresholds: Sequence[float], title: str = ""
) -> Figure:
    """Each member's peak max |Q| over probe states (log) against its final return, per env."""
    targets = _targets(outcomes)
    envs = outcomes[ENV].map(value_key)
    kinds = outcomes[TARGET].map(value_key)
    peak = outcomes["peak_probe_max_abs_q"].to_numpy(dtype=float)
    final = outcomes["final_eval_return"].to_numpy(dtype=float)
    unbounded = ~np.isfinite(peak) & np.isfinite(final)
    shown = np.isfinite(peak) & (peak > 0) & np.isfinite(final)
    top = 10 * max([*peak[shown], *thresholds, 1.0])
    with plt.style.context(STYLE):
        colours = _colours()
        figure, axes = _env_panels(outcomes, title, "peak max |Q| against final return")
        for axis, env in zip(axes, levels(outcomes, ENV), strict=True):
            for index, target in enumerate(targets):
                member = ((envs == env) & (kinds == target)).to_numpy()
                marker, colour = MARKERS[index % len(MARKERS)], colours[index % len(colours)]
                chosen, beyond = member & shown, member & unbounded
                axis.scatter(
                    final[chosen],
                    peak[chosen],
                    s=24,
                    marker=marker,
                    color=colour,
                    label=plain(target),
                )
                axis.scatter(
                    final[beyond],
                    np.full(beyond.sum(), top),
                    s=24,
                    marker=marker,
                    facecolors="none",
                    edgecolors=colour,
                )
            soft_bounds(axis, thresholds)
            axis.set_yscale("log")
            axis.set_ylim(top=top * 1.5)
            axis.set_xlabel("final greedy evaluation return (per episode)")
            axis.set_title(plain(env), fontsize=10)
        axes[0].set_ylabel("peak max |Q| over probe states (return units)")
        axes[-1].legend(title="bootstrap target", fontsize=8)
        _caption(
            figure,
            "One point per member (grid point x seed). Dashed: the soft bound R_max/(1-gamma). "
            f"Hollow markers on the top edge: members whose max |Q| became non-finite "
            f"({int(unbounded.sum())}); members without a final evaluation are left out "
            f"({int((~np.isfinite(final)).sum())}).",
        )
    return figure


def overestimation_by_n(
    outcomes: pd.DataFrame,
    knobs: Sequence[str] = STUDY_KNOBS,
    title: str = "",
    reps: int = DEFAULT_REPS,
    seed: int = 0,
) -> Figure:
    """Final over-estimation (greedy Q minus Monte Carlo return) against n, one line per
    bootstrap target, per env."""
    sample = CellSample(outcomes, knobs, "final_overestimation", reps, seed)
    targets, steps = _targets(outcomes), levels(outcomes, N_STEP)
    symmetric_log = bool((sample.cells["rate"].abs() > SYMLOG_ABOVE).any())
    with plt.style.context(STYLE):
        figure, axes = _env_panels(outcomes, title, "over-estimation against n")
        for axis, env in zip(axes, levels(outcomes, ENV), strict=True):
            axis.axhline(0.0, color="0.5", linewidth=0.8)
            for index, target in enumerate(targets):
                where = {ENV: env, TARGET: target}
                series = (index, len(targets))
                _rates(axis, sample, where, N_STEP, steps, series, plain(target), line=True)
            axis.set_xticks(range(len(steps)), steps)
            if symmetric_log:
                axis.set_yscale("symlog", linthresh=1.0)
            axis.set_xlabel("multi-step return length n")
            axis.set_title(plain(env), fontsize=10)
        axes[0].set_ylabel("greedy Q minus discounted return (return units)")
        axes[-1].legend(title="bootstrap target", fontsize=8)
        _caption(
            figure,
            f"Each point: mean over {_cells_of(sample, (ENV, TARGET, N_STEP))} of the cell's mean "
            "over-estimation: the Q the greedy policy predicts for the states it visits in "
            "evaluation minus the discounted Monte Carlo return (clipped rewards) it obtained from "
            f"them, at the end of training. Bars: {_band(sample)}."
            + (" Symmetric log scale beyond +-1." if symmetric_log else ""),
        )
    return figure


def _rates(
    axis: Axes,
    sample: CellSample,
    where: Mapping[str, object],
    knob: str,
    values: Sequence[str],
    series: tuple[int, int],
    label: str,
    line: bool = False,
) -> None:
    """One series, the ``index``-th of ``count`` (``series``): the mean rate of the cells at
    each of ``values`` of ``knob`` (and ``where``) with its interval, shifted apart from the
    others; its marker, colour and (with ``line``) line style tell it apart."""
    index, count = series
    present = set(sample.cells.loc[_matching(sample.cells, where), knob])  # gaps of a grid
    positions, rates, lows, highs = [], [], [], []
    for position, value in enumerate(values):
        if value not in present:
            continue
        estimate = sample.rate({**where, knob: value})
        positions.append(position + SPREAD * ((index + 0.5) / count - 0.5))
        rates.append(estimate.value)
        lows.append(max(estimate.value - estimate.low, 0.0))
        highs.append(max(estimate.high - estimate.value, 0.0))
    colours = _colours()
    axis.errorbar(
        positions,
        rates,
        yerr=[lows, highs],
        marker=MARKERS[index % len(MARKERS)],
        linestyle=LINE_STYLES[index % len(LINE_STYLES)] if line else "none",
        color=colours[index % len(colours)],
        capsize=3,
        markersize=6,
        label=label,
    )


def _matching(cells: pd.DataFrame, where: Mapping[str, object]) -> pd.Series:
    chosen = pd.Series(True, index=cells.index)
    for knob, value in where.items():
        chosen &= cells[knob] == value_key(value)
    return chosen


def _targets(outcomes: pd.DataFrame) -> list[str]:
    """The bootstrap targets present, in the paper's order, then any others."""
    present = levels(outcomes, TARGET)
    return [t for t in TARGETS if t in present] + [t for t in present if t not in TARGETS]


def _env_panels(outcomes: pd.DataFrame, title: str, what: str) -> tuple[Figure, list[Axes]]:
    envs = levels(outcomes, ENV)
    figure, axes = plt.subplots(
        1, len(envs), figsize=(5.2 * len(envs), 4.0), squeeze=False, sharey=True
    )
    figure.suptitle(plain(f"{title}: {what}" if title else what))
    return figure, list(axes.flat)


def _colours() -> list[str]:
    return list(plt.rcParams["axes.prop_cycle"].by_key()["color"])


def _cells_of(sample: CellSample, shown: Sequence[str]) -> str:
    """What a point averages: the cells of the knobs not shown, e.g. ``the 9 cells of width x
    alpha``."""
    hidden = [knob for knob in sample.knobs if knob not in shown]
    if not hidden:
        return "the one cell"
    count = math.prod(sample.cells[knob].nunique() for knob in hidden)
    names = " x ".join(knob.split(".")[-1] for knob in hidden)
    return f"the {count} cells of {names}"


def _band(sample: CellSample) -> str:
    seeds = sample.cells["seeds"]
    each = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    return (
        f"{sample.confidence:.0%} CI, stratified bootstrap of the seeds within each cell "
        f"({each} seeds per cell, {sample.reps} resamples)"
    )


def _caption(figure: Figure, text: str) -> None:
    """``text`` under the panels, wrapped to the figure's width (kept by a tight bounding box)."""
    figure.tight_layout()
    wrap = int(CHARACTERS_PER_INCH * figure.get_figwidth() * 1.2)
    figure.text(0.01, 0.0, textwrap.fill(plain(text), wrap), fontsize=8, va="top", ha="left")
