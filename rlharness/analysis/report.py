"""A self-contained HTML report of one run or one sweep study.

`build_report` gathers what a reader needs to judge a run without the results
directory: its description and provenance, the experiment file, a comparison
of its grid points (or trials) with interval estimates, divergence rates and
probabilities of improvement, the run's own plots, interval-estimate and
performance-profile figures and, for a study, Optuna's sweep figures and its
trials. Figures are embedded as PNG data URIs and the style is inline, so the
file opens offline and loads nothing: its content security policy forbids it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rlharness.analysis.compare import Comparison, compare, select
from rlharness.analysis.figures import interval_figure, profile_figure
from rlharness.analysis.statistics import ESTIMATORS, Estimate
from rlharness.analysis.sweep_figures import DEFINITION_ATTR, objective_name, sweep_figures
from rlharness.catalog import Catalog, ResultsError, RunEntry
from rlharness.errors import SpecError
from rlharness.results import atomic_write_text
from rlharness.storage import default_url, load_study, mask, params_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORTS_DIR = "reports"
FIGURE_DPI = 110
CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1.5em; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.note { color: #444; font-style: italic; }
.scroll { overflow-x: auto; }
"""
CONTENT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Target:
    """What a report covers: one run or trial (``study`` None) or every trial of a study."""

    experiment: str
    keys: list[str]
    study: str | None

    @property
    def slug(self) -> str:
        """The report's file stem: the run id, ``sweep-STUDY``, or ``sweep-STUDY-trial-N``."""
        if self.study is not None:
            return f"sweep-{self.study}"
        return "-".join(self.keys[0].split("/")[1:])


def resolve_target(catalog: Catalog, target: str) -> Target:
    """Resolve ``target`` as `compare.select` does; raise `ResultsError` naming what exists."""
    ((_, keys),) = select(catalog, [target])
    rows = catalog.runs[catalog.runs["run"].isin(keys)]
    experiments = sorted(set(rows["experiment"]))
    whole_study = (rows["kind"] == "trial").all() and not Path(target.rstrip("/")).name.startswith(
        "trial-"
    )
    studies = sorted({f"{r.experiment}/sweep-{r.study}" for r in rows.itertuples()})
    if whole_study and len(studies) > 1:
        raise ResultsError(f"{target!r} names several studies; report one of: {', '.join(studies)}")
    if len(experiments) != 1:
        raise ResultsError(f"{target!r} names runs of several experiments: {experiments}")
    study = str(rows["study"].iloc[0]) if whole_study else None
    return Target(experiments[0], keys, study)


def default_report_path(catalog: Catalog, target: str) -> Path:
    """``<results>/<experiment>/reports/<run-id or sweep-STUDY>.html``."""
    resolved = resolve_target(catalog, target)
    return catalog.root / resolved.experiment / REPORTS_DIR / f"{resolved.slug}.html"


def build_report(
    catalog: Catalog,
    target: str,
    metric: str | None = None,
    reps: int = 2000,
    storage: str | None = None,
) -> str:
    """The HTML report of ``target``: an experiment (its latest run), a run key or path,
    or a study (``EXPERIMENT/sweep-STUDY`` or ``sweep-STUDY``).

    ``metric`` defaults as in `compare`; ``reps`` is the number of bootstrap
    resamples; ``storage`` is the study's Optuna storage URL (default: the SQLite
    file beside the results). Raises `ResultsError` for a target or metric that
    does not exist; a study whose storage cannot be read is reported without
    its Optuna figures, with the reason.
    """
    resolved = resolve_target(catalog, target)
    first = catalog.entries[resolved.keys[0]]
    comparison = compare(catalog, [target], metric=metric, reps=reps)
    sections = [
        _section("Provenance", _provenance(first, [catalog.entries[k] for k in resolved.keys])),
        _section("Comparison", _comparison(comparison)),
        _section(
            "Interval estimates and performance profile",
            _figure(interval_figure(comparison), f"IQM of {comparison.metric} per group")
            + _figure(profile_figure(comparison), f"Score distributions of {comparison.metric}"),
        ),
    ]
    plots = sorted((first.path / "plots").glob("*.png"))
    if plots:
        sections.append(
            _section("Plots of the run", "".join(_image(p.read_bytes(), p.stem) for p in plots))
        )
    if resolved.study is not None:
        url = storage or default_url(catalog.root, resolved.experiment)
        sections.append(_section("Sweep", _sweep(url, resolved.study)))
    sections.append(_section("Experiment file", _spec(first, resolved.study)))
    if resolved.study is None:
        title = f"{resolved.experiment}: run {resolved.slug}"
    else:
        title = f"{resolved.experiment}: study {resolved.study} ({len(resolved.keys)} trials)"
    description = str(first.config.get("description") or first.summary.get("description") or "")
    head = f"<h1>{_text(title)}</h1>" + (f"<p>{_text(description)}</p>" if description else "")
    return _document(title, head + "".join(sections))


def write_report(html_text: str, path: Path) -> None:
    """Write the report atomically, creating its directory."""
    atomic_write_text(path, html_text)


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "\N{INFINITY}" if value > 0 else "\N{MINUS SIGN}\N{INFINITY}"
    return f"{value:.4g}"


def _interval(estimate: Estimate) -> str:
    return f"{_number(estimate.value)} [{_number(estimate.low)}, {_number(estimate.high)}]"


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_text(title)}</h2>{body}</section>"


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Sequence[int] = (),
    name: str = "",
) -> str:
    """An escaped table; columns at ``numeric`` are right-aligned."""
    head = "".join(f"<th>{_text(header)}</th>" for header in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="number">{_text(cell)}</td>'
            if index in numeric
            else f"<td>{_text(cell)}</td>"
            for index, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    identity = f' id="{_text(name)}"' if name else ""
    return (
        f'<div class="scroll"><table{identity}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _image(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_text(caption)}">'
        f"<figcaption>{_text(caption)}</figcaption></figure>"
    )


def _figure(figure: Figure, caption: str) -> str:
    """Embed ``figure`` as a PNG and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(figure)
    return _image(buffer.getvalue(), caption)


def _provenance(first: RunEntry, entries: list[RunEntry]) -> str:
    provenance = first.provenance
    git = provenance.get("git") or {}
    command = provenance.get("command")
    dirty = git.get("dirty")
    rows = [
        ("when (UTC)", provenance.get("created_utc", "unknown")),
        ("commit", git.get("commit") or "unknown (not a git checkout)"),
        ("uncommitted changes", "unknown" if dirty is None else "yes (dirty)" if dirty else "no"),
        ("python", provenance.get("python", "unknown")),
        ("platform", provenance.get("platform", "unknown")),
        ("command", mask(shlex.join(command)) if command else "unknown"),
        (
            "results",
            ", ".join(entry.key for entry in entries[:3]) + (" ..." if len(entries) > 3 else ""),
        ),
    ]
    commits = sorted({str((e.provenance.get("git") or {}).get("commit")) for e in entries})
    note = ""
    if len(commits) > 1:
        note = f'<p class="note">Trials ran at several commits: {_text(", ".join(commits))}.</p>'
    elif len(entries) > 1:
        note = f'<p class="note">As recorded by {_text(first.key)}.</p>'
    packages = sorted((provenance.get("packages") or {}).items())
    return (
        _table(("field", "value"), rows, name="provenance")
        + note
        + (_table(("package", "version"), packages, name="versions") if packages else "")
    )


def _comparison(comparison: Comparison) -> str:
    names = [group.name for group in comparison.groups]
    reference = names[0]
    level = f"{comparison.confidence:.0%} CI"
    headers = [
        "group",
        "seeds",
        *(f"{estimator} [{level}]" for estimator in ESTIMATORS),
        "diverged",
        f"divergence rate [{level}, Wilson]",
        f"P(better than first) [{level}]",
    ]
    diverged = comparison.table()["diverged"].tolist()
    rows = []
    for group, count in zip(comparison.groups, diverged, strict=True):
        improvement = comparison.improvements.get((group.name, reference))
        rows.append(
            [
                group.name,
                len(group.rows),
                *(_interval(comparison.estimates[group.name][e]) for e in ESTIMATORS),
                f"{count}/{len(group.rows)}",
                _interval(comparison.divergence[group.name]),
                _interval(improvement) if improvement else "(reference)",
            ]
        )
    direction = "higher" if comparison.higher_is_better else "lower"
    intro = (
        f"<p>Metric <code>{_text(comparison.metric)}</code> ({direction} is better), per seed; "
        f"{comparison.reps} stratified bootstrap resamples. IQM: interquartile mean. A diverged "
        "seed's missing score counts as the worst value. P(better than first): the probability "
        f"that a run of the group beats a run of {_text(reference)}.</p>"
    )
    return intro + _table(headers, rows, numeric=range(1, len(headers)), name="comparison")


def _sweep(url: str, study_name: str) -> str:
    """The study's trials and Optuna figures, or why the study could not be read."""
    try:
        study = load_study(url, study_name)
        figures = sweep_figures(url, study_name)
    except SpecError as error:
        return f'<p class="note">Optuna study unavailable: {_text(mask(str(error)))}</p>'
    rows = [
        (
            trial.number,
            trial.state.name,
            ", ".join(f"{name}={_parameter(value)}" for name, value in params_of(trial).items()),
            _number(trial.value),
        )
        for trial in study.get_trials(deepcopy=False)
    ]
    definition = study.user_attrs.get(DEFINITION_ATTR) or {}
    intro = (
        f"<p>Study <code>{_text(study_name)}</code> in <code>{_text(mask(url))}</code>: "
        f"{_text(objective_name(study))}, {_text(study.direction.name.lower())}d.</p>"
    )
    if definition:
        intro += (
            f'<pre id="sweep-definition">{_text(yaml.safe_dump(definition, sort_keys=False))}</pre>'
        )

    captions = {
        "importances": "Parameter importances",
        "slice": "Objective against each parameter",
        "parallel": "Parallel coordinates of the trials",
        "history": "Optimisation history",
    }
    body = "".join(_figure(figure, captions[name]) for name, figure in figures.items())
    if "importances" not in figures:
        body += (
            '<p class="note">No parameter importances: they need two completed trials '
            "and a parameter that varies among them.</p>"
        )
    trials = _table(("trial", "state", "parameters", "value"), rows, numeric=(0, 3), name="trials")
    return intro + trials + body


def _parameter(value: Any) -> str:
    return _number(value) if isinstance(value, float) else str(value)


def _spec(first: RunEntry, study: str | None) -> str:
    text = (first.path / "config.yaml").read_text()
    if study is None:
        return f'<pre id="spec">{_text(text)}</pre>'
    return (
        f'<p class="note">The file of {_text(first.key)}, with its sampled parameters '
        f'filled in.</p><pre id="spec">{_text(text)}</pre>'
    )


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
