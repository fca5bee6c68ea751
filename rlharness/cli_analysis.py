"""Commands that read results: ``catalog``, ``compare``, ``report`` and ``verify``.

Registered on the main app by `rlharness.cli`. Bad input (a missing or empty
results directory, an unknown run, metric or column) prints one message
listing what is available and exits with status 2, never a traceback.

Every run is verified against its manifest as it is loaded: one whose files
do not match (a truncated Parquet file, an edited summary, a missing file) is
left out with a warning on stderr naming the run and the file, unless
``--include-unverified`` is given. ``verify`` checks every run and exits 1 if
any does not verify, 0 if all do.
"""

from __future__ import annotations

import warnings
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from rlharness.analysis.compare import Comparison
    from rlharness.catalog import Catalog
    from rlharness.errors import ResultsError

UNVERIFIED = 1
"""``verify``: some run does not match its manifest."""
BAD_INPUT = 2
console = Console()
errors = Console(stderr=True)

ResultsOption = Annotated[
    Path, typer.Option("--results", help="Results root holding <experiment>/<run-id>/ runs.")
]
IncludeUnverifiedOption = Annotated[
    bool,
    typer.Option(
        "--include-unverified",
        help="Also use runs whose files do not match their manifests (with a warning); "
        "runs whose files cannot be read are left out even so.",
    ),
]


class Format(StrEnum):
    """How a table is printed."""

    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


def catalog(
    results: ResultsOption = Path("results"),
    sql: Annotated[
        str | None,
        typer.Option(
            "--sql",
            help="DuckDB SQL over the tables runs, outcomes and metrics, e.g. "
            '"SELECT agent, avg(final_sqrt_ve) FROM outcomes GROUP BY agent". '
            'Quote dotted knob columns: "triad.n_step".',
        ),
    ] = None,
    output: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    include_unverified: IncludeUnverifiedOption = False,
) -> None:
    """List every run and sweep trial under the results root, or query them with SQL."""
    from rlharness.errors import ResultsError

    try:
        found = _open_catalog(results, include_unverified)
        frame = found.sql(sql) if sql else found.runs[_RUN_SUMMARY_COLUMNS]
    except ResultsError as error:
        _fail(error)
    _print_frame(frame, output, "runs" if sql is None else "query")


_RUN_SUMMARY_COLUMNS = ["run", "kind", "env", "agent", "backend", "seeds", "steps", "commit"]


def compare(
    selectors: Annotated[
        list[str] | None,
        typer.Argument(
            help="What to compare: experiment names (their latest run), run keys "
            "EXPERIMENT/RUN_ID, studies EXPERIMENT/sweep-STUDY, or paths. "
            "None: every run, narrowed by --where."
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="Per-seed metric, e.g. final_sqrt_ve, final_max_abs_value, final_eval_return, "
            "return_auc (default: the first the runs have of these).",
        ),
    ] = None,
    results: ResultsOption = Path("results"),
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            help="DuckDB filter over the outcomes table, e.g. "
            "\"agent = 'tdc' AND \\\"triad.n_step\\\" = '1'\".",
        ),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Group by this column instead of by grid point (repeatable)."),
    ] = None,
    all_pairs: Annotated[
        bool,
        typer.Option(
            "--all-pairs",
            help="Probability of improvement for every pair of groups, "
            "not only each against the first.",
        ),
    ] = False,
    reps: Annotated[
        int, typer.Option("--reps", min=100, help="Bootstrap resamples for the intervals.")
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    output: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    plots: Annotated[
        Path | None,
        typer.Option(
            "--plots",
            help="Also draw the IQM intervals and the performance profile into this directory "
            "(PNG and SVG).",
        ),
    ] = None,
    include_unverified: IncludeUnverifiedOption = False,
) -> None:
    """Mean, median and IQM with 95% stratified bootstrap intervals, divergence rates with
    Wilson intervals, and the probability of improvement between groups of runs."""
    from rlharness.analysis.compare import compare as run_compare
    from rlharness.errors import ResultsError

    try:
        comparison = run_compare(
            _open_catalog(results, include_unverified),
            selectors or [],
            metric,
            where,
            by,
            all_pairs,
            reps=reps,
            seed=seed,
        )
    except ResultsError as error:
        _fail(error)
    if output is Format.json:
        console.print_json(comparison.to_json())
    elif output is Format.csv:
        _print_frame(comparison.tidy(), output, "comparison")
    else:
        _print_comparison(comparison, output)
    if plots is not None:
        from rlharness.analysis.figures import interval_figure, profile_figure
        from rlharness.analysis.style import save_figures

        figures = {
            "iqm_intervals": interval_figure(comparison),
            "profile": profile_figure(comparison),
        }
        for files in save_figures(figures, plots).values():
            for path in files:
                errors.print(f"figure: {path}", markup=False, highlight=False, soft_wrap=True)


def report(
    target: Annotated[
        str,
        typer.Argument(
            help="An experiment (its latest run), a run key EXPERIMENT/RUN_ID or its path, "
            "or a study EXPERIMENT/sweep-STUDY."
        ),
    ],
    results: ResultsOption = Path("results"),
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric compared (default as in compare).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="HTML file (default: RESULTS/<experiment>/reports/<run-id>.html)."
        ),
    ] = None,
    reps: Annotated[
        int, typer.Option("--reps", min=100, help="Bootstrap resamples for the intervals.")
    ] = 2000,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            envvar="RLHARNESS_STORAGE",
            help="Optuna storage of a study (default: sqlite:///RESULTS/<experiment>/optuna.db).",
        ),
    ] = None,
    include_unverified: IncludeUnverifiedOption = False,
) -> None:
    """Write a self-contained HTML report: provenance, spec, comparison tables and figures."""
    from rlharness.analysis.report import build_report, default_report_path, write_report
    from rlharness.errors import ResultsError
    from rlharness.results import free_space

    try:
        found = _open_catalog(results, include_unverified)
        page = build_report(found, target, metric=metric, reps=reps, storage=storage)
        path = out or default_report_path(found, target)
    except ResultsError as error:
        _fail(error)
    try:
        write_report(page, path)
    except OSError as error:
        reason = f"{error.strerror or error} ({free_space(path)})"
        _fail(ResultsError(f"cannot write the report to {path}: {reason}"))
    console.print(f"report: {path}", markup=False, highlight=False, soft_wrap=True)


def verify(
    results: Annotated[
        Path, typer.Argument(help="Results root holding <experiment>/<run-id>/ runs.")
    ] = Path("results"),
    remove_partial: Annotated[
        bool,
        typer.Option(
            "--remove-partial",
            help="Remove the .partial staging dirs that unfinished runs left behind, "
            "except those whose writing process still runs.",
        ),
    ] = False,
) -> None:
    """Check every run and trial against its manifest (files present, sizes and SHA-256s
    equal, nothing unlisted, each file readable); exit 1 if any does not verify."""
    from rlharness.errors import ResultsError
    from rlharness.integrity import check_runs, find_partials
    from rlharness.results import format_bytes

    if not results.is_dir():
        _fail(ResultsError(f"results directory {results} does not exist"))
    checks = check_runs(results)
    failed = [check for check in checks if not check.verified]
    for check in failed:
        state = "unverified" if check.readable else "unreadable"
        _plain(f"{state}: {check.key}: {check.describe()}")
    _plain(f"{len(checks)} run(s) checked: {len(checks) - len(failed)} verified, {len(failed)} not")
    partials = find_partials(results)
    for partial in partials:
        reason = partial.keep_reason()
        size = format_bytes(partial.bytes)
        if reason is not None:
            _plain(f"partial: kept {partial.path} ({size}): {reason}")
        elif remove_partial:
            partial.remove()
            _plain(f"partial: removed {partial.path} ({size})")
        else:
            _plain(f"partial: {partial.path} ({size}): an unfinished run; its writer has ended")
    stale = [partial for partial in partials if partial.keep_reason() is None]
    if stale and not remove_partial:
        total = format_bytes(sum(partial.bytes for partial in stale))
        _plain(
            f"{len(stale)} staging dir(s) of unfinished runs hold {total}; "
            f"`rlharness verify {results} --remove-partial` removes them"
        )
    if failed:
        raise typer.Exit(UNVERIFIED)


def _open_catalog(results: Path, include_unverified: bool) -> Catalog:
    """The catalog of ``results``, each run that did not verify named on stderr."""
    from rlharness.catalog import Catalog, UnverifiedRunWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnverifiedRunWarning)
        try:
            return Catalog(results, include_unverified)
        finally:
            for warning in caught:
                if issubclass(warning.category, UnverifiedRunWarning):
                    errors.print(
                        f"warning: {warning.message}", markup=False, highlight=False, soft_wrap=True
                    )
                else:
                    warnings.warn_explicit(
                        warning.message, warning.category, warning.filename, warning.lineno
                    )


def _plain(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _print_comparison(comparison: Comparison, output: Format) -> None:
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
    import pandas as pd

    title = f"{comparison.metric} ({direction} is better), {comparison.reps} bootstrap resamples"
    _print_frame(pd.DataFrame(shown), output, title)
    pairs = comparison.improvement_table()
    if len(pairs):
        better = "higher" if comparison.higher_is_better else "lower"
        shown_pairs = pd.DataFrame(
            {
                "X": pairs["x"],
                "Y": pairs["y"],
                f"P(X {better} than Y) [{percent} CI]": [
                    _interval(p, low, high, "{:.2f}")
                    for p, low, high in zip(
                        pairs["probability"], pairs["low"], pairs["high"], strict=True
                    )
                ],
            }
        )
        _print_frame(shown_pairs, output, "probability of improvement")


def _interval(value: float, low: float, high: float, fmt: str = "{:.4g}") -> str:
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def _print_frame(frame: pd.DataFrame, output: Format, title: str) -> None:
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


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _fail(error: ResultsError) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(BAD_INPUT)
