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
import json
import math
import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined
from optuna.distributions import distribution_to_json

from rlharness.analysis.compare import Comparison, compare, select
from rlharness.analysis.figures import interval_figure, profile_figure
from rlharness.analysis.plots import CAPTIONS
from rlharness.analysis.statistics import ESTIMATORS, Estimate
from rlharness.analysis.style import DPI, figure_bytes
from rlharness.analysis.sweep_figures import objective_name, sweep_figures
from rlharness.catalog import Catalog, RunEntry
from rlharness.errors import ResultsError, SpecError
from rlharness.masking import mask
from rlharness.results import atomic_write_text
from rlharness.storage import default_url, load_study
from rlharness.sweep.study import DEFINITION, params_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORTS_DIR = "reports"
TEMPLATE = "report.html.j2"
"""The page's markup and inline style, in ``rlharness/analysis/templates``."""
ENVIRONMENT = Environment(
    loader=PackageLoader("rlharness.analysis", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Table:
    """A table's id, header row and body rows; the columns at ``numeric`` are right-aligned."""

    name: str
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    numeric: Collection[int] = ()


@dataclass(frozen=True)
class Image:
    """A PNG as base64 ``data``, with the ``caption`` that is also its alternative text."""

    caption: str
    data: str


@dataclass(frozen=True)
class Provenance:
    """Where the first run came from, a ``note`` on the others, and its package versions."""

    fields: Table
    note: str
    """Empty when there is nothing to note."""
    versions: Table | None


@dataclass(frozen=True)
class ComparisonSection:
    """The comparison tables, and what their introduction names: ``reference`` is the first
    group. ``estimates`` holds the interval estimates, ``divergence`` the divergence counts,
    rates and probabilities of improvement: two tables narrow enough for the page."""

    metric: str
    direction: str
    """``higher`` or ``lower`` (is better)."""
    reps: int
    reference: str
    estimates: Table
    divergence: Table


@dataclass(frozen=True)
class Sweep:
    """A study's trials and Optuna figures; ``url`` is masked, ``definition`` is YAML or empty."""

    study: str
    url: str
    objective: str
    direction: str
    definition: str
    trials: Table
    figures: list[Image]
    importances: bool
    swept: tuple[str, ...]
    """The dotted fields the study samples."""


@dataclass(frozen=True)
class Page:
    """What the template shows, in the order it shows it.

    ``sweep`` is None for a run, and for a study its `Sweep` or why its storage
    could not be read; ``spec`` is a run's experiment file or, for a study, its
    fixed settings and sweep definition, as recorded by ``spec_key`` (None for a run).
    """

    title: str
    description: str
    provenance: Provenance
    comparison: ComparisonSection
    estimates: list[Image]
    plots: list[Image]
    sweep: Sweep | str | None
    spec: str
    spec_key: str | None


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

    ``metric`` defaults to a study's objective, and for a run as in `compare`; ``reps``
    is the number of bootstrap
    resamples; ``storage`` is the study's Optuna storage URL (default: the SQLite
    file beside the results). Raises `ResultsError` for a target or metric that
    does not exist; a study whose storage cannot be read is reported without
    its Optuna figures, with the reason.
    """
    resolved = resolve_target(catalog, target)
    first = catalog.entries[resolved.keys[0]]
    if metric is None and resolved.study is not None:
        recorded = first.summary.get("sweep") or first.config.get("sweep") or {}
        metric = recorded.get("objective")
    comparison = compare(catalog, [target], metric=metric, reps=reps)
    sweep: Sweep | str | None = None
    if resolved.study is None:
        title = f"{resolved.experiment}: run {resolved.slug}"
    else:
        title = f"{resolved.experiment}: study {resolved.study} ({len(resolved.keys)} trials)"
        sweep = _sweep(storage or default_url(catalog.root, resolved.experiment), resolved.study)
    page = Page(
        title=title,
        description=str(first.config.get("description") or first.summary.get("description") or ""),
        provenance=_provenance(first, [catalog.entries[k] for k in resolved.keys]),
        comparison=_comparison(comparison),
        estimates=[
            _figure(
                interval_figure(comparison),
                f"Interquartile mean (IQM) of {comparison.metric} per group (dot), with its "
                f"{comparison.confidence:.0%} stratified bootstrap confidence interval over the "
                f"group's seeds (bar; {comparison.reps} resamples).",
            ),
            _figure(
                profile_figure(comparison),
                f"Performance profile of {comparison.metric}: the fraction of each group's seeds "
                f"scoring {'above' if comparison.higher_is_better else 'below'} each threshold "
                f"(line), with its {comparison.confidence:.0%} bootstrap confidence band.",
            ),
        ],
        plots=[
            _image(plot.read_bytes(), CAPTIONS.get(plot.stem, plot.stem))
            for plot in sorted((first.path / "plots").glob("*.png"))
        ],
        sweep=sweep,
        spec=(
            (first.path / "config.yaml").read_text()
            if resolved.study is None
            else study_definition(first.config, _swept(catalog, resolved.keys, first, sweep))
        ),
        spec_key=None if resolved.study is None else first.key,
    )
    return ENVIRONMENT.get_template(TEMPLATE).render(report=page)


def write_report(html_text: str, path: Path) -> None:
    """Write the report atomically, creating its directory."""
    atomic_write_text(path, html_text)


def _number(value: float | None) -> str:
    """``value`` to four significant digits; ``n/a`` for None or NaN; infinities as symbols."""
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "\N{INFINITY}" if value > 0 else "\N{MINUS SIGN}\N{INFINITY}"
    return f"{value:.4g}"


def _interval(estimate: Estimate) -> str:
    """``VALUE [LOW, HIGH]``."""
    return f"{_number(estimate.value)} [{_number(estimate.low)}, {_number(estimate.high)}]"


def _image(png: bytes, caption: str) -> Image:
    """``png`` base64-encoded for a data URI, captioned."""
    return Image(caption, base64.b64encode(png).decode("ascii"))


def _figure(figure: Figure, caption: str) -> Image:
    """Embed ``figure`` as a PNG and close it."""
    import matplotlib.pyplot as plt

    png = figure_bytes(figure, "png", DPI)
    plt.close(figure)
    return _image(png, caption)


def _swept(
    catalog: Catalog, keys: list[str], first: RunEntry, sweep: Sweep | str | None
) -> set[str]:
    """The fields a study samples: its space, as recorded, and every setting its trials vary."""
    runs = catalog.runs[catalog.runs["run"].isin(keys)]
    varying = {
        column
        for column in runs.columns
        if "." in column and runs[column].astype(str).nunique(dropna=False) > 1
    }
    recorded = set((first.config.get("sweep") or {}).get("space") or {})
    return varying | recorded | (set(sweep.swept) if isinstance(sweep, Sweep) else set())


def study_definition(config: dict[str, Any], swept: set[str]) -> str:
    """A study's experiment file as YAML: its fixed settings, then its ``sweep`` section if the
    trial recorded one (the Optuna study's definition is in the report's sweep section).

    ``config`` is one trial's; the ``swept`` fields are left out of their sections (their
    values differ per trial); a parameter's unset options are left out of ``space``.
    """
    sweep = dict(config.get("sweep") or {})
    if "space" in sweep:
        sweep["space"] = {
            name: {option: value for option, value in parameter.items() if value is not None}
            for name, parameter in sweep["space"].items()
        }
    fixed = {
        section: (
            {k: v for k, v in value.items() if f"{section}.{k}" not in swept}
            if isinstance(value, dict)
            else value
        )
        for section, value in config.items()
        if section != "sweep"
    }
    return yaml.safe_dump({**fixed, **({"sweep": sweep} if sweep else {})}, sort_keys=False)


def _provenance(first: RunEntry, entries: list[RunEntry]) -> Provenance:
    """``first``'s provenance and packages, noting whether ``entries`` ran at several commits."""
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
        note = f"Trials ran at several commits: {', '.join(commits)}."
    elif len(entries) > 1:
        note = f"As recorded by {first.key}."
    packages = sorted((provenance.get("packages") or {}).items())
    return Provenance(
        fields=Table("provenance", ("field", "value"), rows),
        note=note,
        versions=Table("versions", ("package", "version"), packages) if packages else None,
    )


def _comparison(comparison: Comparison) -> ComparisonSection:
    """One row per group: its estimates, divergences and P(better than the first group)."""
    names = [group.name for group in comparison.groups]
    reference = names[0]
    level = f"{comparison.confidence:.0%} CI"
    estimate_headers = ["group", "seeds", *(f"{e} [{level}]" for e in ESTIMATORS)]
    divergence_headers = [
        "group",
        "diverged",
        f"divergence rate [{level}, Wilson]",
        f"P(better than first) [{level}]",
    ]
    diverged = comparison.table()["diverged"].tolist()
    estimates, divergence = [], []
    for group, count in zip(comparison.groups, diverged, strict=True):
        improvement = comparison.improvements.get((group.name, reference))
        estimates.append(
            [
                group.name,
                len(group.rows),
                *(_interval(comparison.estimates[group.name][e]) for e in ESTIMATORS),
            ]
        )
        divergence.append(
            [
                group.name,
                f"{count}/{len(group.rows)}",
                _interval(comparison.divergence[group.name]),
                _interval(improvement) if improvement else "(reference)",
            ]
        )
    return ComparisonSection(
        metric=comparison.metric,
        direction="higher" if comparison.higher_is_better else "lower",
        reps=comparison.reps,
        reference=reference,
        estimates=Table(
            "comparison", estimate_headers, estimates, numeric=range(1, len(estimate_headers))
        ),
        divergence=Table(
            "divergence",
            divergence_headers,
            divergence,
            numeric=range(1, len(divergence_headers)),
        ),
    )


def _sweep(url: str, study_name: str) -> Sweep | str:
    """The study's trials and Optuna figures, or why the study could not be read."""
    try:
        study = load_study(url, study_name)
        figures = sweep_figures(url, study_name)
    except SpecError as error:
        return mask(str(error))
    rows = [
        (
            trial.number,
            trial.state.name,
            ", ".join(f"{name}={_parameter(value)}" for name, value in params_of(trial).items()),
            _number(trial.value),
        )
        for trial in study.get_trials(deepcopy=False)
    ]
    definition = dict(study.user_attrs.get(DEFINITION) or {})
    distributions: dict[str, dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            encoded = json.loads(distribution_to_json(distribution))
            attributes = {k: v for k, v in encoded["attributes"].items() if v is not None}
            distributions.setdefault(name, {"type": encoded["name"], **attributes})
    if definition:
        named = definition.get("space") or list(distributions)
        definition["space"] = {name: distributions.get(name, "not sampled yet") for name in named}
    objective = objective_name(study)
    captions = {
        "importances": f"Parameter importances for the {objective}.",
        "slice": f"The {objective} of each trial against each swept parameter.",
        "parallel": f"Parallel coordinates: each trial's parameters and its {objective}.",
        "history": f"Optimisation history: the {objective} of each trial and the best so far.",
    }
    return Sweep(
        study=study_name,
        url=mask(url, url),
        objective=objective,
        direction=study.direction.name.lower(),
        definition=yaml.safe_dump(definition, sort_keys=False) if definition else "",
        trials=Table("trials", ("trial", "state", "parameters", "value"), rows, numeric=(0, 3)),
        figures=[_figure(figure, captions[name]) for name, figure in figures.items()],
        importances="importances" in figures,
        swept=tuple(definition.get("space") or distributions),
    )


def _parameter(value: Any) -> str:
    """A float as `_number` writes it; anything else as it prints."""
    return _number(value) if isinstance(value, float) else str(value)
