"""Commands that read results: ``catalog``, ``compare``, ``report``, ``hypotheses``,
``remedies``, ``verify``.

Bad input (a missing or empty results directory, an unknown run, metric or
column) prints one message listing what is available and exits with status 2,
never a traceback.

Every run is verified against its manifest as it is loaded: one whose files
do not match (a truncated Parquet file, an edited summary, a missing file) is
left out with a warning on stderr naming the run and the file, unless
``--include-unverified`` is given. ``verify`` checks every run and exits 1 if
any does not verify, 0 if all do.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rlharness.cli.console import UNVERIFIED, console, fail, plain
from rlharness.cli.options import (
    DEFAULT_RESULTS,
    BootstrapSeedOption,
    FormatOption,
    IncludeUnverifiedOption,
    MetricOption,
    RepsOption,
    ResultsOption,
    StorageOption,
    either,
)
from rlharness.cli.tables import Format, print_comparison, print_frame, print_hypotheses

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd
    from matplotlib.figure import Figure

    from rlharness.analysis.remedies import RemedyStudy
    from rlharness.analysis.study import Study
    from rlharness.catalog import Catalog

RUN_SUMMARY_COLUMNS = ["run", "kind", "env", "agent", "backend", "seeds", "steps", "commit"]
"""The columns of the runs table that ``catalog`` shows without ``--sql``."""


def catalog(
    results: ResultsOption = DEFAULT_RESULTS,
    sql: Annotated[
        str | None,
        typer.Option(
            "--sql",
            help="DuckDB SQL over the tables runs, outcomes and metrics, e.g. "
            '"SELECT agent, avg(final_sqrt_ve) FROM outcomes GROUP BY agent". '
            'Quote dotted knob columns: "triad.n_step".',
        ),
    ] = None,
    output: FormatOption = Format.table,
    include_unverified: IncludeUnverifiedOption = False,
) -> None:
    """List every run and sweep trial under the results root, or query them with SQL."""
    from rlharness.errors import ResultsError

    try:
        found = _open_catalog(results, include_unverified)
        frame = found.sql(sql) if sql else found.runs[RUN_SUMMARY_COLUMNS]
    except ResultsError as error:
        fail(error)
    print_frame(frame, output, "runs" if sql is None else "query")


def compare(
    selectors: Annotated[
        list[str] | None,
        typer.Argument(
            help="What to compare: experiment names (their latest run), run keys "
            "EXPERIMENT/RUN_ID, studies EXPERIMENT/sweep-STUDY, or paths. "
            "None: every run, narrowed by --where."
        ),
    ] = None,
    metric: MetricOption = None,
    results: ResultsOption = DEFAULT_RESULTS,
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
    reps: RepsOption = 2000,
    bootstrap_seed: BootstrapSeedOption = 0,
    output: FormatOption = Format.table,
    plots: Annotated[
        Path | None,
        typer.Option(
            "--plots",
            help="Also draw the IQM intervals and the performance profile into this directory "
            "(PNG at 200 dpi and SVG).",
        ),
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf", help="With --plots: write each figure as PDF too.")
    ] = False,
    include_unverified: IncludeUnverifiedOption = False,
    seed: Annotated[
        int | None, typer.Option("--seed", hidden=True, help="Old name of --bootstrap-seed.")
    ] = None,
) -> None:
    """Mean, median and IQM with 95% stratified bootstrap intervals, divergence rates with
    Wilson intervals, and the probability of improvement between groups of runs."""
    from rlharness.analysis.compare import compare as run_compare
    from rlharness.errors import ResultsError

    bootstrap_seed, _ = either("--bootstrap-seed", bootstrap_seed, "--seed", seed, 0)
    try:
        comparison = run_compare(
            _open_catalog(results, include_unverified),
            selectors or [],
            metric,
            where,
            by,
            all_pairs,
            reps=reps,
            seed=bootstrap_seed,
        )
    except ResultsError as error:
        fail(error)
    if output is Format.json:
        console.print_json(comparison.to_json())
    elif output is Format.csv:
        print_frame(comparison.tidy(), output, "comparison")
    else:
        print_comparison(comparison, output)
    if plots is not None:
        from rlharness.analysis.figures import interval_figure, profile_figure
        from rlharness.analysis.style import FORMATS, PAPER_FORMATS, save_figures

        figures = {
            "iqm_intervals": interval_figure(comparison),
            "profile": profile_figure(comparison),
        }
        for files in save_figures(figures, plots, PAPER_FORMATS if pdf else FORMATS).values():
            for path in files:
                plain(f"figure: {path}", stderr=True)


def report(
    target: Annotated[
        str,
        typer.Argument(
            help="An experiment (its latest run), a run key EXPERIMENT/RUN_ID or its path, "
            "or a study EXPERIMENT/sweep-STUDY."
        ),
    ],
    results: ResultsOption = DEFAULT_RESULTS,
    metric: MetricOption = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="HTML file (default: RESULTS/<experiment>/reports/<run-id>.html)."
        ),
    ] = None,
    reps: RepsOption = 2000,
    storage: StorageOption = None,
    include_unverified: IncludeUnverifiedOption = False,
    out: Annotated[
        Path | None, typer.Option("--out", hidden=True, help="Old name of --html.")
    ] = None,
) -> None:
    """Write a self-contained HTML report: provenance, spec, comparison tables and figures."""
    from rlharness.analysis.report import build_report, default_report_path, write_report
    from rlharness.errors import ResultsError
    from rlharness.results import free_space

    html, _ = either("--html", html, "--out", out, None)
    try:
        found = _open_catalog(results, include_unverified)
        page = build_report(found, target, metric=metric, reps=reps, storage=storage)
        path = html or default_report_path(found, target)
    except ResultsError as error:
        fail(error)
    try:
        write_report(page, path)
    except OSError as error:
        reason = f"{error.strerror or error} ({free_space(path)})"
        fail(ResultsError(f"cannot write the report to {path}: {reason}"))
    plain(f"report: {path}")


def hypotheses(
    target: Annotated[
        str | None,
        typer.Argument(
            help="A run of a DQN grid over env.id, agent.bootstrap_target, agent.n_step, "
            "agent.network.width and agent.prioritized_replay.alpha: an experiment (its latest "
            "run), a run key EXPERIMENT/RUN_ID or its path. Default: deadly_triad_minatar."
        ),
    ] = None,
    results: ResultsOption = DEFAULT_RESULTS,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write the tables (hypotheses.csv, knob_rates.csv, cells.csv) and the "
            "study's three figures (PNG at 200 dpi and SVG) into this directory.",
        ),
    ] = None,
    output: FormatOption = Format.table,
    reps: RepsOption = 2000,
    bootstrap_seed: BootstrapSeedOption = 0,
    include_unverified: IncludeUnverifiedOption = False,
) -> None:
    """The hypotheses of van Hasselt et al. (2018) on a grid run: each one's cell-averaged
    estimate with a 95% stratified bootstrap CI, its verdict and the reason."""
    from rlharness.analysis.hypotheses import HARD_RATE_BOUND, MARGIN, MIN_SEEDS
    from rlharness.analysis.study import DEFAULT_EXPERIMENT, open_study, study_tables
    from rlharness.errors import ResultsError

    try:
        study = open_study(_open_catalog(results, include_unverified), target or DEFAULT_EXPERIMENT)
        tables = study_tables(study, reps, bootstrap_seed)
    except ResultsError as error:
        fail(error)
    title = f"{study.run}: the hypotheses of van Hasselt et al. (2018)"
    note = (
        "Rates: treatment vs control, each the mean over cells of the measure's mean over "
        "seeds (soft divergence: the fraction of seeds diverged; log10 peak max |Q|: a "
        "difference of -0.3 halves the peak; over-estimation: the greedy policy's predicted Q "
        "minus its discounted Monte Carlo return). Estimates: their matched-cell difference "
        f"(H1: the hard-divergence rate), 95% CI from {reps} stratified bootstrap resamples of "
        f"the seeds within each cell (--bootstrap-seed {bootstrap_seed}). A verdict needs "
        f"{MIN_SEEDS} seeds per cell; soft-divergence effects within +-{MARGIN:.2f} do not "
        f"matter, nor a reduction from a control rate below {MARGIN:.2f}; H1 holds below "
        f"{HARD_RATE_BOUND:.2f}."
    )
    print_hypotheses(tables["hypotheses"], output, title, note)
    if out is not None:
        _write_study(study, tables, out, reps, bootstrap_seed)


def _write_study(
    study: Study, tables: dict[str, pd.DataFrame], out: Path, reps: int, seed: int
) -> None:
    """The study's tables as CSV and its figures as PNG and SVG under ``out``."""
    from rlharness.analysis.study_figures import study_figures

    _write_outputs(out, tables, lambda: study_figures(study, reps, seed))


def _write_outputs(
    out: Path, tables: dict[str, pd.DataFrame], figures: Callable[[], dict[str, Figure]]
) -> None:
    """``tables`` as CSV and the ``figures`` as PNG (at the paper's dpi) and SVG under ``out``,
    each file named on stderr; a directory that cannot be written is bad input."""
    from rlharness.analysis.study_figures import PAPER_DPI
    from rlharness.analysis.style import save_figures
    from rlharness.errors import ResultsError
    from rlharness.results import free_space

    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            path = out / f"{name}.csv"
            table.to_csv(path, index=False)
            plain(f"table: {path}", stderr=True)
        saved = save_figures(figures(), out, dpi=PAPER_DPI)
    except OSError as error:
        fail(ResultsError(f"cannot write to {out}: {error.strerror or error} ({free_space(out)})"))
    for files in saved.values():
        for path in files:
            plain(f"figure: {path}", stderr=True)


def remedies(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Deep runs of the remedies study: experiments (their latest runs), run keys "
            "EXPERIMENT/RUN_ID or paths. Default: the latest run of every dqn or pqn experiment "
            "named what_stops_it*."
        ),
    ] = None,
    results: ResultsOption = DEFAULT_RESULTS,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write the tables (remedies.csv, leads.csv, onsets.csv, correlations.csv) "
            "and the figures (remedies, warnings: PNG at 200 dpi and SVG) into this directory.",
        ),
    ] = None,
    output: FormatOption = Format.table,
    reps: RepsOption = 2000,
    bootstrap_seed: BootstrapSeedOption = 0,
    include_unverified: IncludeUnverifiedOption = False,
) -> None:
    """What stops the triad: each stabiliser's soft divergence, final return and peak max |Q|
    against the unstabilised cell, and whether the early-warning diagnostics moved first."""
    from rlharness.analysis.remedies import open_remedies, remedy_tables
    from rlharness.errors import ResultsError

    try:
        study = open_remedies(_open_catalog(results, include_unverified), targets or [])
        tables = remedy_tables(study, reps, bootstrap_seed)
    except ResultsError as error:
        fail(error)
    runs = ", ".join(study.runs)
    print_frame(
        tables["remedies"] if output in (Format.csv, Format.json) else _shown(tables["remedies"]),
        output,
        f"{runs}: each remedy against 'none'",
    )
    print_frame(tables["leads"], output, "early warnings: onsets before max |Q| (logged steps)")
    print_frame(tables["correlations"], output, "early warnings: rank correlation with later peak")
    if output in (Format.table, Format.markdown):
        plain(
            "value: the mean over games of each game's cell mean over seeds; effect_vs_none: the "
            "mean over games of (remedy cell - none cell); 95% CIs from "
            f"{reps} stratified bootstrap resamples of the seeds within each cell "
            f"(--bootstrap-seed {bootstrap_seed}). A lead counts the logged steps (every "
            f"{study.log_every} env steps) by which a warning's onset preceded max |Q|'s in a "
            "soft-diverged member; an onset is the first step from which the metric stays for two "
            "logs beyond every never-diverged member of the same game and network (with or "
            "without LayerNorm). Correlations: within each remedy's cell, averaged over cells."
        )
    if out is not None:
        _write_remedies(study, tables, out, reps, bootstrap_seed)


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """The remedies' table for reading: value and effect with their intervals in one column."""
    import pandas as pd

    rows = list(table.itertuples())
    return pd.DataFrame(
        {
            "remedy": table["remedy"],
            "measure": table["measure"],
            "seeds": table["seeds_per_cell"],
            "value [95% CI]": [f"{r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]" for r in rows],
            "vs none [95% CI]": [
                ""
                if r.effect_vs_none != r.effect_vs_none
                else f"{r.effect_vs_none:+.2f} [{r.effect_ci_low:+.2f}, {r.effect_ci_high:+.2f}]"
                for r in rows
            ],
        }
    )


def _write_remedies(
    study: RemedyStudy, tables: dict[str, pd.DataFrame], out: Path, reps: int, seed: int
) -> None:
    """The remedies' tables as CSV and figures as PNG and SVG under ``out``."""
    from rlharness.analysis.remedy_figures import remedy_intervals, warning_traces

    _write_outputs(
        out,
        tables,
        lambda: {
            "remedies": remedy_intervals(study.outcomes, "", reps, seed),
            "warnings": warning_traces(study.traces),
        },
    )


def verify(
    results_argument: Annotated[
        Path | None,
        typer.Argument(metavar="RESULTS", hidden=True, help="Old form of --results."),
    ] = None,
    results: ResultsOption = DEFAULT_RESULTS,
    remove_partial: Annotated[
        bool,
        typer.Option(
            "--remove-partial",
            help="Remove the .partial staging dirs that unfinished runs left behind, "
            "except those whose writing process still runs (a removed run cannot be resumed).",
        ),
    ] = False,
) -> None:
    """Check every run and trial against its manifest (files present, sizes and SHA-256s
    equal, nothing unlisted, each file readable); exit 1 if any does not verify."""
    from rlharness.errors import ResultsError
    from rlharness.integrity import check_runs, find_partials
    from rlharness.results import RUN_RECORD, format_bytes

    results, _ = either(
        "--results", results, "the RESULTS argument", results_argument, DEFAULT_RESULTS
    )
    if not results.is_dir():
        fail(ResultsError(f"results directory {results} does not exist"))
    checks = check_runs(results)
    failed = [check for check in checks if not check.verified]
    for check in failed:
        state = "unverified" if check.readable else "unreadable"
        plain(f"{state}: {check.key}: {check.describe()}")
    plain(f"{len(checks)} run(s) checked: {len(checks) - len(failed)} verified, {len(failed)} not")
    partials = find_partials(results)
    for partial in partials:
        reason = partial.keep_reason()
        size = format_bytes(partial.bytes)
        if reason is not None:
            plain(f"partial: kept {partial.path} ({size}): {reason}")
        elif remove_partial:
            partial.remove()
            plain(f"partial: removed {partial.path} ({size})")
        else:
            resumable = (partial.path / RUN_RECORD).is_file()
            how = "; `rlharness run SPEC --resume` continues it" if resumable else ""
            plain(f"partial: {partial.path} ({size}): an unfinished run; its writer has ended{how}")
    stale = [partial for partial in partials if partial.keep_reason() is None]
    if stale and not remove_partial:
        total = format_bytes(sum(partial.bytes for partial in stale))
        plain(
            f"{len(stale)} staging dir(s) of unfinished runs hold {total}; "
            f"`rlharness verify --results {results} --remove-partial` removes them"
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
                    plain(f"warning: {warning.message}", stderr=True)
                else:
                    warnings.warn_explicit(
                        warning.message, warning.category, warning.filename, warning.lineno
                    )
