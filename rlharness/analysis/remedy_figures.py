"""The remedies study's figures: what each stabiliser does, and whether warnings came first.

- `remedy_intervals`: per remedy (rows), the fraction of seeds soft-diverged, the final
  return and log10 peak max |Q|, one marker per game with its 95% stratified bootstrap
  interval over seeds, and the mean over games;
- `warning_traces`: over training, the median over members of log10 max |Q| and of each
  early-warning metric, members that soft-diverged against those that never did, for the
  unstabilised cell, one column per game.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rlharness.analysis.cells import CellSample, value_key
from rlharness.analysis.hypotheses import PEAK_COLUMN
from rlharness.analysis.plots import CHARACTERS_PER_INCH
from rlharness.analysis.remedies import GAME, MAX_Q, NONE, REMEDY, WARNINGS
from rlharness.analysis.statistics import DEFAULT_REPS
from rlharness.analysis.style import STYLE, plain

PANELS = {
    "diverged": "fraction of seeds soft-diverged",
    "final_eval_return": "final greedy return",
    PEAK_COLUMN: "log10 peak max |Q|",
}
MARKERS = ("o", "s", "^", "D")
WARNING_NAMES = {
    MAX_Q: "log10 max |Q| (probe states)",
    "feature_srank": "srank of features (delta 0.01)",
    "feature_cosine": "cosine of phi(s), phi(s')",
    "seem": "SEEM (largest eigenvalue)",
}


def remedy_intervals(
    outcomes: pd.DataFrame, title: str = "", reps: int = DEFAULT_REPS, seed: int = 0
) -> Figure:
    """Soft divergence, final return and peak max |Q| per remedy and game, with intervals."""
    remedies = list(dict.fromkeys(outcomes[REMEDY]))
    remedies = [NONE, *[r for r in remedies if r != NONE]] if NONE in remedies else remedies
    games = sorted(set(outcomes[GAME].map(value_key)))
    metrics = [m for m in PANELS if m == "diverged" or m in outcomes.columns]
    with plt.style.context(STYLE):
        figure, axes = plt.subplots(
            1, len(metrics), figsize=(3.6 * len(metrics), 0.45 * len(remedies) + 1.8), sharey=True
        )
        axes = np.atleast_1d(axes)
        positions = np.arange(len(remedies))[::-1]
        for axis, metric in zip(axes, metrics, strict=True):
            sample = CellSample(outcomes, [GAME, REMEDY], metric, reps, seed)
            present = set(sample.cells[REMEDY])
            for index, game in enumerate(games):
                offset = (index - (len(games) - 1) / 2) * 0.18
                for position, remedy in zip(positions, remedies, strict=True):
                    if remedy not in present or not _has(sample, game, remedy):
                        continue
                    estimate = sample.rate({GAME: game, REMEDY: remedy})
                    axis.errorbar(
                        estimate.value,
                        position + offset,
                        xerr=[[estimate.value - estimate.low], [estimate.high - estimate.value]],
                        fmt=MARKERS[index % len(MARKERS)],
                        color=f"C{index}",
                        markersize=5,
                        capsize=2,
                        label=plain(game) if position == positions[0] else None,
                    )
            for position, remedy in zip(positions, remedies, strict=True):
                if remedy in present:
                    mean = sample.rate({REMEDY: remedy}).value
                    axis.plot([mean, mean], [position - 0.35, position + 0.35], color="black")
            axis.set_xlabel(PANELS[metric])
            if metric == "diverged":
                axis.set_xlim(-0.05, 1.05)
        axes[0].set_yticks(positions, [plain(r) for r in remedies])
        axes[-1].legend(fontsize=8, loc="best")
        figure.suptitle(
            plain(f"{title}: what stops the triad" if title else "what stops the triad")
        )
        _caption(
            figure,
            "Markers: each game's cell, the mean over its seeds with a 95% bootstrap interval "
            "over seeds; black bars: the mean over games. 'none' is the study's most divergent "
            "cell (online bootstrap target, n = 1, largest prioritisation); each other row adds "
            "the stabilisers it names.",
        )
    return figure


def _has(sample: CellSample, game: str, remedy: str) -> bool:
    cells = sample.cells
    return bool(((cells[GAME] == game) & (cells[REMEDY] == remedy)).any())


def warning_traces(traces: pd.DataFrame, remedy: str = NONE, title: str = "") -> Figure:
    """Median log10 max |Q| and warnings over training, soft-diverged vs never-diverged."""
    chosen = traces[traces[REMEDY] == remedy]
    metrics = [m for m in (MAX_Q, *WARNINGS) if m in chosen.columns]
    games = sorted(set(chosen[GAME].map(value_key)))
    with plt.style.context(STYLE):
        figure, axes = plt.subplots(
            len(metrics),
            max(len(games), 1),
            figsize=(4.2 * max(len(games), 1), 2.4 * len(metrics) + 0.8),
            sharex=True,
            squeeze=False,
        )
        for column, game in enumerate(games):
            frame = chosen[chosen[GAME].map(value_key) == game]
            for row, metric in enumerate(metrics):
                axis = axes[row, column]
                for diverged, style, name in ((True, "-", "soft-diverged"), (False, "--", "never")):
                    group = frame[frame["diverged"] == diverged]
                    values = group[metric].astype(float)
                    if metric == MAX_Q:
                        with np.errstate(divide="ignore", invalid="ignore"):
                            values = np.log10(values.where(values > 0))
                    median = values.groupby(group["step"]).median()
                    members = group[["run", "variant", "seed"]].drop_duplicates().shape[0]
                    axis.plot(
                        median.index,
                        median.to_numpy(),
                        linestyle=style,
                        color="C1" if diverged else "C0",
                        label=f"{name} ({members})",
                    )
                axis.set_ylabel(WARNING_NAMES.get(metric, metric), fontsize=8)
                if row == 0:
                    axis.set_title(plain(game), fontsize=10)
                    axis.legend(fontsize=7)
            axes[-1, column].set_xlabel("env step")
        heading = f"{title}: " if title else ""
        figure.suptitle(plain(f"{heading}early warnings in the '{remedy}' cell"))
        _caption(
            figure,
            "Median over members at each logged step: members whose max |Q| went beyond the "
            "soft bound at some point (solid) and members that never did (dashed); counts in "
            "the legend.",
        )
    return figure


def _caption(figure: Figure, text: str) -> None:
    width = figure.get_figwidth() * CHARACTERS_PER_INCH
    wrapped = textwrap.fill(text, width=max(40, math.floor(width)))
    lines = wrapped.count("\n") + 1
    figure.tight_layout(rect=(0, 0.04 + 0.035 * lines, 1, 0.95))
    figure.text(0.01, 0.01, wrapped, fontsize=8, va="bottom", ha="left")
