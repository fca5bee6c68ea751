"""Rich tables and other printed forms of results: trials, run summaries, comparisons, frames."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from rlharness.cli.console import console, plain

if TYPE_CHECKING:
    import pandas as pd
    from optuna.trial import FrozenTrial

    from rlharness.analysis.compare import Comparison

TABLE_ROWS = 20
"""Trials shown after a sweep, best first."""
UNBOUNDED = 1_000_000
"""Columns to measure a table in, so that its natural width is what comes back."""


class Format(StrEnum):
    """How a table is printed."""

    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"

    @property
    def for_machines(self) -> bool:
        """CSV and JSON: stdout holds the data alone; the lines about it go to stderr."""
        return self in (Format.csv, Format.json)


def trials_frame(trials: list[FrozenTrial], maximize: bool, best_first: bool) -> pd.DataFrame:
    """One row per trial: state, params, value, seeds, divergence outcomes and why it failed."""
    import pandas as pd
    from optuna.trial import TrialState

    from rlharness.sweep.study import OUTCOMES, PER_SEED, params_of

    rows = list(trials)
    if best_first:
        rows = [t for t in rows if t.state == TrialState.COMPLETE and t.value is not None]
        rows.sort(key=lambda t: float(t.value or 0.0), reverse=maximize)
        rows = rows[:TABLE_ROWS]
    paths = list(dict.fromkeys(path for trial in trials for path in params_of(trial)))
    columns = ("#", "state", *paths, "value", "seeds", "outcomes", "note")
    records = []
    for trial in rows:
        params = params_of(trial)
        attrs = trial.user_attrs
        records.append(
            (
                trial.number,
                trial.state.name,
                *(params.get(path) for path in paths),
                trial.value,
                len(attrs[PER_SEED]) if PER_SEED in attrs else None,
                ", ".join(f"{name} {count}" for name, count in attrs.get(OUTCOMES, {}).items()),
                _note(trial),
            )
        )
    return pd.DataFrame.from_records(records, columns=columns)


def print_run_summary(summary: dict[str, Any], output: Format) -> None:
    """A run's summary: as JSON, the whole of it (summary.json); as CSV, one row per grid point;
    as a table or Markdown, that and the divergence by knob value, the criteria below."""
    import pandas as pd

    if output is Format.json:
        console.out(json.dumps(summary, indent=2), highlight=False)
        return
    variants = summary["variants"]
    outcomes = list(dict.fromkeys(o for v in variants for o in v["outcome_counts"]))
    finals = list(variants[0]["median_final"])
    points = pd.DataFrame(
        {
            "grid point": [v["label"] for v in variants],
            "seeds": [v["seeds"] for v in variants],
            **{o: [v["outcome_counts"].get(o, 0) for v in variants] for o in outcomes},
            **{f"median final {f}": [v["median_final"][f] for v in variants] for f in finals},
        }
    )
    title = f"{summary['experiment']} ({summary['agent']} on {summary['env']})"
    print_frame(points, output, title)
    if output is Format.csv:
        return
    if "knob_effects" in summary:
        print_frame(_knob_frame(summary["knob_effects"]), output, KNOB_TITLE)
    for criterion in dict.fromkeys(
        v["divergence_criterion"]["statement"] for v in variants if "divergence_criterion" in v
    ):
        plain(criterion)


KNOB_TITLE = (
    "divergence by knob value (mean over grid points; 95% CI: stratified bootstrap of the seeds "
    "within each grid point)"
)


def _knob_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per value of each grid field: the fraction diverged averaged over grid points, with its
    95% stratified bootstrap interval (seeds resampled within each grid point)."""
    import pandas as pd

    extra = [key for key in rows[0] if key.startswith("median_")]
    return pd.DataFrame(
        {
            "knob": [row["knob"] for row in rows],
            "value": [row["value"] for row in rows],
            "grid points": [row["grid_points"] for row in rows],
            "runs": [row["runs"] for row in rows],
            "diverged": [row["diverged"] for row in rows],
            "fraction [95% CI]": [
                _interval(row["diverged_fraction"], row["ci_low"], row["ci_high"], "{:.2f}")
                for row in rows
            ],
            **{key.replace("_", " ", 2): [row[key] for row in rows] for key in extra},
        }
    )


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
        _print_table(frame, title)


def _print_table(frame: pd.DataFrame, title: str) -> None:
    """``frame`` as a rich table, no cell ever cut short or folded: on a terminal it fits in, or
    else each row is printed as ``column: value`` lines; elsewhere (a pipe, a file, a Ray job's
    log) the table has its natural width, each row one line whatever ``COLUMNS`` says."""
    table = Table(title=title)
    for column in frame.columns:
        numeric = frame[column].dtype.kind in "iuf"
        table.add_column(str(column), overflow="fold", justify="right" if numeric else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(value) for value in row))
    natural = console.measure(table, options=console.options.update_width(UNBOUNDED)).maximum
    if not console.is_terminal:
        Console(file=console.file, width=max(natural, console.width)).print(table)
    elif natural <= console.width:
        console.print(table)
    else:
        plain(title)
        for row in frame.itertuples(index=False):
            for number, (column, value) in enumerate(zip(frame.columns, row, strict=True)):
                plain(f"{'  ' if number else '- '}{column}: {_cell(value)}".rstrip())


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
