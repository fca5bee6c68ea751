"""Rates of a grid's cells and matched-cell comparisons, with stratified bootstrap intervals.

A *cell* is one combination of a design's knobs (a grid point, the environment
included); its seeds are independent replicates of it. Cells of one grid can
differ a lot (a target network may never diverge where Q-learning always
does), so nothing here pools seeds across cells:

- a cell's *rate* is the mean of a per-seed metric over its seeds (for
  ``diverged``, the fraction of its seeds that diverged);
- the *marginal rate* of a knob's level is the mean of the rates of the cells at
  that level, one per combination of the other knobs (a *stratum*), every cell
  weighted alike whatever its number of seeds;
- the *marginal effect* of level T against level C is the mean over strata of
  ``rate(T cell) - rate(C cell)``, a matched-cell average difference; strata that
  lack either cell are left out, and counted.

Intervals are percentile intervals of a stratified bootstrap: each replicate
resamples, in every cell independently, as many seeds as the cell has, with
replacement, and recomputes the statistic from the resampled cell rates. The
generator is seeded and the cells are drawn in sorted order, each cell's values
sorted, so the same outcomes and seed give the same interval whatever the order
of the rows. When every cell's seeds agree, the interval is the point. With few
seeds per cell a percentile bootstrap understates the uncertainty (a cell whose
three seeds agree contributes none), so each estimate carries its seed counts.

A seed whose metric is not finite (a seed that hard-diverged before its first
evaluation has no final return) is left out of its cell for that metric; a cell
left with no seed is absent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Real

import numpy as np
import pandas as pd

from rlharness.analysis.statistics import CONFIDENCE, DEFAULT_REPS
from rlharness.errors import ResultsError
from rlharness.outcomes import DIVERGED, Outcome

INDICATORS: dict[str, tuple[str, ...]] = {
    "diverged": DIVERGED,
    "hard_diverged": (Outcome.HARD_DIVERGED,),
}
"""Per-seed 0/1 metrics read from ``outcome``: soft divergence at some point (the paper's
measure: soft-diverged, recovered or hard-diverged), and unbounded (hard) divergence."""
CELL_SUMMARY = {
    "final_eval_return": "median",
    "final_overestimation": "mean",
}
"""Per-cell summaries of final metrics that `cell_rates` adds where the outcomes have them."""


def value_key(value: object) -> str:
    """A grid value as text that is the same however a table stored it (1, 1.0, "1" -> "1")."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return str(int(number)) if math.isfinite(number) and number.is_integer() else value
    if isinstance(value, Real):
        number = float(value)
        return str(int(number)) if math.isfinite(number) and number.is_integer() else str(number)
    return str(value)


def levels(outcomes: pd.DataFrame, knob: str) -> list[str]:
    """The levels of ``knob`` as `value_key` text: in numeric order when every level is a
    number (widths, alphas, n), else in the order they first appear."""
    _require_columns(outcomes, [knob])
    found = list(dict.fromkeys(outcomes[knob].map(value_key)))
    try:
        return sorted(found, key=float)
    except ValueError:
        return found


def metric_values(outcomes: pd.DataFrame, metric: str) -> pd.Series:
    """The per-seed values of ``metric`` as floats: an `INDICATORS` name or a numeric column."""
    if metric in INDICATORS:
        _require_columns(outcomes, ["outcome"])
        return outcomes["outcome"].isin(INDICATORS[metric]).astype(float)
    if metric not in outcomes.columns:
        numeric = [c for c in outcomes.columns if pd.api.types.is_numeric_dtype(outcomes[c])]
        raise ResultsError(
            f"no metric {metric!r} in these outcomes; metrics: {', '.join([*INDICATORS, *numeric])}"
        )
    return pd.to_numeric(outcomes[metric], errors="coerce").astype(float)


@dataclass(frozen=True)
class CellEstimate:
    """A mean over cells (or over matched pairs of cells) with its bootstrap interval."""

    value: float
    low: float
    high: float
    strata: int
    """The cells averaged (a rate), or the strata with both cells (an effect)."""
    min_seeds: int
    """The fewest seeds of any cell used."""
    max_seeds: int
    """The most seeds of any cell used."""
    treatment: float = math.nan
    """An effect's mean rate of its treatment cells, over the matched strata."""
    control: float = math.nan
    """An effect's mean rate of its control cells, over the matched strata."""


class CellSample:
    """One metric's per-seed values grouped into the cells of ``knobs``, with ``reps``
    stratified bootstrap replicates of every cell's rate."""

    def __init__(
        self,
        outcomes: pd.DataFrame,
        knobs: Sequence[str],
        metric: str = "diverged",
        reps: int = DEFAULT_REPS,
        seed: int = 0,
        confidence: float = CONFIDENCE,
    ) -> None:
        _require_columns(outcomes, knobs)
        self.knobs = list(knobs)
        self.metric = metric
        self.reps = reps
        self.confidence = confidence
        keyed = outcomes[self.knobs].map(value_key)
        values = metric_values(outcomes, metric)
        finite = np.isfinite(values.to_numpy())
        grouped = values[finite].groupby([keyed[k][finite] for k in self.knobs], sort=True)
        generator = np.random.default_rng(seed)
        keys, seeds, rates, replicates = [], [], [], []
        for key, group in grouped:
            cell = np.sort(group.to_numpy())
            keys.append(key if isinstance(key, tuple) else (key,))
            seeds.append(len(cell))
            rates.append(float(np.mean(cell)))
            replicates.append(_resampled_means(cell, reps, generator))
        self.cells = pd.DataFrame(keys, columns=self.knobs).assign(seeds=seeds, rate=rates)
        """One row per cell: its knob values (`value_key` text), ``seeds`` and ``rate``."""
        self.replicates = np.column_stack(replicates) if replicates else np.empty((reps, 0))
        """``reps x cells``: each cell's rate in each bootstrap replicate."""

    def rate(self, where: Mapping[str, object] | None = None) -> CellEstimate:
        """The mean rate of the cells with the given knob values (all cells when empty)."""
        chosen = self._select(where or {})
        if not chosen.any():
            raise ResultsError(f"no cell of {self.metric} has {_describe(where or {})}")
        return self._estimate(self.replicates[:, chosen].mean(axis=1), self._rates[chosen], chosen)

    def effect(self, knob: str, treatment: object, control: object) -> CellEstimate:
        """The mean over strata of ``rate(treatment cell) - rate(control cell)`` for ``knob``."""
        treated = self._stratum_index(knob, treatment)
        untreated = self._stratum_index(knob, control)
        matched = sorted(set(treated) & set(untreated))
        if not matched:
            raise ResultsError(
                f"no combination of the other knobs has both {knob}={value_key(treatment)} and "
                f"{knob}={value_key(control)}, so they cannot be compared cell by cell"
            )
        t = np.array([treated[stratum] for stratum in matched])
        c = np.array([untreated[stratum] for stratum in matched])
        differences = self.replicates[:, t] - self.replicates[:, c]
        used = np.zeros(len(self.cells), dtype=bool)
        used[t] = used[c] = True
        return replace(
            self._estimate(differences.mean(axis=1), self._rates[t] - self._rates[c], used),
            treatment=float(np.mean(self._rates[t])),
            control=float(np.mean(self._rates[c])),
        )

    @property
    def _rates(self) -> np.ndarray:
        return self.cells["rate"].to_numpy()

    def _select(self, where: Mapping[str, object]) -> np.ndarray:
        chosen = np.ones(len(self.cells), dtype=bool)
        for knob, value in where.items():
            self._check_level(knob, value)
            chosen &= (self.cells[knob] == value_key(value)).to_numpy()
        return chosen

    def _stratum_index(self, knob: str, level: object) -> dict[tuple[str, ...], int]:
        """Each stratum (the other knobs' values) that has a cell at ``level``: that cell."""
        others = [name for name in self.knobs if name != knob]
        rows = np.flatnonzero(self._select({knob: level}))
        strata = self.cells.iloc[rows][others].itertuples(index=False, name=None)
        return dict(zip(strata, rows.tolist(), strict=True))

    def _check_level(self, knob: str, value: object) -> None:
        if knob not in self.knobs:
            raise ResultsError(f"{knob!r} is not a knob of this design; knobs: {self.knobs}")
        present = list(dict.fromkeys(self.cells[knob]))
        if value_key(value) not in present:
            measured = "" if self.metric in INDICATORS else f" with a finite {self.metric}"
            raise ResultsError(
                f"{knob} has no level {value_key(value)!r}{measured}; "
                f"levels: {', '.join(present) or 'none'}"
            )

    def _estimate(
        self, replicated: np.ndarray, point: np.ndarray, used: np.ndarray
    ) -> CellEstimate:
        """The mean of ``point`` (one value per cell or stratum) with the percentile interval
        of its ``replicated`` bootstrap values; the seed counts of the cells marked ``used``."""
        tail = (1 - self.confidence) / 2
        low, high = np.quantile(replicated, [tail, 1 - tail])
        seeds = self.cells["seeds"].to_numpy()[used]
        return CellEstimate(
            float(np.mean(point)),
            float(low),
            float(high),
            len(point),
            int(seeds.min()),
            int(seeds.max()),
        )


def cell_rates(outcomes: pd.DataFrame, knobs: Sequence[str]) -> pd.DataFrame:
    """One row per cell, in `levels` order: its knob values, ``seeds``, the fractions of its seeds
    ``diverged`` and ``hard_diverged``, and the median final return and mean final
    over-estimation where the outcomes have them (``median_final_eval_return``,
    ``mean_final_overestimation``; over the seeds with a finite value)."""
    _require_columns(outcomes, knobs)
    summaries = [column for column in CELL_SUMMARY if column in outcomes.columns]
    frame = outcomes[list(knobs)].map(value_key)
    for metric in (*INDICATORS, *summaries):
        frame[metric] = metric_values(outcomes, metric).replace([np.inf, -np.inf], np.nan)
    grouped = frame.groupby(list(knobs), sort=False)
    table = grouped.agg(
        seeds=("diverged", "size"),
        diverged=("diverged", "mean"),
        hard_diverged=("hard_diverged", "mean"),
    )
    for metric in summaries:
        table[f"{CELL_SUMMARY[metric]}_{metric}"] = grouped[metric].agg(CELL_SUMMARY[metric])
    rank = {knob: {level: i for i, level in enumerate(levels(outcomes, knob))} for knob in knobs}
    return table.reset_index().sort_values(
        list(knobs), key=lambda column: column.map(rank[str(column.name)]), ignore_index=True
    )


def marginal_rates(
    outcomes: pd.DataFrame,
    knob: str,
    knobs: Sequence[str],
    metric: str = "diverged",
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per level of ``knob`` (`levels` order): the mean rate of its cells over the
    strata of the other ``knobs``, its interval, and the cells and seeds behind it."""
    sample = CellSample(outcomes, knobs, metric, reps, seed, confidence)
    order = [level for level in levels(outcomes, knob) if level in set(sample.cells[knob])]
    estimates = [sample.rate({knob: level}) for level in order]
    return pd.DataFrame(
        {
            "knob": knob,
            "value": order,
            "cells": [e.strata for e in estimates],
            "seeds": [int(sample.cells.loc[sample.cells[knob] == v, "seeds"].sum()) for v in order],
            "rate": [e.value for e in estimates],
            "ci_low": [e.low for e in estimates],
            "ci_high": [e.high for e in estimates],
        }
    )


def marginal_effect(
    outcomes: pd.DataFrame,
    knob: str,
    treatment: object,
    control: object,
    knobs: Sequence[str],
    metric: str = "diverged",
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> CellEstimate:
    """The matched-cell effect of ``knob`` = ``treatment`` against ``control`` on ``metric``:
    the mean over strata of the difference of the two cells' rates, with its interval."""
    return CellSample(outcomes, knobs, metric, reps, seed, confidence).effect(
        knob, treatment, control
    )


def _resampled_means(cell: np.ndarray, reps: int, generator: np.random.Generator) -> np.ndarray:
    """The means of ``reps`` resamples of ``cell`` with replacement, as many values as it has.

    For 0/1 values the resampled mean is exactly Binomial(n, mean) / n, drawn
    without materialising ``reps x n`` indices (a linear grid may have thousands of seeds).
    """
    size = len(cell)
    if np.isin(cell, (0.0, 1.0)).all():
        return generator.binomial(size, np.mean(cell), size=reps) / size
    return cell[generator.integers(0, size, size=(reps, size))].mean(axis=1)


def _require_columns(outcomes: pd.DataFrame, names: Sequence[str]) -> None:
    missing = [name for name in names if name not in outcomes.columns]
    if missing:
        knobs = sorted(column for column in outcomes.columns if "." in column)
        raise ResultsError(
            f"no column {', '.join(missing)} in these outcomes; knob columns: "
            f"{', '.join(knobs) or 'none'}"
        )


def _describe(where: Mapping[str, object]) -> str:
    return ", ".join(f"{knob}={value_key(value)}" for knob, value in where.items()) or "any knobs"
