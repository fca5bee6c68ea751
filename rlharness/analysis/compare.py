"""Compare groups of runs on one per-seed metric: IQM, intervals, divergence, improvement.

What to compare is chosen by selectors (see `select`) and, optionally, a
DuckDB filter over the catalog's ``outcomes`` table. Each grid point of each
selected run is a group, unless ``by`` names outcome columns to group by
instead (pooling runs). A group's scores are a ``seeds x environments``
matrix, so the bootstrap is stratified over environments.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rlharness.analysis.statistics import (
    CONFIDENCE,
    DEFAULT_REPS,
    ESTIMATORS,
    Estimate,
    curve_area,
    interval_estimates,
    probability_of_improvement,
    proportion_interval,
)
from rlharness.catalog import Catalog
from rlharness.errors import ResultsError
from rlharness.outcomes import DIVERGED

NOT_METRICS = frozenset(
    {
        "variant",
        "seed",
        "trial",
        "seeds",
        "steps",
        "last_logged_step",
        "hard_divergence_step",
        "soft_divergence_step",
    }
)
LOWER_IS_BETTER_HINTS = (
    "max_abs",
    "sqrt_ve",
    "sqrt_pbe",
    "weight_norm",
    "growth",
    "loss",
    "td_error",
)
DERIVED_METRICS = {"return_auc": "eval_return"}
LABEL_DIGITS = 4
"""Significant digits of the numbers in a group's name (a sampled ``alpha=0.0012345678``)."""
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?(?![\w.])")
DEFAULT_METRICS = ("final_eval_return", "final_sqrt_ve", "final_max_abs_value")
"""The metric compared when none is named: the first that every selected run has."""


def higher_is_better(metric: str) -> bool:
    """Returns are better high; value magnitudes, errors, norms and growth rates low."""
    if "return" in metric:
        return True
    return not any(hint in metric for hint in LOWER_IS_BETTER_HINTS)


def run_metrics(catalog: Catalog, outcomes: pd.DataFrame) -> dict[str, list[str]]:
    """The per-seed numeric metrics of each selected run (outcome columns, then derived ones)."""
    found = {}
    for run in outcomes["run"].unique():
        present = [
            column
            for column, dtype in catalog.outcome_columns(str(run)).items()
            if "." not in column
            and column not in NOT_METRICS
            and pd.api.types.is_numeric_dtype(dtype)
            and not pd.api.types.is_bool_dtype(dtype)
        ]
        if "final_eval_return" in present:
            present.append("return_auc")
        found[str(run)] = present
    return found


def available_metrics(catalog: Catalog, outcomes: pd.DataFrame) -> list[str]:
    """Per-seed numeric metrics that every selected run has."""
    per_run = list(run_metrics(catalog, outcomes).values())
    return [name for name in per_run[0] if all(name in names for names in per_run)]


def _missing_metric(catalog: Catalog, outcomes: pd.DataFrame, metric: str) -> ResultsError:
    per_run = run_metrics(catalog, outcomes)
    common = available_metrics(catalog, outcomes)
    lacking = [run for run, names in per_run.items() if metric not in names]
    text = f"metric {metric!r} is not measured by "
    if len(lacking) == len(per_run):
        text += "the selected runs"
    else:
        text += f"{len(lacking)} of the {len(per_run)} selected runs (e.g. {lacking[0]})"
    if common:
        return ResultsError(f"{text}; metrics they all have: {', '.join(common)}")
    kinds = {", ".join(names): run for run, names in per_run.items()}
    listed = "; ".join(f"{run} has {names}" for names, run in kinds.items())
    return ResultsError(f"{text}; the runs measure different metrics and share none: {listed}")


@dataclass(frozen=True)
class Group:
    """One compared group: its name, environments and per-seed rows."""

    name: str
    envs: tuple[str, ...]
    rows: pd.DataFrame


@dataclass
class Comparison:
    """The result of `compare`: per-group estimates, divergence rates and improvements."""

    metric: str
    higher_is_better: bool
    confidence: float
    reps: int
    groups: list[Group]
    scores: dict[str, np.ndarray]
    estimates: dict[str, dict[str, Estimate]]
    divergence: dict[str, Estimate]
    improvements: dict[tuple[str, str], Estimate] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per group: runs, seeds, mean/median/IQM with intervals, divergence rate."""
        rows = []
        for group in self.groups:
            row: dict[str, Any] = {
                "group": group.name,
                "envs": ", ".join(group.envs),
                "runs": int(group.rows["run"].nunique()),
                "seeds": len(group.rows),
            }
            for estimator in ESTIMATORS:
                estimate = self.estimates[group.name][estimator]
                row[estimator] = estimate.value
                row[f"{estimator}_low"] = estimate.low
                row[f"{estimator}_high"] = estimate.high
            diverged = self.divergence[group.name]
            row["diverged"] = int(group.rows["outcome"].isin(DIVERGED).sum())
            row["diverged_rate"] = diverged.value
            row["diverged_low"] = diverged.low
            row["diverged_high"] = diverged.high
            rows.append(row)
        return pd.DataFrame.from_records(rows)

    def improvement_table(self) -> pd.DataFrame:
        """One row per pair: P(X better than Y) with its interval."""
        return pd.DataFrame.from_records(
            [
                {"x": x, "y": y, "probability": e.value, "low": e.low, "high": e.high}
                for (x, y), e in self.improvements.items()
            ],
            columns=["x", "y", "probability", "low", "high"],
        )

    def tidy(self) -> pd.DataFrame:
        """Every number in long form: group, statistic, against, value, low, high (for CSV)."""
        rows = []
        for group in self.groups:
            for estimator in ESTIMATORS:
                e = self.estimates[group.name][estimator]
                rows.append((group.name, f"{estimator}_{self.metric}", "", e.value, e.low, e.high))
            d = self.divergence[group.name]
            rows.append((group.name, "diverged_rate", "", d.value, d.low, d.high))
        for (x, y), e in self.improvements.items():
            rows.append((x, "probability_of_improvement", y, e.value, e.low, e.high))
        return pd.DataFrame(rows, columns=["group", "statistic", "against", "value", "low", "high"])

    def to_json(self) -> str:
        """The comparison as JSON (infinite bounds as the strings "inf" / "-inf")."""

        def number(value: float) -> float | str:
            return value if math.isfinite(value) else str(value)

        def estimate(e: Estimate) -> dict[str, float | str]:
            return {"value": number(e.value), "low": number(e.low), "high": number(e.high)}

        document = {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "confidence": self.confidence,
            "bootstrap_reps": self.reps,
            "groups": [
                {
                    "group": group.name,
                    "envs": list(group.envs),
                    "runs": sorted(group.rows["run"].unique().tolist()),
                    "seeds": len(group.rows),
                    **{e: estimate(self.estimates[group.name][e]) for e in ESTIMATORS},
                    "diverged_rate": estimate(self.divergence[group.name]),
                }
                for group in self.groups
            ],
            "probability_of_improvement": [
                {"x": x, "y": y, **estimate(e)} for (x, y), e in self.improvements.items()
            ],
        }
        return json.dumps(document, indent=2)


def select(catalog: Catalog, selectors: list[str]) -> list[tuple[str, list[str]]]:
    """Resolve each selector to the run keys it names, keeping the selector as its source.

    A selector is a run key (``EXPERIMENT/RUN_ID``, ``EXPERIMENT/sweep-STUDY/trial-N``),
    ``EXPERIMENT/sweep-STUDY`` or ``sweep-STUDY`` (every trial of a study), a run id,
    an experiment name (its latest run, or its trials if it was only swept), or a path to
    any of these under the results root.
    """
    runs = catalog.runs
    resolved = []
    for selector in selectors:
        text = _relative_to_root(catalog, selector).strip("/")
        keys = _resolve(catalog, text)
        if not keys:
            raise ResultsError(
                f"nothing in {catalog.root} matches {selector!r}; "
                + _excluded_matches(catalog, text)
                + _listing(runs)
            )
        resolved.append((selector, keys))
    return resolved


def _relative_to_root(catalog: Catalog, selector: str) -> str:
    from pathlib import Path

    path = Path(selector)
    if not path.exists():
        return selector
    try:
        return path.resolve().relative_to(catalog.root.resolve()).as_posix()
    except ValueError:
        if "/" not in selector:
            return selector  # a name that happens to be a local directory's too
        raise ResultsError(f"{selector} is not under the results root {catalog.root}") from None


def _resolve(catalog: Catalog, text: str) -> list[str]:
    runs = catalog.runs
    if text in set(runs["run"]):
        return [text]
    parts = text.split("/")
    studies = runs[runs["kind"] == "trial"]
    if parts[-1].startswith("sweep-") and len(parts) <= 2:
        study = parts[-1].removeprefix("sweep-")
        chosen = studies[studies["study"] == study]
        if len(parts) == 2:
            chosen = chosen[chosen["experiment"] == parts[0]]
        return chosen["run"].tolist()
    if len(parts) == 1:
        by_id = runs[(runs["kind"] == "run") & (runs["run_id"] == text)]
        if len(by_id):
            return by_id["run"].tolist()
        latest = catalog.latest_run(text)
        if latest is not None:
            return [latest]
        return studies[studies["experiment"] == text]["run"].tolist()
    return []


def _excluded_matches(catalog: Catalog, text: str) -> str:
    """The runs that ``text`` would name had they verified against their manifests, and why not."""
    named = [
        check
        for key, check in catalog.excluded.items()
        if text in (key, key.split("/")[0], key.split("/")[-1])
        or key.startswith(f"{text.rstrip('/')}/")
    ]
    if not named:
        return ""
    listed = "; ".join(f"{check.key} ({check.describe()})" for check in named)
    hint = "" if all(not check.readable for check in named) else " (--include-unverified uses it)"
    return f"excluded as it does not verify{hint}: {listed}; "


def _listing(runs: pd.DataFrame) -> str:
    experiments = sorted(set(runs["experiment"]))
    studies = sorted(
        f"{row.experiment}/sweep-{row.study}"
        for row in runs[runs["kind"] == "trial"][["experiment", "study"]]
        .drop_duplicates()
        .itertuples()
    )
    text = "experiments: " + ", ".join(experiments)
    if studies:
        text += "; studies: " + ", ".join(studies)
    return text + " (or a run key EXPERIMENT/RUN_ID; `rlharness catalog` lists them)"


def compare(
    catalog: Catalog,
    selectors: list[str],
    metric: str | None = None,
    where: str | None = None,
    by: list[str] | None = None,
    all_pairs: bool = False,
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Comparison:
    """Compare the selected runs on ``metric``; raises `ResultsError` on anything unusable.

    Without ``metric``, the first of `DEFAULT_METRICS` that every selected run has.

    Improvements are each group against the first (``all_pairs``: every pair).
    """
    outcomes = _selected_outcomes(catalog, selectors, where)
    metrics = available_metrics(catalog, outcomes)
    if metric is None:
        metric = next((name for name in DEFAULT_METRICS if name in metrics), None)
        if metric is None:
            raise _missing_metric(catalog, outcomes, DEFAULT_METRICS[0])
    if metric not in metrics:
        raise _missing_metric(catalog, outcomes, metric)
    if metric in DERIVED_METRICS:
        outcomes = outcomes.assign(**{metric: _derived(catalog, outcomes, metric)})
    groups = _groups(outcomes, by)
    scores = {group.name: _score_matrix(group, metric) for group in groups}
    better = higher_is_better(metric)
    estimates = interval_estimates(scores, better, reps, confidence, seed)
    divergence = {
        group.name: proportion_interval(
            int(group.rows["outcome"].isin(DIVERGED).sum()), len(group.rows), confidence
        )
        for group in groups
    }
    names = [group.name for group in groups]
    if all_pairs:
        pairs = [(x, y) for i, y in enumerate(names) for x in names[i + 1 :]]
    else:
        pairs = [(x, names[0]) for x in names[1:]]
    improvements = (
        probability_of_improvement(
            {name: scores[name] for name in names}, pairs, better, reps, confidence, seed
        )
        if pairs
        else {}
    )
    return Comparison(
        metric, better, confidence, reps, groups, scores, estimates, divergence, improvements
    )


def _selected_outcomes(catalog: Catalog, selectors: list[str], where: str | None) -> pd.DataFrame:
    sources = select(catalog, selectors) if selectors else [("", catalog.runs["run"].tolist())]
    frames = []
    for source, keys in sources:
        frame = catalog.outcomes(keys)
        frame.insert(0, "source", source)
        frames.append(frame)
    outcomes = pd.concat(frames, ignore_index=True)
    if where:
        matching = catalog.sql(f"SELECT run, variant, seed FROM outcomes WHERE {where}")
        outcomes = outcomes.merge(matching, on=["run", "variant", "seed"])
    if outcomes.empty:
        raise ResultsError(
            "no runs match"
            + (f" the filter {where!r}" if where else "")
            + "; "
            + _listing(catalog.runs)
        )
    return outcomes


def _groups(outcomes: pd.DataFrame, by: list[str] | None) -> list[Group]:
    if by:
        missing = [column for column in by if column not in outcomes.columns]
        if missing:
            knobs = [*sorted(c for c in outcomes.columns if "." in c), "env", "agent", "label"]
            raise ResultsError(
                f"cannot group by {', '.join(missing)}: not a column of the selected runs; "
                f"columns include: {', '.join(knobs)}"
            )
        keys = by
        name_of = lambda values: ", ".join(  # noqa: E731
            f"{column.split('.')[-1]}={value}" for column, value in zip(by, values, strict=True)
        )
    else:
        keys = ["source", "run", "variant"]
        sources = outcomes.groupby("source")["run"].nunique().to_dict()
        several_runs = outcomes["run"].nunique() > 1
        several_variants = outcomes.groupby("run")["variant"].nunique().max() > 1

        def name_of(values: tuple[Any, ...]) -> str:
            source, run, variant = values
            rows = outcomes[(outcomes["run"] == run) & (outcomes["variant"] == variant)]
            label = rows["label"].iloc[0]
            head = ""
            if several_runs:
                head = source if source and sources[source] == 1 else run
            if rows["kind"].iloc[0] == "trial":
                head = f"trial {rows['trial'].iloc[0]}"
            if several_variants or rows["kind"].iloc[0] == "trial":
                return f"{head}: {label}" if head else str(label)
            return head or str(source or run)

    groups = []
    for values, rows in outcomes.groupby(keys, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        envs = tuple(sorted(rows["env"].unique()))
        groups.append(Group(rounded(name_of(values)), envs, rows.reset_index(drop=True)))
    names = [group.name for group in groups]
    if len(set(names)) != len(names):
        groups = [
            Group(f"{g.name} [{g.rows['run'].iloc[0]}]", g.envs, g.rows)
            if names.count(g.name) > 1
            else g
            for g in groups
        ]
    return groups


def rounded(name: str) -> str:
    """``name`` with each decimal number written to `LABEL_DIGITS` significant digits."""
    return DECIMAL.sub(lambda number: f"{float(number.group()):.{LABEL_DIGITS}g}", name)


def _score_matrix(group: Group, metric: str) -> np.ndarray:
    """Seeds x environments; every environment must have the same number of runs."""
    columns = [
        group.rows.loc[group.rows["env"] == env, metric].to_numpy(float) for env in group.envs
    ]
    sizes = {len(column) for column in columns}
    if len(sizes) > 1:
        counts = ", ".join(f"{env}: {len(c)}" for env, c in zip(group.envs, columns, strict=True))
        raise ResultsError(
            f"group {group.name!r} has unequal runs per environment ({counts}); the stratified "
            "bootstrap needs the same number in each: select fewer runs or group with --by env"
        )
    return np.column_stack(columns)


def _derived(catalog: Catalog, outcomes: pd.DataFrame, metric: str) -> pd.Series:
    """A per-seed metric computed from the logged curves (``return_auc``)."""
    column = DERIVED_METRICS[metric]
    curves = catalog.metrics(outcomes["run"].unique(), [column])
    areas = {
        (run, variant, seed): curve_area(rows["step"].to_numpy(), rows[column].to_numpy())
        for (run, variant, seed), rows in curves.dropna(subset=[column]).groupby(
            ["run", "variant", "seed"]
        )
    }
    return pd.Series(
        [
            areas.get((run, variant, seed), math.nan)
            for run, variant, seed in zip(
                outcomes["run"], outcomes["variant"], outcomes["seed"], strict=True
            )
        ],
        index=outcomes.index,
    )
