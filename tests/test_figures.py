"""Figures as a paper needs them: PNG at 200+ dpi and SVG, lines told apart without colour,
no pale series, error curves on the book's linear axis, bands that say what they are."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from rlharness.analysis import plots
from rlharness.analysis.compare import compare
from rlharness.analysis.curves import catalog_curves, plot_curves
from rlharness.analysis.figures import profile_figure
from rlharness.analysis.style import DPI, LINESTYLES, PALETTE, STYLE, series_style
from rlharness.catalog import Catalog
from rlharness.local_run import run_experiment
from rlharness.spec import parse_spec
from tests.helpers import BAIRD_W0

PALEST_LUMINANCE = 0.5
"""WCAG relative luminance above which a line on white is too faint (the old palette's greys
and light blue were 0.4-0.6; white is 1)."""
SEEDS = 3


def luminance(colour: str) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def drawn_styles(figure: plt.Figure) -> list[tuple[tuple[float, ...], str]]:
    """(colour, dash pattern) of every data line of every axis of ``figure``."""
    return [
        (to_rgb(line.get_color()), str(line.get_linestyle()) + str(line._dash_pattern))
        for axis in figure.axes
        for line in axis.get_lines()
        if not line.get_label().startswith("_")
    ]


def curves(variants: int, growth: float = 1.0) -> tuple[pd.DataFrame, dict[int, str]]:
    """Metrics of ``variants`` grid points x `SEEDS` seeds: errors growing by ``growth``."""
    steps = np.arange(0, 100, 10)
    rows = [
        {
            "variant": v,
            "seed": s,
            "step": t,
            "sqrt_ve": 2.0 + v + s * 0.1 + growth ** (t / 10),
            "sqrt_pbe": 1.0 + v + s * 0.1,
            "max_abs_value": 1.0 + v + t,
            "eval_return": float(v * t + s),
        }
        for v in range(variants)
        for s in range(SEEDS)
        for t in steps
    ]
    return pd.DataFrame(rows), {v: f"point {v}" for v in range(variants)}


def test_style_gives_every_series_a_distinct_colour_and_line_style() -> None:
    cycle = list(STYLE["axes.prop_cycle"])
    pairs = {(entry["color"], str(entry["linestyle"])) for entry in cycle}
    assert len(cycle) == len(PALETTE) == len(LINESTYLES) == len(pairs)
    assert len({str(style) for style in LINESTYLES}) == len(LINESTYLES), "styles alone differ"
    many = [series_style(index) for index in range(len(PALETTE) ** 2)]
    assert len({(s["color"], str(s["linestyle"])) for s in many}) == len(many)


def test_no_series_colour_is_pale() -> None:
    assert max(luminance(colour) for colour in PALETTE) < PALEST_LUMINANCE
    assert all(luminance(colour) < PALEST_LUMINANCE for colour in plots.OUTCOME_COLOURS.values())


@pytest.mark.parametrize("variants", [3, 9])
def test_multi_series_plots_draw_each_line_in_its_own_colour_and_style(variants: int) -> None:
    metrics, labels = curves(variants)
    for figure in (
        plots.metric_curves(metrics, labels, "eval_return", "return", "returns"),
        plots.max_abs_value_curves(metrics, labels, {}, "max"),
    ):
        styles = drawn_styles(figure)
        assert len(styles) == variants
        assert len(set(styles)) == variants, "two lines share a colour and a line style"
        assert len({style for _, style in styles}) == min(variants, len(LINESTYLES))
        plt.close(figure)


def test_bands_say_what_they_are_over_how_many_seeds() -> None:
    metrics, labels = curves(2)
    figure = plots.metric_curves(metrics, labels, "eval_return", "return", "returns")
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == [f"point {v} (median, IQR over {SEEDS} seeds)" for v in range(2)]
    plt.close(figure)


def test_error_curves_use_a_linear_axis_as_the_book_unless_they_explode() -> None:
    """Sutton & Barto draw sqrt(PBE) and sqrt(VE) (Fig. 11.5) on a linear axis: no symlog kink
    at 1. A run whose error grows by ten decades gets a log axis."""
    settled, labels = curves(2)
    figure = plots.error_curves(settled, labels, "settled")
    assert [axis.get_yscale() for axis in figure.axes] == ["linear", "linear"]
    plt.close(figure)
    exploding, labels = curves(2, growth=10.0)
    figure = plots.error_curves(exploding, labels, "exploding")
    assert [axis.get_yscale() for axis in figure.axes] == ["log", "log"]
    plt.close(figure)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-agent Baird run: semi-gradient TD and DP (Sutton & Barto Fig. 11.2), 3 seeds."""
    root = tmp_path_factory.mktemp("results")
    spec = parse_spec(
        {
            "name": "td_dp",
            "env": {"id": "triad/Baird-v0"},
            "agent": {"name": "semi_gradient_td", "alpha": 0.01, "initial_weights": BAIRD_W0},
            "run": {"steps": 200, "log_every": 20, "seeds": SEEDS},
            "grid": {"agent.name": ["semi_gradient_td", "semi_gradient_dp"]},
        }
    )
    run_directory, _ = run_experiment(spec, root)
    return run_directory


def test_a_published_run_writes_each_figure_as_png_at_200_dpi_and_svg(published: Path) -> None:
    pngs = sorted((published / "plots").glob("*.png"))
    assert {png.stem for png in pngs} == {
        "weights",
        "errors",
        "max_abs_value",
        "outcomes",
        "knob_effects",
    }
    listed = json.loads((published / "manifest.json").read_text())["files"]
    for png in pngs:
        dpi = Image.open(png).info["dpi"]
        assert min(dpi) >= DPI - 0.01 >= 199.99, f"{png.name} at {dpi} dpi"
        svg = png.with_suffix(".svg")
        assert svg.read_text().lstrip().startswith("<?xml"), svg.name
        assert f"plots/{png.name}" in listed and f"plots/{svg.name}" in listed
        assert png.stem in plots.CAPTIONS, "the report can caption it"


def test_the_profile_band_names_its_interval_and_seeds(published: Path) -> None:
    comparison = compare(Catalog(published.parent.parent), ["td_dp"], reps=50)
    figure = profile_figure(comparison)
    title = figure.axes[0].get_title()
    assert f"95% bootstrap CI over {SEEDS} seeds per group" in title
    assert len(set(drawn_styles(figure))) == 2
    plt.close(figure)


def test_curve_bands_name_their_estimator_interval_and_seeds(published: Path) -> None:
    catalog = Catalog(published.parent.parent)
    (key,) = catalog.entries
    figure = plot_curves(catalog_curves(catalog, [key], "sqrt_ve", reps=50))
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == [
        f"{label} (IQM, 95% bootstrap CI over {SEEDS} seeds)"
        for label in ("name=semi_gradient_td", "name=semi_gradient_dp")
    ]
    assert len(set(drawn_styles(figure))) == 2
    plt.close(figure)
