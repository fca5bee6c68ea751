"""HTML reports and their figures, rendered in real headless Chromium.

A report must open offline: every figure decodes, nothing is fetched, no
script runs, and its tables hold what the results hold.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pytest
import yaml
from matplotlib.patches import Rectangle

from rlharness.analysis.compare import Comparison, compare
from rlharness.analysis.figures import interval_figure, profile_figure
from rlharness.analysis.report import build_report, default_report_path, write_report
from rlharness.analysis.sweep_figures import sweep_figures
from rlharness.catalog import Catalog
from rlharness.errors import ResultsError, SpecError
from rlharness.local_run import run_experiment
from rlharness.publish import publish_run
from rlharness.results import RunWriter
from rlharness.runner import TrialConfig, run_trial
from rlharness.spec import parse_spec
from rlharness.storage import default_url
from rlharness.sweep import run_sweep
from rlharness.sweep.search_space import plan_sweep
from tests.conftest import TINY_SPEC
from tests.helpers import BAIRD_W0

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPS = 200
PAGE_WIDTH = 800
"""A narrow window (pixels): every table must fit it without a horizontal scrollbar."""
HOSTILE = "<script>alert('x')</script> & <b>bold</b>"
CUBE_POINTS = 8
NEW_FIGURES = 2
"""The interval-estimate figure and the performance profile."""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short triad cube on Baird (8 grid points x 3 seeds), its description full of markup."""
    root = tmp_path_factory.mktemp("results")
    spec = parse_spec(
        {
            "name": "cube",
            "description": f"Short triad cube. {HOSTILE}",
            "env": {"id": "triad/Baird-v0"},
            "agent": {
                "name": "semi_gradient_dp",
                "alpha": 0.01,
                "initial_weights": BAIRD_W0,
                "initial_weight_noise": 0.1,
            },
            "run": {"steps": 500, "log_every": 25, "seeds": 3},
            "grid": {
                "triad.features": ["tabular", "env"],
                "triad.n_step": ["inf", 1],
                "triad.off_policy": [False, True],
            },
        }
    )
    run_experiment(spec, root)
    return root


@pytest.fixture(scope="module")
def cube(results: Path) -> Comparison:
    return compare(Catalog(results), ["cube"], reps=REPS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium; missing, it fails the test under CI and skips it elsewhere."""
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is not installed: reports are checked by rendering them in Chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def render(browser: Any, path: Path) -> dict[str, Any]:
    """Open ``path`` offline; what it logged, what it tried to fetch, and what it shows."""
    page = browser.new_page(viewport={"width": PAGE_WIDTH, "height": 600})
    errors: list[str] = []
    fetched: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )

    def intercept(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            fetched.append(url)
            route.abort()

    page.route("**/*", intercept)
    page.goto(path.resolve().as_uri(), wait_until="load")
    shown = {
        "errors": errors,
        "fetched": fetched,
        "image_widths": page.eval_on_selector_all(
            "img", "images => images.map(i => i.naturalWidth)"
        ),
        "captions": page.eval_on_selector_all("figcaption", "c => c.map(e => e.textContent)"),
        "scripts": page.locator("script").count(),
        "text": page.inner_text("body"),
        "spec": page.inner_text("#spec"),
        "definition": page.inner_text("#sweep-definition")
        if page.locator("#sweep-definition").count()
        else "",
        "page_overflows": page.evaluate(
            "document.documentElement.scrollWidth > document.documentElement.clientWidth"
        ),
        "wide_tables": page.eval_on_selector_all(
            "table",
            "tables => tables.filter(t => t.scrollWidth > t.clientWidth + 1 || t.getBounding"
            "ClientRect().right > document.documentElement.clientWidth).map(t => t.id)",
        ),
        "rows": {
            table: page.eval_on_selector_all(
                f"#{table} tbody tr",
                "rows => rows.map(r => Array.from(r.cells, c => c.textContent))",
            )
            for table in ("comparison", "divergence", "provenance", "trials")
        },
    }
    page.close()
    return shown


def test_run_report_renders_offline_with_every_figure_and_grid_point(
    results: Path, browser: Any
) -> None:
    catalog = Catalog(results)
    (entry,) = catalog.entries.values()
    path = default_report_path(catalog, "cube")
    assert path == results / "cube" / "reports" / f"{entry.path.name}.html"
    write_report(build_report(catalog, "cube", reps=REPS), path)

    shown = render(browser, path)
    assert shown["errors"] == []
    assert shown["fetched"] == [], "a report loads nothing from the network"
    assert shown["wide_tables"] == [] and not shown["page_overflows"], "tables fit the page"
    assert all(caption.endswith(".") and len(caption) > 40 for caption in shown["captions"]), (
        "every figure has a caption saying what it shows"
    )
    plots = sorted((entry.path / "plots").glob("*.png"))
    assert plots, "the run wrote its own plots"
    assert len(shown["image_widths"]) == len(plots) + NEW_FIGURES
    assert all(width > 0 for width in shown["image_widths"]), "every figure decodes"
    labels = [variant["label"] for variant in entry.summary["variants"]]
    assert [row[0] for row in shown["rows"]["comparison"]] == labels
    assert len(labels) == CUBE_POINTS
    assert [row[0] for row in shown["rows"]["divergence"]] == labels
    diverged = [row[1] for row in shown["rows"]["divergence"]]
    outcomes = catalog.outcomes([entry.key])
    assert diverged == [
        f"{rows['outcome'].isin(['soft-diverged', 'hard-diverged']).sum()}/3"
        for _, rows in outcomes.groupby("variant")
    ]
    assert shown["spec"].strip() == (entry.path / "config.yaml").read_text().strip()
    provenance = dict(row[:2] for row in shown["rows"]["provenance"])
    assert provenance["commit"] == entry.provenance["git"]["commit"]
    assert provenance["python"] == entry.provenance["python"]
    assert HOSTILE in shown["text"], "markup in the results shows as text"
    assert shown["scripts"] == 0


def test_study_report_includes_sweep_figures_and_trials(
    ray_client: Any, tmp_path: Path, browser: Any
) -> None:
    data = copy.deepcopy(TINY_SPEC)
    data.update(
        grid={},
        run={"steps": 50, "log_every": 10, "seeds": 2},
        sweep={
            "sampler": "random",
            "n_trials": 3,
            "objective": "final_sqrt_ve",
            "space": {"agent.alpha": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
        },
    )
    run_sweep(plan_sweep(parse_spec(data)), tmp_path, workers=1)
    catalog = Catalog(tmp_path)
    path = default_report_path(catalog, "sweep-tiny")
    assert path == tmp_path / "tiny" / "reports" / "sweep-tiny.html"
    write_report(build_report(catalog, "tiny/sweep-tiny", reps=REPS), path)

    shown = render(browser, path)
    assert shown["errors"] == [] and shown["fetched"] == []
    assert len(shown["image_widths"]) == NEW_FIGURES + 4
    assert all(width > 0 for width in shown["image_widths"])
    for caption in ("Parameter importances", "Optimisation history", "Parallel coordinates"):
        assert any(caption in text for text in shown["captions"])
    trials = shown["rows"]["trials"]
    assert [(row[0], row[1]) for row in trials] == [(str(n), "COMPLETE") for n in range(3)]
    assert all(row[2].startswith("agent.alpha=") for row in trials)
    assert len(shown["rows"]["comparison"]) == 3, "one group per trial"
    assert "Metric final_sqrt_ve (lower is better)" in shown["text"], "the study's objective"
    assert "alpha" not in yaml.safe_load(shown["spec"])["agent"], "no trial's sampled alpha"
    definition = yaml.safe_load(shown["definition"])
    assert definition["objective"] == "final_sqrt_ve"
    assert definition["space"]["agent.alpha"] == {
        "type": "FloatDistribution", "low": 1e-3, "high": 0.1, "log": True,
    }  # fmt: skip

    secret = "postgresql://analyst:hunter2@127.0.0.1:1/optuna"
    unreadable = build_report(catalog, "tiny/sweep-tiny", reps=REPS, storage=secret)
    assert "Optuna study unavailable" in unreadable
    assert "hunter2" not in unreadable and "analyst:***@" in unreadable


def test_interval_figure_has_one_labelled_bar_per_group(cube: Comparison) -> None:
    figure = interval_figure(cube)
    (axis,) = figure.axes
    names = [group.name for group in cube.groups]
    bars = [patch for patch in axis.patches if isinstance(patch, Rectangle)]
    assert len(bars) == len(axis.patches) == len(names) == CUBE_POINTS
    ticks = zip(axis.get_yticks(), axis.get_yticklabels(), strict=True)
    top_down = [label.get_text() for _, label in sorted(ticks, key=lambda tick: -tick[0])]
    assert top_down == names, "groups read top to bottom in comparison order"
    assert "IQM of final_sqrt_ve" in axis.get_xlabel() and "lower is better" in axis.get_xlabel()
    assert axis.get_ylabel() == "group"
    for bar, name in zip(bars, names, strict=True):
        estimate = cube.estimates[name]["iqm"]
        assert bar.get_x() == pytest.approx(estimate.low)
        assert bar.get_x() + bar.get_width() == pytest.approx(estimate.high)
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt)
        assert buffer.getvalue()
    plt.close(figure)


def test_profile_figure_draws_a_falling_fraction_per_group(cube: Comparison) -> None:
    figure = profile_figure(cube)
    (axis,) = figure.axes
    assert [line.get_label() for line in axis.lines] == [group.name for group in cube.groups]
    assert "final_sqrt_ve" in axis.get_xlabel()
    assert axis.get_ylabel().startswith("fraction of runs with score <")
    for line, group in zip(axis.lines, cube.groups, strict=True):
        fractions = np.asarray(line.get_ydata(), dtype=float)
        assert fractions[0] == 0.0, "no run scores below the least score"
        assert np.all(np.diff(fractions) >= 0)
        finite = np.isfinite(cube.scores[group.name]).mean()
        assert fractions[-1] == finite, "every finite run scores below the largest threshold"
    plt.close(figure)


def study_with(tmp_path: Path, values: list[tuple[float, float]]) -> str:
    """A stored study of ``x -> value`` trials; returns its storage URL."""
    url = default_url(tmp_path, "toy")
    (tmp_path / "toy").mkdir()
    study = optuna.create_study(study_name="toy", storage=url, direction="minimize")
    study.set_user_attr("rlharness", {"objective": "final_sqrt_ve", "aggregate": "iqm"})
    for x, value in values:
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x},
                distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
                value=value,
            )
        )
    return url


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ([(0.1, 3.0), (0.5, 1.0), (0.9, 2.0)], ["importances", "slice", "parallel", "history"]),
        ([(0.5, 1.0), (0.5, 2.0)], ["slice", "parallel", "history"]),
        ([(0.5, 1.0)], ["slice", "parallel", "history"]),
        ([], []),
    ],
    ids=["varying", "constant-parameter", "one-trial", "none-completed"],
)
def test_sweep_figures_omit_importances_unless_defined(
    tmp_path: Path, values: list[tuple[float, float]], names: list[str]
) -> None:
    style = dict(plt.rcParams)
    figures = sweep_figures(study_with(tmp_path, values), "toy")
    assert list(figures) == names
    assert dict(plt.rcParams) == style, "Optuna's restyling does not leak"
    for figure in figures.values():
        axis = figure.axes[0]
        assert axis.get_xlabel() or [t.get_text() for t in axis.get_xticklabels()]
        assert axis.get_ylabel()
        plt.close(figure)
    if "history" in names:
        assert figures["history"].axes[0].get_ylabel() == "iqm final_sqrt_ve"


def test_sweep_figures_name_the_studies_a_storage_holds(tmp_path: Path) -> None:
    url = study_with(tmp_path, [(0.5, 1.0)])
    with pytest.raises(SpecError, match="it holds: toy"):
        sweep_figures(url, "other")


def test_bad_targets_say_what_exists(results: Path, tmp_path: Path) -> None:
    catalog = Catalog(results)
    with pytest.raises(ResultsError, match=r"nothing in .* matches 'nope'; experiments: cube"):
        build_report(catalog, "nope", reps=REPS)
    with pytest.raises(ResultsError, match="metric 'final_eval_return' is not measured"):
        build_report(catalog, "cube", metric="final_eval_return", reps=REPS)
    with pytest.raises(ResultsError, match="does not exist"):
        build_report(Catalog(tmp_path / "missing"), "cube")


# --- user text with dollar signs: plain text in every figure and in the report ------------------

DOLLARS = "cost $5 and $x^2$"
BROKEN_MATH = "$^$ or $$"
"""Math text that matplotlib cannot even parse: drawn as math, every figure with it fails."""


def drawn_texts(figure: Any) -> list[str]:
    """Every text of ``figure`` as drawn (tick labels included); fails on any math text."""
    from matplotlib.text import Text

    figure.canvas.draw()
    shown = []
    for text in figure.findobj(Text):
        content = text.get_text()
        if not content or content.startswith(r"$\mathdefault{"):  # a log axis's own tick labels
            continue
        literal, math = text._preprocess_math(content)  # matplotlib's own math-text decision
        assert not math, f"{content!r} is drawn as math text"
        shown.append(literal)
    plt.close(figure)
    return shown


def test_dollar_signs_in_a_spec_stay_plain_text_in_figures_and_report(
    tmp_path: Path, browser: Any
) -> None:
    from tests.test_cli import cli, write_spec

    data = copy.deepcopy(TINY_SPEC)
    data.update(
        name="dollars",
        description=DOLLARS,
        grid={"triad.off_policy": [False, True], "description": [DOLLARS, BROKEN_MATH]},
    )
    out = tmp_path / "results"
    completed = cli("run", write_spec(tmp_path, data), "--results", out, "--quiet")
    assert completed.returncode == 0, completed.stderr
    assert "was not drawn" not in completed.stderr
    (run,) = (out / "dollars").iterdir()
    summary = (run / "summary.json").read_text()
    assert "plot_errors" not in summary
    assert len(list((run / "plots").glob("*.png"))) == 5, "every figure of the run was drawn"

    page = tmp_path / "dollars.html"
    reported = cli("report", "dollars", "--results", out, "--reps", "200", "--html", page)
    assert reported.returncode == 0, reported.stderr
    shown = render(browser, page)
    assert shown["errors"] == [] and all(width > 0 for width in shown["image_widths"])
    assert DOLLARS in shown["text"], "the description shows literally"
    groups = [row[0] for row in shown["rows"]["comparison"]]
    assert f"off_policy=False, description={BROKEN_MATH}" in " ".join(groups)


def test_every_figure_draws_labels_with_dollar_signs_literally(tmp_path: Path) -> None:
    from rlharness.analysis import plots
    from rlharness.analysis.curves import catalog_curves, plot_curves
    from rlharness.analysis.divergence import divergence_counts, divergence_heatmap
    from rlharness.analysis.knobs import knob_effects

    data = copy.deepcopy(TINY_SPEC)
    data.update(name="dollars", grid={"description": [DOLLARS, BROKEN_MATH]})
    run_experiment(parse_spec(data), tmp_path)
    catalog = Catalog(tmp_path)
    (key,) = catalog.entries
    outcomes = catalog.outcomes([key])
    metrics = catalog.metrics([key])
    labels = {0: DOLLARS, 1: BROKEN_MATH}
    effects = knob_effects(outcomes, ["description"])
    comparison = compare(catalog, [key], reps=REPS)
    figures = {
        "weights": plots.weight_components(metrics, labels, BROKEN_MATH),
        "errors": plots.error_curves(metrics, labels, BROKEN_MATH),
        "max_abs_value": plots.max_abs_value_curves(metrics, labels, {0: 5.0}, BROKEN_MATH),
        "metric": plots.metric_curves(metrics, labels, "sqrt_ve", DOLLARS, BROKEN_MATH),
        "outcomes": plots.outcome_fractions(outcomes, labels, BROKEN_MATH),
        "knob_effects": plots.knob_effects(effects, BROKEN_MATH),
        "intervals": interval_figure(comparison),
        "profile": profile_figure(comparison),
        "curves": plot_curves(catalog_curves(catalog, [key], "sqrt_ve", reps=REPS)),
        "heatmap": divergence_heatmap(
            divergence_counts(outcomes, "description", "seed"), "description", "seed", DOLLARS
        ),
    }
    for name, figure in figures.items():
        texts = " | ".join(drawn_texts(figure))
        assert DOLLARS in texts or BROKEN_MATH in texts, (name, texts)


def test_sweep_figures_show_dollar_signs_in_params_and_choices_literally(tmp_path: Path) -> None:
    url = default_url(tmp_path, "toy")
    (tmp_path / "toy").mkdir()
    study = optuna.create_study(study_name="toy", storage=url, direction="minimize")
    choices = ["cost $5", "$x^2$", "$^$ or $$"]
    distributions = {
        "env.kwargs.$label": optuna.distributions.CategoricalDistribution(choices),
        "agent.alpha": optuna.distributions.FloatDistribution(0.001, 0.1),
    }
    for number, choice in enumerate(choices * 2):
        study.add_trial(
            optuna.trial.create_trial(
                params={"env.kwargs.$label": choice, "agent.alpha": 0.001 + 0.01 * number},
                distributions=distributions,
                value=float(number % 3),
            )
        )
    figures = sweep_figures(url, "toy")
    assert list(figures) == ["importances", "slice", "parallel", "history"]
    for name in ("importances", "slice", "parallel"):
        texts = " | ".join(drawn_texts(figures.pop(name)))
        assert "env.kwargs.$label" in texts, (name, texts)
        if name != "importances":
            assert all(choice in texts for choice in choices), (name, texts)
    drawn_texts(figures.pop("history"))


def test_study_report_compares_the_objective_and_shows_the_sweep_definition(
    tmp_path: Path, browser: Any
) -> None:
    """Two published trials of a study minimising sqrt(PBE): the report compares sqrt(PBE), not
    the default sqrt(VE), and shows the sweep's space rather than trial 0's sampled alpha."""
    sampled = [0.0012345678, 0.054321]
    space = {"agent.alpha": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}}
    for number, alpha in enumerate(sampled):
        data = copy.deepcopy(TINY_SPEC)
        data["agent"]["alpha"] = alpha
        data.update(
            grid={},
            run={"steps": 50, "log_every": 10, "seeds": 2},
            sweep={"n_trials": 2, "objective": "final_sqrt_pbe", "space": space},
        )
        spec = parse_spec(data)
        writer = RunWriter(tmp_path, spec, run_id=f"trial-{number}", group="sweep-toy")
        trial = {"study": "toy", "trial": number, "objective": "final_sqrt_pbe"}
        result = run_trial(TrialConfig(spec, (0, 1)))
        publish_run(writer, spec, [result], {}, plots=False, extra={"sweep": trial})
    path = tmp_path / "report.html"
    write_report(build_report(Catalog(tmp_path), "tiny/sweep-toy", reps=REPS), path)

    shown = render(browser, path)
    assert shown["errors"] == [] and shown["fetched"] == []
    assert "Metric final_sqrt_pbe (lower is better)" in shown["text"]
    assert all("final_sqrt_pbe" in caption for caption in shown["captions"])
    assert len(shown["rows"]["comparison"]) == len(sampled), "one group per trial"
    definition = yaml.safe_load(shown["spec"])
    assert definition["sweep"]["objective"] == "final_sqrt_pbe"
    (alpha,) = definition["sweep"]["space"].values()
    assert alpha.items() >= space["agent.alpha"].items() and None not in alpha.values()
    assert "alpha" not in definition["agent"], "a sampled value is no setting of the study"
    assert definition["agent"]["initial_weights"] == BAIRD_W0
    assert shown["wide_tables"] == [] and not shown["page_overflows"]
