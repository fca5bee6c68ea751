"""Where a grid diverges: the fraction of seeds diverged for every pair of grid fields.

A heatmap crosses two grid fields (rows x columns), pooling the seeds of
every grid point over the other fields; each cell is annotated with the
count ``k/n`` of seeds that diverged (soft-diverged, recovered or
hard-diverged; `rlharness.outcomes.DIVERGED`). For the triad cube the
three pairwise heatmaps sit beside `rlharness.analysis.plots.triad_cube`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rlharness.analysis import plots
from rlharness.analysis.cells import value_key
from rlharness.analysis.knobs import knob_effects
from rlharness.analysis.style import plain
from rlharness.catalog import Catalog
from rlharness.errors import ResultsError
from rlharness.outcomes import DIVERGED

COLOURMAP = "cividis"


def divergence_counts(
    outcomes: pd.DataFrame,
    rows: str,
    columns: str,
    order: Mapping[str, Sequence[object]] | None = None,
) -> pd.DataFrame:
    """One row per (``rows`` value, ``columns`` value): ``diverged``, ``seeds``, ``fraction``.

    Values are `value_key` text, in the order of ``order[field]`` when given
    (a run's grid), else in the order they first appear.
    """
    missing = [name for name in (rows, columns) if name not in outcomes.columns]
    if missing:
        raise ResultsError(f"no grid field {', '.join(missing)} in these outcomes")
    keyed = pd.DataFrame(
        {
            rows: outcomes[rows].map(value_key),
            columns: outcomes[columns].map(value_key),
            "diverged": outcomes["outcome"].isin(DIVERGED).astype(int),
        }
    )
    counts = keyed.groupby([rows, columns], sort=False)["diverged"].agg(["sum", "size"])
    counts = counts.rename(columns={"sum": "diverged", "size": "seeds"}).reset_index()
    counts["fraction"] = counts["diverged"] / counts["seeds"]
    for name in (rows, columns):
        values = [value_key(v) for v in (order or {}).get(name, [])]
        values += [v for v in dict.fromkeys(counts[name]) if v not in values]
        counts[name] = pd.Categorical(counts[name], categories=values, ordered=True)
    return counts.sort_values([rows, columns], ignore_index=True)


def divergence_heatmap(counts: pd.DataFrame, rows: str, columns: str, title: str) -> Figure:
    """The fractions of `divergence_counts` as a heatmap, each cell annotated ``k/n``."""
    row_values = list(counts[rows].cat.categories)
    column_values = list(counts[columns].cat.categories)
    fraction = np.full((len(row_values), len(column_values)), np.nan)
    notes = np.full(fraction.shape, "no runs", dtype=object)
    cells = zip(counts[rows], counts[columns], counts["diverged"], counts["seeds"], strict=True)
    for row, column, diverged, seeds in cells:
        i, j = row_values.index(row), column_values.index(column)
        fraction[i, j] = diverged / seeds
        notes[i, j] = f"{diverged}/{seeds}"
    figure, axis = plt.subplots(
        figsize=(1.5 * len(column_values) + 3.0, 0.8 * len(row_values) + 1.8), layout="constrained"
    )
    colours = plt.get_cmap(COLOURMAP).with_extremes(bad="0.85")
    image = axis.imshow(fraction, cmap=colours, vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), note in np.ndenumerate(notes):
        dark = bool(fraction[i, j] < 0.5)  # NaN (no runs) compares False: a light grey cell
        axis.text(j, i, note, ha="center", va="center", color="white" if dark else "black")
    axis.set_xticks(range(len(column_values)), [plain(value) for value in column_values])
    axis.set_yticks(range(len(row_values)), [plain(value) for value in row_values])
    axis.set_xlabel(plain(columns))
    axis.set_ylabel(plain(rows))
    axis.set_title(plain(title), fontsize=10)
    figure.colorbar(image, ax=axis, label="fraction of seeds diverged")
    return figure


def grid_fields(catalog: Catalog, run: str) -> dict[str, list[object]]:
    """The grid of a run: each field with its values, in the experiment file's order."""
    return dict(catalog.entries[run].config.get("grid") or {})


def divergence_heatmaps(catalog: Catalog, run: str) -> dict[str, Figure]:
    """One heatmap per pair of the run's grid fields, keyed ``divergence_<row>__<column>``."""
    grid = grid_fields(catalog, run)
    if len(grid) < 2:
        raise ResultsError(f"{run} has {len(grid)} grid field(s); a heatmap needs two")
    outcomes = catalog.outcomes([run])
    experiment = catalog.entries[run].config.get("name", run)
    figures = {}
    for rows, columns in itertools.combinations(grid, 2):
        counts = divergence_counts(outcomes, rows, columns, grid)
        pooled = [name for name in grid if name not in (rows, columns)]
        note = f", pooled over {', '.join(pooled)}" if pooled else ""
        title = f"{experiment}: seeds diverged{note}"
        name = f"divergence_{_short(rows)}__{_short(columns)}"
        figures[name] = divergence_heatmap(counts, rows, columns, title)
    return figures


def divergence_by_knob(catalog: Catalog, run: str) -> pd.DataFrame:
    """`knob_effects` of a run: seeds diverged per value of each grid field, the fraction
    averaged over grid points with its stratified bootstrap interval."""
    outcomes = catalog.outcomes([run]).dropna(axis="columns", how="all")
    return knob_effects(outcomes, list(grid_fields(catalog, run)))


def triad_overview(catalog: Catalog, run: str) -> dict[str, Figure]:
    """The divergence heatmaps of every pair of the run's grid fields, after the triad cube
    (`plots.triad_cube`) when the grid is one; keyed by figure name."""
    entry = catalog.entries[run]
    figures = {}
    if plots.is_triad_cube(grid_fields(catalog, run)):
        settings = {v["variant"]: v["settings"] for v in entry.summary["variants"]}
        title = entry.config.get("name", run)
        figures["triad_cube"] = plots.triad_cube(catalog.outcomes([run]), settings, title)
    return figures | divergence_heatmaps(catalog, run)


def _short(field: str) -> str:
    return field.split(".")[-1]
