"""What stops the triad: each deep stabiliser's divergence and return, and early warnings.

A *remedy* is the set of stabilisers a run's agent uses beyond the study's most divergent
cell (online bootstrapping, one-step returns, no normalisation, no penalty): a target
network, double Q, an n-step return, LayerNorm, an L2 penalty, or the PQN agent. Runs of
several experiment files are labelled by `remedy_name` and compared as cells (game x
remedy) with `rlharness.analysis.cells`: a remedy's rate is the mean over games of its
cells' rates, and its effect the mean over games of (remedy cell - unstabilised cell),
with stratified bootstrap intervals over seeds.

Early warnings ask whether a diagnostic of the features moved before max |Q| did. For a
member that soft-diverged, a metric's *onset* is the first logged step from which it stays,
for `PERSISTENCE` consecutive logs, beyond every never-diverged member of the same game and
network (with or without LayerNorm, whatever its other stabilisers) at the same step, in the
metric's direction of trouble: max |Q| and the feature cosine up, the effective rank down.
The same rule for every metric, so the *lead*, onset of max |Q| minus onset of the warning
in logged steps, compares like with like.
`warning_correlations` asks the across-member question as well: within a remedy's cell, does
a warning's value halfway through training rank the members by their later peak max |Q|?
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlharness.analysis.cells import CellEstimate, CellSample, value_key
from rlharness.analysis.compare import select
from rlharness.analysis.hypotheses import PEAK_COLUMN, with_log_peak
from rlharness.analysis.statistics import CONFIDENCE, DEFAULT_REPS
from rlharness.catalog import Catalog
from rlharness.errors import ResultsError
from rlharness.outcomes import DIVERGED

GAME = "env.id"
REMEDY = "remedy"
LAYER_NORM = "agent.network.layer_norm"
ARCHITECTURE = "architecture"
"""Whether a member's network has LayerNorm: members of one game and architecture share a
reference envelope (LayerNorm changes the features' scale and rank)."""
NONE = "none"
"""The unstabilised cell: online bootstrapping, n = 1, no LayerNorm, no L2."""
TARGET_NAMES = {
    "q_learning": None,
    "target_q": "target network",
    "double_q": "double Q",
    "inverse_double_q": "inverse double Q",
}
WARNINGS: dict[str, int] = {"feature_srank": -1, "feature_cosine": 1, "seem": 1}
"""The early-warning metrics and their direction of trouble (+1: rising, -1: falling)."""
MAX_Q = "probe_max_abs_q"
PERSISTENCE = 2
"""Logs in a row a metric must stay beyond the never-diverged envelope for an onset."""
MIN_REFERENCE = 3
"""Never-diverged members a cell needs for its envelope."""
REMEDY_MEASURES = {
    "diverged": "soft divergence",
    "hard_diverged": "hard divergence",
    "final_eval_return": "final return",
    PEAK_COLUMN: "log10 peak max |Q|",
    "final_overestimation": "over-estimation",
}
"""The per-seed measures `remedy_table` reports, with their names."""


def remedy_name(settings: Mapping[str, object]) -> str:
    """The stabilisers of one grid point, e.g. ``target network + LayerNorm`` or
    ``PQN + LayerNorm`` (PQN's own Q(lambda) rollouts without target network or replay), or
    `NONE`."""
    parts: list[str] = []
    pqn = settings.get("agent.name") == "pqn"
    if pqn:
        parts.append("PQN")
    else:
        target = TARGET_NAMES.get(str(settings.get("agent.bootstrap_target", "q_learning")))
        if target is not None:
            parts.append(target)
        n_step = _number(settings.get("agent.n_step"), 1.0)
        if n_step > 1:
            parts.append(f"{int(n_step)}-step")
    if value_key(settings.get("agent.network.layer_norm", pqn)) == "True":
        parts.append("LayerNorm")
    if _number(settings.get("agent.l2"), 0.0) > 0:
        parts.append("L2")
    return " + ".join(parts) or NONE


def _number(value: object, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(str(value))
    except ValueError:
        return default
    return default if math.isnan(number) else number


def label_remedies(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The outcomes with a `REMEDY` column and `PEAK_COLUMN` added."""
    if GAME not in outcomes.columns:
        raise ResultsError(f"these outcomes have no {GAME} column: not runs of a deep agent")
    labelled = with_log_peak(outcomes)
    records = labelled.to_dict("records")
    labelled[REMEDY] = [remedy_name(record) for record in records]
    return labelled


def remedy_table(
    outcomes: pd.DataFrame,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per remedy and measure: its mean over games with an interval, and its effect
    against the unstabilised cell (matched by game) with an interval.

    ``outcomes`` must have been through `label_remedies`. Measures a run lacks are skipped.
    """
    rows = []
    remedies = list(dict.fromkeys(outcomes[REMEDY]))
    ordered = [NONE, *[r for r in remedies if r != NONE]] if NONE in remedies else remedies
    for metric, name in REMEDY_MEASURES.items():
        if metric not in {"diverged", "hard_diverged"} and metric not in outcomes.columns:
            continue
        sample = CellSample(outcomes, [GAME, REMEDY], metric, reps, seed, confidence)
        present = set(sample.cells[REMEDY])
        for remedy in ordered:
            if remedy not in present:
                continue
            rate = sample.rate({REMEDY: remedy})
            effect = _effect(sample, remedy) if remedy != NONE and NONE in present else None
            rows.append(_row(remedy, name, rate, effect))
    return pd.DataFrame(rows)


def _effect(sample: CellSample, remedy: str) -> CellEstimate | None:
    try:
        return sample.effect(REMEDY, remedy, NONE)
    except ResultsError:
        return None


def _row(
    remedy: str, measure: str, rate: CellEstimate, effect: CellEstimate | None
) -> dict[str, object]:
    return {
        "remedy": remedy,
        "measure": measure,
        "games": rate.strata,
        "seeds_per_cell": rate.min_seeds,
        "value": rate.value,
        "ci_low": rate.low,
        "ci_high": rate.high,
        "effect_vs_none": math.nan if effect is None else effect.value,
        "effect_ci_low": math.nan if effect is None else effect.low,
        "effect_ci_high": math.nan if effect is None else effect.high,
    }


def member_traces(metrics: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """The logged metrics of every member with its game, remedy, network (`ARCHITECTURE`:
    with or without LayerNorm) and whether it soft-diverged."""
    keys = ["run", "variant", "seed"]
    members = outcomes[[*keys, GAME, REMEDY, "outcome"]].copy()
    members["diverged"] = members["outcome"].isin(DIVERGED)
    normalised = outcomes.get(LAYER_NORM, pd.Series(False, index=outcomes.index))
    members[ARCHITECTURE] = [
        "LayerNorm" if value_key(value) == "True" else "plain" for value in normalised
    ]
    return metrics.merge(members.drop(columns="outcome"), on=keys, how="inner")


def onsets(traces: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per soft-diverged member: the onset step of each metric (NaN: none, or its
    game and architecture have fewer than `MIN_REFERENCE` never-diverged members to judge
    against)."""
    directions = {MAX_Q: 1, **{m: WARNINGS[m] for m in metrics}}
    present = [m for m in directions if m in traces.columns]
    rows = []
    for (game, _), cell in traces.groupby([GAME, ARCHITECTURE], sort=True):
        reference = cell[~cell["diverged"]]
        enough = reference[["run", "variant", "seed"]].drop_duplicates().shape[0] >= MIN_REFERENCE
        envelopes = {
            m: reference.groupby("step")[m].agg("max" if directions[m] > 0 else "min")
            for m in present
        }
        for (run, variant, seed, remedy), member in cell[cell["diverged"]].groupby(
            ["run", "variant", "seed", REMEDY], sort=True
        ):
            row: dict[str, object] = {
                "run": run,
                "variant": variant,
                "seed": seed,
                GAME: game,
                REMEDY: remedy,
            }
            ordered = member.sort_values("step")
            for m in present:
                row[f"onset_{m}"] = (
                    _onset(ordered, m, envelopes[m], directions[m]) if enough else math.nan
                )
            rows.append(row)
    return pd.DataFrame(rows)


def _onset(member: pd.DataFrame, metric: str, envelope: pd.Series, direction: int) -> float:
    """The first step from which ``metric`` stays beyond ``envelope`` for `PERSISTENCE` logs."""
    bound = member["step"].map(envelope).to_numpy(dtype=float)
    values = member[metric].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        beyond = np.where(np.isfinite(bound), direction * (values - bound) > 0, False)
    beyond |= ~np.isfinite(values) & np.isfinite(bound)
    steps = member["step"].to_numpy()
    for index in range(len(beyond) - PERSISTENCE + 1):
        if beyond[index : index + PERSISTENCE].all():
            return float(steps[index])
    return math.nan


def lead_summary(
    onset_table: pd.DataFrame,
    log_every: int,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Per warning: the soft-diverged members whose max |Q| had an onset, how many the warning
    preceded, matched or followed (or never moved for), and the median lead in logged steps
    with a bootstrap interval over members."""
    rows = []
    max_q = f"onset_{MAX_Q}"
    for warning in WARNINGS:
        column = f"onset_{warning}"
        if onset_table.empty or column not in onset_table.columns:
            continue
        judged = onset_table[np.isfinite(onset_table[max_q].to_numpy(dtype=float))]
        lead = (judged[max_q] - judged[column]).to_numpy(dtype=float) / log_every
        moved = lead[np.isfinite(lead)]
        low, high = _median_interval(moved, reps, seed, confidence)
        rows.append(
            {
                "warning": warning,
                "members": len(judged),
                "earlier": int((moved > 0).sum()),
                "same_log": int((moved == 0).sum()),
                "later": int((moved < 0).sum()),
                "never": int(len(judged) - moved.size),
                "median_lead_logs": float(np.median(moved)) if moved.size else math.nan,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)


def _median_interval(
    values: np.ndarray, reps: int, seed: int, confidence: float
) -> tuple[float, float]:
    if values.size == 0:
        return math.nan, math.nan
    generator = np.random.default_rng(seed)
    draws = generator.choice(np.sort(values), size=(reps, values.size), replace=True)
    tail = (1 - confidence) / 2
    low, high = np.quantile(np.median(draws, axis=1), [tail, 1 - tail])
    return float(low), float(high)


def warning_correlations(
    traces: pd.DataFrame,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Per warning and game: Spearman's rank correlation of the warning at the middle logged
    step of its cell (``step``: the median over cells) with log10 of the peak max |Q| after
    it, within each remedy's cell (so a remedy that
    shifts both does not make the correlation), averaged over the cells with at least
    `MIN_REFERENCE` + 1 members, and its bootstrap interval (members resampled within cells).
    A warning that predicts trouble correlates with the sign of its direction (srank
    negatively, cosine positively)."""
    rows = []
    for game, frame in traces.groupby(GAME, sort=True):
        halves = [_halves(cell) for _, cell in frame.groupby(REMEDY, sort=True)]
        for warning, direction in WARNINGS.items():
            if warning not in frame.columns:
                continue
            cells = []
            for _, at_middle, later in halves:
                joined = pd.concat([at_middle[warning], np.log10(later)], axis=1, join="inner")
                values = joined.to_numpy(dtype=float)
                values = values[np.isfinite(values).all(axis=1)]
                if len(values) > MIN_REFERENCE:
                    cells.append(values)
            estimates = [_spearman(values) for values in cells]
            finite = [e for e in estimates if np.isfinite(e)]
            if not finite:
                continue
            low, high = _correlation_interval(cells, reps, seed, confidence)
            rows.append(
                {
                    GAME: game,
                    "warning": warning,
                    "direction": direction,
                    "step": int(np.median([middle for middle, _, _ in halves])),
                    "cells": len(finite),
                    "members": sum(len(values) for values in cells),
                    "spearman": float(np.mean(finite)),
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows)


def _halves(cell: pd.DataFrame) -> tuple[int, pd.DataFrame, pd.Series]:
    """A cell's middle logged step (its own: agents log at different steps), its members'
    metrics there, and their peak max |Q| after it."""
    keys = ["run", "variant", "seed"]
    steps = np.sort(cell["step"].unique())
    middle = int(steps[len(steps) // 2])
    later = cell[cell["step"] > middle].groupby(keys)[MAX_Q].max()
    return middle, cell[cell["step"] == middle].set_index(keys), later


def _spearman(values: np.ndarray) -> float:
    ranks = np.column_stack([pd.Series(column).rank().to_numpy() for column in values.T])
    if np.std(ranks[:, 0]) == 0 or np.std(ranks[:, 1]) == 0:
        return math.nan
    return float(np.corrcoef(ranks[:, 0], ranks[:, 1])[0, 1])


def _correlation_interval(
    cells: list[np.ndarray], reps: int, seed: int, confidence: float
) -> tuple[float, float]:
    generator = np.random.default_rng(seed)
    estimates = []
    for _ in range(reps):
        within = []
        for values in cells:
            rows = generator.integers(0, len(values), size=len(values))
            within.append(_spearman(values[rows]))
        finite = [e for e in within if np.isfinite(e)]
        if finite:
            estimates.append(np.mean(finite))
    if not estimates:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return float(low), float(high)


DEFAULT_PREFIX = "what_stops_it"
"""The experiments `open_remedies` takes by default: every deep one whose name starts so."""
DEEP_AGENTS = ("dqn", "pqn")


@dataclass(frozen=True)
class RemedyStudy:
    """Deep runs of the remedies study, labelled, with their members' logged traces."""

    runs: list[str]
    outcomes: pd.DataFrame
    """`label_remedies` outcomes of every run."""
    traces: pd.DataFrame
    """`member_traces` of max |Q| and the warnings."""
    log_every: int
    """The runs' logging period in env steps (the unit of a lead)."""


def open_remedies(catalog: Catalog, targets: Sequence[str] = ()) -> RemedyStudy:
    """The runs ``targets`` name (as ``compare`` selects them), or by default the latest run of
    every deep experiment named ``what_stops_it*``. Raises `ResultsError` if none is found or
    the runs log at different periods."""
    if targets:
        runs = [key for _, keys in select(catalog, list(targets)) for key in keys]
    else:
        table = catalog.runs
        names = sorted(
            {
                name
                for name, agent in zip(table["experiment"], table["agent"], strict=True)
                if str(name).startswith(DEFAULT_PREFIX) and agent in DEEP_AGENTS
            }
        )
        runs = [run for run in (catalog.latest_run(name) for name in names) if run is not None]
    if not runs:
        raise ResultsError(
            f"no deep run of an experiment named {DEFAULT_PREFIX}* under {catalog.root}; run "
            f"experiments/{DEFAULT_PREFIX}_*.yaml first, or name the runs"
        )
    periods = {int(catalog.entries[run].config["run"].get("log_every", 1)) for run in runs}
    if len(periods) != 1:
        raise ResultsError(
            f"the runs log every {sorted(periods)} env steps; leads need one logging period"
        )
    outcomes = label_remedies(catalog.outcomes(runs))
    metrics = catalog.metrics(runs, [MAX_Q, *WARNINGS])
    return RemedyStudy(runs, outcomes, member_traces(metrics, outcomes), periods.pop())


def remedy_tables(
    study: RemedyStudy, reps: int = DEFAULT_REPS, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """``remedies`` (`remedy_table`), ``leads`` (`lead_summary` of the warnings' onsets in
    soft-diverged members), ``onsets`` (per member) and ``correlations``
    (`warning_correlations`), by name."""
    present = [warning for warning in WARNINGS if warning in study.traces.columns]
    onset_table = onsets(study.traces, present)
    return {
        "remedies": remedy_table(study.outcomes, reps, seed),
        "leads": lead_summary(onset_table, study.log_every, reps, seed),
        "onsets": onset_table,
        "correlations": warning_correlations(study.traces, reps, seed),
    }
