"""Curves across seeds with confidence bands: learning curves and max |v| / max |Q| curves.

At every logged step, the seeds of a group (a grid point of a run, or the
runs pooled by knob values) give one point estimate (IQM by default, as in
Agarwal et al. 2021) and a 95% percentile band from rliable's stratified
bootstrap, which resamples whole seeds; a fixed seed gives the same band. A
seed that stopped logging (a hard divergence) drops out of the steps after
its last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rlharness.analysis.plots import soft_bounds
from rlharness.analysis.statistics import CONFIDENCE, DEFAULT_REPS, curve_intervals
from rlharness.analysis.style import STYLE, plain, series_style
from rlharness.catalog import Catalog
from rlharness.errors import ResultsError

UNIT = ("run", "variant", "seed")
"""What the bootstrap resamples: one seed of one grid point of one run."""


AXIS_LABELS = {
    "max_abs_value": "max |v(s)| over states (value units)",
    "probe_max_abs_q": "max |Q(s, a)| over probe states (return units)",
    "batch_max_abs_q": "max |Q(s, a)| over a replay batch (return units)",
    "sqrt_ve": "sqrt(VE) under mu (value units)",
    "sqrt_pbe": "sqrt(PBE) under mu (value units)",
    "weight_norm": "||w||_2 (weight units)",
    "param_norm": "||theta||_2 of the Q-network",
    "eval_return": "greedy evaluation return (per episode)",
    "loss": "Huber TD loss (squared return units)",
}
LOG_SCALE = ("max_abs_value", "probe_max_abs_q", "batch_max_abs_q", "weight_norm", "param_norm")


def curve_bands(
    metrics: pd.DataFrame,
    column: str,
    groups: Sequence[str] = ("group",),
    estimator: str = "iqm",
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group and logged step: ``value``, ``low``, ``high`` and the number of ``seeds``.

    ``metrics`` has one row per seed and logged step, the ``groups`` columns,
    ``step``, ``column`` and the columns that identify a seed (``run``,
    ``variant``, ``seed``, those present). Steps where a seed logged nothing
    (or NaN) are estimated from the other seeds.
    """
    if column not in metrics.columns:
        raise ResultsError(f"no logged metric {column!r}; logged: {', '.join(metrics.columns)}")
    unit = [name for name in UNIT if name in metrics.columns and name not in groups]
    frames = []
    for names, rows in metrics.dropna(subset=[column]).groupby(list(groups), sort=False):
        table = rows.pivot_table(index="step", columns=unit, values=column, aggfunc="first")
        present = table.notna().to_numpy()
        for pattern in np.unique(present, axis=0):
            steps = (present == pattern).all(axis=1)
            # steps x seeds -> seeds x one task x steps, as rliable's curves are laid out
            curves = table.to_numpy()[steps][:, pattern].T[:, None, :]
            value, low, high = curve_intervals(curves, estimator, reps, confidence, seed)
            keys = dict(zip(groups, names if isinstance(names, tuple) else (names,), strict=True))
            frames.append(
                pd.DataFrame(
                    {
                        **{name: [key] * len(value) for name, key in keys.items()},
                        "step": table.index[steps],
                        "value": value,
                        "low": low,
                        "high": high,
                        "seeds": int(pattern.sum()),
                    }
                )
            )
    if not frames:
        raise ResultsError(f"metric {column!r} was never logged by the selected runs")
    return pd.concat(frames, ignore_index=True).sort_values([*groups, "step"], ignore_index=True)


@dataclass(frozen=True)
class CurveSet:
    """Bands of one metric for named groups, with what is needed to draw them."""

    column: str
    estimator: str
    confidence: float
    bands: pd.DataFrame
    """Columns ``group``, ``step``, ``value``, ``low``, ``high``, ``seeds``."""
    thresholds: tuple[float, ...]
    """The absolute soft-divergence bounds of the runs (R_max / (1 - gamma), or the spec's),
    where they have one."""
    step_label: str


def catalog_curves(
    catalog: Catalog,
    runs: Sequence[str],
    column: str,
    by: Sequence[str] | None = None,
    estimator: str = "iqm",
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> CurveSet:
    """Bands of ``column`` for the given runs: one group per grid point, or per value of ``by``.

    ``by`` names outcome columns (``agent.bootstrap_target``, ``triad.n_step``)
    whose values pool seeds across grid points and runs.
    """
    outcomes = catalog.outcomes(runs)
    if by:
        missing = [name for name in by if name not in outcomes.columns]
        if missing:
            raise ResultsError(f"cannot group by {', '.join(missing)}: not a column of the runs")
        names = outcomes[list(by)].apply(
            lambda row: ", ".join(f"{k.split('.')[-1]}={v}" for k, v in row.items()), axis=1
        )
    else:
        several = outcomes["run"].nunique() > 1
        names = outcomes["label"].astype(str)
        if several:
            names = outcomes["experiment"] + ": " + names
    groups = outcomes[list(UNIT)].assign(group=names.to_numpy())
    metrics = catalog.metrics(runs, [column]).merge(groups, on=list(UNIT))
    bands = curve_bands(metrics, column, ("group",), estimator, reps, confidence, seed)
    order = pd.Categorical(bands["group"], categories=list(dict.fromkeys(groups["group"])))
    bands = bands.assign(order=order).sort_values(["order", "step"], ignore_index=True)
    bands = bands.drop(columns="order")
    thresholds = soft_thresholds(catalog, runs)
    return CurveSet(column, estimator, confidence, bands, thresholds, _step_label(catalog, runs))


def soft_thresholds(catalog: Catalog, runs: Sequence[str]) -> tuple[float, ...]:
    """The soft-divergence bounds R_max / (1 - gamma) the runs recorded, sorted."""
    found = {
        float(variant["soft_divergence_threshold"])
        for key in runs
        for variant in catalog.entries[key].summary.get("variants", [])
        if variant.get("soft_divergence_threshold") is not None
    }
    return tuple(sorted(found))


def _step_label(catalog: Catalog, runs: Sequence[str]) -> str:
    """Environment steps, or sweeps for runs of expected updates (DP and ``update: expected``)."""
    outcomes = catalog.outcomes(runs)
    name = outcomes.get("agent.name", outcomes["agent"]).fillna(outcomes["agent"])
    update = outcomes.get("agent.update", pd.Series(None, index=outcomes.index))
    expected = (update == "expected") | (update.isna() & name.astype(str).str.endswith("_dp"))
    if expected.all():
        return "sweeps (expected updates over all states)"
    if expected.any():
        return "environment steps or sweeps (expected updates)"
    return "environment steps"


def plot_curves(
    curves: CurveSet,
    log_y: bool | None = None,
    title: str | None = None,
    ylabel: str | None = None,
) -> Figure:
    """One line per group with its band; dashed soft-divergence threshold(s) when known.

    Each legend entry names what its line and band are, e.g. ``IQM, 95% bootstrap CI over
    10 seeds`` (the most seeds the group has at any step).

    ``log_y`` defaults to a log scale for value magnitudes and norms.
    """
    log = curves.column in LOG_SCALE if log_y is None else log_y
    with plt.style.context(STYLE):
        figure, axis = plt.subplots(figsize=(7.5, 4.5))
        estimator = curves.estimator.upper() if curves.estimator == "iqm" else curves.estimator
        for index, (group, rows) in enumerate(curves.bands.groupby("group", sort=False)):
            band = (
                f"{estimator}, {curves.confidence:.0%} bootstrap CI over "
                f"{int(rows['seeds'].max())} seeds"
            )
            (line,) = axis.plot(
                rows["step"], rows["value"], label=f"{plain(group)} ({band})", **series_style(index)
            )
            axis.fill_between(
                rows["step"], rows["low"], rows["high"], color=line.get_color(), alpha=0.2
            )
        if curves.column in LOG_SCALE:
            soft_bounds(axis, curves.thresholds)
        if log:
            axis.set_yscale("log", nonpositive="mask")
        axis.set_xlabel(curves.step_label)
        axis.set_ylabel(plain(ylabel or AXIS_LABELS.get(curves.column, curves.column)))
        band = f"{curves.confidence:.0%} bootstrap band"
        quantity = AXIS_LABELS.get(curves.column, curves.column).split(" (")[0]
        axis.set_title(plain(title or f"{quantity}: {curves.estimator.upper()} over seeds, {band}"))
        axis.legend(fontsize=7, loc="best")
        figure.tight_layout()
    return figure


def curve_columns(catalog: Catalog, run: str) -> tuple[str, str]:
    """The learning metric and the value-magnitude metric a run logged.

    Deep runs: ``eval_return`` and ``probe_max_abs_q``; linear runs:
    ``sqrt_ve`` and ``max_abs_value``.
    """
    logged = catalog.metrics([run]).columns
    if "eval_return" in logged:
        return "eval_return", "probe_max_abs_q"
    return "sqrt_ve", "max_abs_value"


def default_grouping(catalog: Catalog, run: str, max_groups: int = 8) -> list[str] | None:
    """None (one curve per grid point) when a run has few grid points, else its first grid field."""
    grid = catalog.entries[run].config.get("grid") or {}
    points = int(np.prod([len(values) for values in grid.values()])) if grid else 1
    return None if points <= max_groups else [next(iter(grid))]
