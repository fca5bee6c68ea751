"""Rich tables and other printed forms of results: trials, run summaries, comparisons, frames."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TYPE_CHECKING

from rich.table import Table

from rlharness.cli.console import console, plain

if TYPE_CHECKING:
    import pandas as pd
    from optuna.trial import FrozenTrial

    from rlharness.analysis.compare import Comparison

TABLE_ROWS = 20
"""Trials shown after a sweep, best first."""


class Format(StrEnum):
    """How a table is printed."""

    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


def trials_table(trials: list[FrozenTrial], study: str, maximize: bool, best_first: bool) -> Table:
    """One row per trial: state, params, value, seeds, divergence outcomes and why it failed."""
    from optuna.trial import TrialState

    from rlharness.sweep.study import OUTCOMES, PER_SEED, params_of

    rows = list(trials)
    if best_first:
        rows = [t for t in rows if t.state == TrialState.COMPLETE and t.value is not None]
        rows.sort(key=lambda t: float(t.value or 0.0), reverse=maximize)
        rows = rows[:TABLE_ROWS]
    paths = list(dict.fromkeys(path for trial in trials for path in params_of(trial)))
    title = f"{study}: best {len(rows)} trials" if best_first else f"{study}: {len(rows)} trials"
    table = Table(title=title)
    for column in ("#", "state", *paths, "value", "seeds", "outcomes", "note"):
        table.add_column(column, justify="right" if column in ("#", "value", "seeds") else "left")
    for trial in rows:
        params = params_of(trial)
        attrs = trial.user_attrs
        table.add_row(
            str(trial.number),
            trial.state.name,
            *(_param(params.get(path, "-")) for path in paths),
            _number(trial.value),
            str(len(attrs[PER_SEED])) if PER_SEED in attrs else "-",
            ", ".join(f"{name} {count}" for name, count in attrs.get(OUTCOMES, {}).items()),
            _note(trial),
        )
    return table


def summary_table(summary: dict) -> Table:
    """Outcome counts and median final metrics per grid point; the divergence criteria in words
    below (linear learners)."""
    variants = summary["variants"]
    outcomes = list(dict.fromkeys(o for v in variants for o in v["outcome_counts"]))
    finals = list(variants[0]["median_final"])
    criteria = dict.fromkeys(
        v["divergence_criterion"]["statement"] for v in variants if "divergence_criterion" in v
    )
    table = Table(
        title=f"{summary['experiment']} ({summary['agent']} on {summary['env']})",
        caption="\n".join(criteria) or None,
        caption_justify="left",
    )
    table.add_column("grid point")
    for column in ("seeds", *outcomes, *(f"median final {name}" for name in finals)):
        table.add_column(column, justify="right")
    for variant in variants:
        table.add_row(
            variant["label"],
            str(variant["seeds"]),
            *(str(variant["outcome_counts"].get(outcome, 0)) for outcome in outcomes),
            *(_number(variant["median_final"][name]) for name in finals),
        )
    return table


def knob_table(summary: dict) -> Table:
    """Per value of each grid field: the fraction diverged averaged over grid points, with its
    95% stratified bootstrap interval (seeds resampled within each grid point)."""
    rows = summary["knob_effects"]
    extra = [key for key in rows[0] if key.startswith("median_")]
    table = Table(
        title="divergence by knob value (mean over grid points; 95% CI: stratified bootstrap "
        "of the seeds within each grid point)"
    )
    columns = ("knob", "value", "grid points", "runs", "diverged", "fraction [95% CI]", *extra)
    for column in columns:
        table.add_column(column, justify="left" if column in ("knob", "value") else "right")
    for row in rows:
        interval = f"{row['diverged_fraction']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        table.add_row(
            row["knob"],
            row["value"],
            str(row["grid_points"]),
            str(row["runs"]),
            str(row["diverged"]),
            interval,
            *(_number(row[key]) for key in extra),
        )
    return table


def print_comparison(comparison: Comparison, output: Format) -> None:
    """The estimators and divergence rates per group, then the probabilities of improvement."""
    import pandas as pd

    table = comparison.table()
    direction = "higher" if comparison.higher_is_better else "lower"
    percent = f"{comparison.confidence:.0%}"
    shown = {
        "group": table["group"],
        "envs": table["envs"],
        "seeds": table["seeds"].astype(str),
    }
    for estimator in ("mean", "median", "iqm"):
        shown[f"{estimator.upper() if estimator == 'iqm' else estimator} [{percent} CI]"] = [
            _interval(row[estimator], row[f"{estimator}_low"], row[f"{estimator}_high"])
            for _, row in table.iterrows()
        ]
    shown[f"diverged [{percent} CI]"] = [
        f"{row['diverged']}/{row['seeds']} "
        + _interval(row["diverged_rate"], row["diverged_low"], row["diverged_high"], "{:.2f}")
        for _, row in table.iterrows()
    ]
    title = f"{comparison.metric} ({direction} is better), {comparison.reps} bootstrap resamples"
    print_frame(pd.DataFrame(shown), output, title)
    pairs = comparison.improvement_table()
    if len(pairs):
        shown_pairs = pd.DataFrame(
            {
                "X": pairs["x"],
                "Y": pairs["y"],
                f"P(X {direction} than Y) [{percent} CI]": [
                    _interval(p, low, high, "{:.2f}")
                    for p, low, high in zip(
                        pairs["probability"], pairs["low"], pairs["high"], strict=True
                    )
                ],
            }
        )
        print_frame(shown_pairs, output, "probability of improvement")


def print_hypotheses(frame: pd.DataFrame, output: Format, title: str, note: str) -> None:
    """The hypotheses' table under ``title``, then ``note`` (how to read it): every column as
    CSV or JSON (no note); as Markdown, each test with its statement, rates, estimate and
    interval, the paper's numbers, verdict and reason; as a table, the same without the
    statements and reasons, which follow the table one test a line."""
    import pandas as pd

    if output in (Format.csv, Format.json):
        print_frame(frame, output, title)
        return
    rows = list(frame.itertuples())
    shown = pd.DataFrame(
        {
            "id": frame["id"],
            "test": frame["role"],
            "statement": frame["statement"],
            "comparison": frame["comparison"],
            "measure": frame["metric"],
            "rates": [_pair(row.treatment_rate, row.control_rate) for row in rows],
            "estimate [95% CI]": [
                _interval(row.estimate, row.ci_low, row.ci_high, "{:+.2f}") for row in rows
            ],
            "hypothesised": frame["hypothesised"],
            "paper": [
                ", ".join(part for part in (row.paper, row.paper_figure) if part) for row in rows
            ],
            "verdict": frame["verdict"],
            "reason": frame["reason"],
        }
    )
    if output is Format.markdown:
        print_frame(shown, output, title)
        plain(f"{note}\n")
        return
    print_frame(shown.drop(columns=["statement", "hypothesised", "reason"]), output, title)
    for row in rows:
        plain(f"{row.id} {row.role} ({row.metric}): {row.statement}; {row.verdict}: {row.reason}.")
    plain(note)


def print_frame(frame: pd.DataFrame, output: Format, title: str) -> None:
    """``frame`` on stdout as a rich table, Markdown, CSV or JSON records."""
    if output is Format.csv:
        console.out(frame.to_csv(index=False), end="")
    elif output is Format.json:
        console.out(frame.to_json(orient="records", indent=2))
    elif output is Format.markdown:
        console.out(f"**{title}**\n\n{_markdown(frame)}\n")
    else:
        table = Table(title=title)
        for column in frame.columns:
            table.add_column(str(column), overflow="fold")
        for row in frame.itertuples(index=False):
            table.add_row(*(_cell(value) for value in row))
        console.print(table)


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = [
        "| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def _pair(treatment: float, control: float) -> str:
    """``TREATMENT vs CONTROL`` to two decimals, or empty when either is not a number."""
    if math.isnan(treatment) or math.isnan(control):
        return ""
    return f"{treatment:.2f} vs {control:.2f}"


def _interval(value: float, low: float, high: float, fmt: str = "{:.4g}") -> str:
    if math.isnan(value):
        return "-"
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _param(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _note(trial: FrozenTrial) -> str:
    from rlharness.sweep.study import ERROR, FAIL_REASON, PER_SEED, RETRY_OF, SUPERSEDED

    attrs = trial.user_attrs
    for key in (ERROR, FAIL_REASON, SUPERSEDED):
        if key in attrs:
            return str(attrs[key])
    if trial.state.name == "PRUNED":
        return f"pruned after {len(attrs.get(PER_SEED, {}))} seed(s)"
    if RETRY_OF in attrs:
        return f"retry of trial {attrs[RETRY_OF]}"
    return ""
