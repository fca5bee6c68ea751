"""The comparison notebooks run end to end on small real results, and the analysis they call.

A module fixture publishes short versions of the experiments in experiments/
(same names, fewer steps and seeds), a tiny SB3 DQN run and a tiny Optuna
sweep on the test session's Ray head (the deadly-triad study's notebook runs
on the session's `tiny_study`, a small fleet run on both MinAtar games); each
notebook in notebooks/ is then executed with nbclient in the venv's
``python3`` kernel, its inputs given by environment variables, as a user would
run it. notebooks/README.md's headless command runs as written, in a shell whose
PATH starts with the venv (an activated venv) and a home without Jupyter kernels.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jupytext
import nbclient
import numpy as np
import pandas as pd
import PIL.Image
import pytest
import yaml
from rliable import metrics as rliable_metrics

from rlharness.analysis.cells import value_key
from rlharness.analysis.chapter11 import CHECKS, reproductions
from rlharness.analysis.curves import catalog_curves, curve_bands
from rlharness.analysis.divergence import divergence_counts, divergence_heatmap
from rlharness.analysis.inputs import open_results
from rlharness.catalog import Catalog, UnverifiedRunWarning
from rlharness.errors import ResultsError
from rlharness.local_run import run_experiment
from rlharness.spec import parse_spec
from rlharness.sweep import run_sweep
from rlharness.sweep.search_space import plan_sweep
from tests.clusters import BIN, RayHead
from tests.conftest import REPO

NOTEBOOKS = REPO / "notebooks"
SHORT_RUNS: dict[str, dict[str, Any]] = {
    "triad_cube_baird": {"steps": 500, "log_every": 50, "seeds": 3},
    "baird_td_dp": {"steps": 1000, "log_every": 50, "seeds": 3},
    "baird_tdc": {"steps": 1000, "log_every": 50, "seeds": 3},
    "baird_emphatic_td": {"steps": 1000, "log_every": 2},
    "two_state_w2w": {"steps": 100, "log_every": 2},
    "tsitsiklis_van_roy": {"steps": 50},
    "random_walk_td": {"steps": 5000, "log_every": 500, "seeds": 3},
}
"""Run sections of the chapter-11 experiments, short but long enough for the book's claims."""
STATEMENTS = 15
"""Statements `reproductions` checks for SHORT_RUNS: 2 + 2 + 3 + 4 gammas + 1 + 2 + 1."""
SWEEP_TRIALS = 4
HEADLESS = "jupytext --to ipynb --execute"
"""How notebooks/README.md's command to run a notebook headless begins."""


def short_spec(name: str, run: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """experiments/<name>.yaml with its run section (and any other section) replaced."""
    data = yaml.safe_load((REPO / "experiments" / f"{name}.yaml").read_text())
    data["run"] = run
    data.update(sections)
    return data


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, ray_client: RayHead) -> Path:
    """A results root with every chapter-11 experiment, a DQN run and a 4-trial sweep."""
    root = tmp_path_factory.mktemp("notebook-results") / "results"
    for name, run in SHORT_RUNS.items():
        run_experiment(parse_spec(short_spec(name, run)), root)
    dqn = short_spec("deadly_triad_dqn", {"steps": 1000, "log_every": 250, "seeds": 2})
    dqn["agent"].update(learning_starts=250, target_update_period=250, eval_episodes=1)
    dqn["grid"] = {"agent.bootstrap_target": ["q_learning", "target_q"]}
    run_experiment(parse_spec(dqn), root)
    sweep = short_spec("baird_tdc_sweep", {"steps": 200, "log_every": 50, "seeds": 2})
    sweep["sweep"].update(n_trials=SWEEP_TRIALS, sampler="random", seeds_per_step=1)
    report = run_sweep(plan_sweep(parse_spec(sweep)), root, workers=2)
    assert report.finished == SWEEP_TRIALS
    return root


@pytest.fixture(scope="module")
def catalog(results: Path) -> Catalog:
    return Catalog(results)


def execute(name: str, directory: Path, environment: dict[str, str], monkeypatch) -> str:
    """Run notebooks/<name>.py in a fresh kernel; every text it printed or displayed."""
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": directory}}
    )
    client.execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def saved(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def run_on_results(name: str, results: Path, tmp_path: Path, monkeypatch) -> tuple[str, set[str]]:
    """Execute a notebook on ``results``; its printed text and the figure files it saved."""
    figures = tmp_path / "figures"
    environment = {"RLHARNESS_RESULTS": str(results), "RLHARNESS_FIGURES": str(figures)}
    text = execute(name, tmp_path, environment, monkeypatch)
    return text, saved(figures)


def both_formats(*names: str) -> set[str]:
    return {f"{name}.{extension}" for name in names for extension in ("png", "svg")}


def test_triad_overview_notebook(results: Path, tmp_path: Path, monkeypatch) -> None:
    text, files = run_on_results("triad_overview", results, tmp_path, monkeypatch)
    assert "latest run of triad_cube_baird" in text
    assert files == both_formats(
        "triad_cube",
        "divergence_features__n_step",
        "divergence_features__off_policy",
        "divergence_n_step__off_policy",
    )


def test_learning_curves_notebook_on_dqn(results: Path, tmp_path: Path, monkeypatch) -> None:
    text, files = run_on_results("learning_curves", results, tmp_path, monkeypatch)
    assert files == both_formats("eval_return", "probe_max_abs_q")
    for target in ("bootstrap_target=q_learning", "bootstrap_target=target_q"):
        assert text.count(target) >= 3, "the bands' table and both comparison tables"


def test_chapter11_notebook_agrees_with_the_book(
    results: Path, tmp_path: Path, monkeypatch
) -> None:
    text, files = run_on_results("chapter11_reproductions", results, tmp_path, monkeypatch)
    assert f"{STATEMENTS} of {STATEMENTS} statements agree" in text
    assert files == both_formats(
        "figure_11_2",
        "figure_11_5",
        "figure_11_6",
        "w_to_2w",
        "example_11_1",
        "triad_cube",
        "random_walk",
    )


def test_sweep_notebook(results: Path, tmp_path: Path, monkeypatch) -> None:
    text, files = run_on_results("sweep_analysis", results, tmp_path, monkeypatch)
    assert f"study baird_tdc_sweep: {SWEEP_TRIALS} trials" in text
    assert both_formats("slice", "parallel", "history") <= files


def test_deadly_triad_study_notebook(tiny_study: Path, tmp_path: Path, monkeypatch) -> None:
    text, files = run_on_results("deadly_triad_study", tiny_study, tmp_path, monkeypatch)
    assert "latest run of deadly_triad_minatar" in text
    for hypothesis in ("H1", "H2", "H3", "H4", "H5", "H6"):
        assert hypothesis in text, "the hypotheses' table"
    assert "agent.prioritized_replay.alpha" in text, "the per-knob table"
    assert "mean_final_overestimation" in text, "the per-cell table"
    assert files == both_formats("soft_divergence", "max_q_against_return", "overestimation")
    with PIL.Image.open(tmp_path / "figures" / "soft_divergence.png") as image:
        assert min(image.info["dpi"]) >= 199.5


def headless_command() -> str:
    """notebooks/README.md's command that runs a notebook headless, as written there."""
    lines = (NOTEBOOKS / "README.md").read_text().splitlines()
    (command,) = [line.split("#")[0].strip() for line in lines if line.startswith(HEADLESS)]
    return command


def test_the_readmes_headless_command_runs_as_written(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(NOTEBOOKS, checkout / "notebooks", ignore=shutil.ignore_patterns("*.ipynb"))
    cube = short_spec("triad_cube_baird", SHORT_RUNS["triad_cube_baird"])
    run_experiment(parse_spec(cube), checkout / "results")  # what `make run` leaves
    home = tmp_path / "home"
    home.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("JUPYTER", "RLHARNESS_", "PYTHON"))
    }
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    completed = subprocess.run(
        shlex.split(headless_command()),
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    notebook = jupytext.read(checkout / "notebooks" / "triad_overview.ipynb")
    assert notebook.metadata["kernelspec"]["name"] == "rlharness", "the venv's registered kernel"
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert any("latest run of triad_cube_baird" in output.get("text", "") for output in outputs)
    assert saved(checkout / "results" / "figures" / "triad_overview") == both_formats(
        "triad_cube",
        "divergence_features__n_step",
        "divergence_features__off_policy",
        "divergence_n_step__off_policy",
    )


def test_notebook_without_results_names_the_command(tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "results"
    empty.mkdir()
    with pytest.raises(nbclient.exceptions.CellExecutionError) as raised:
        execute("triad_overview", tmp_path, {"RLHARNESS_RESULTS": str(empty)}, monkeypatch)
    assert "ResultsError" in str(raised.value)
    assert f"rlharness run experiments/triad_cube_baird.yaml --results {empty}" in str(raised.value)


def test_curve_bands_drop_a_seed_after_it_stops_logging() -> None:
    rows = [(seed, step, float(seed + step)) for seed in range(4) for step in (0, 10, 20)]
    frame = pd.DataFrame(rows, columns=["seed", "step", "loss"]).assign(group="g")
    frame = frame[~((frame["seed"] == 3) & (frame["step"] == 20))]  # seed 3 hard-diverged
    bands = curve_bands(frame, "loss", estimator="mean", reps=200)
    assert bands["seeds"].tolist() == [4, 4, 3]
    assert bands["value"].tolist() == [1.5, 11.5, 21.0]


def test_catalog_curves_bands_contain_their_iqm(catalog: Catalog) -> None:
    run = str(catalog.latest_run("baird_td_dp"))
    curves = catalog_curves(catalog, [run], "max_abs_value", reps=300)
    bands = curves.bands
    assert list(dict.fromkeys(bands["group"])) == ["name=semi_gradient_td", "name=semi_gradient_dp"]
    assert (bands["low"] <= bands["value"]).all() and (bands["value"] <= bands["high"]).all()
    assert set(bands["seeds"]) == {3}
    assert curves.thresholds == ()  # Baird's rewards are all 0: no absolute bound applies
    metrics = catalog.metrics([run], ["max_abs_value"])
    last = metrics[(metrics["variant"] == 0) & (metrics["step"] == 1000)]["max_abs_value"]
    final = bands[(bands["group"] == "name=semi_gradient_td") & (bands["step"] == 1000)]
    assert final["value"].iloc[0] == pytest.approx(rliable_metrics.aggregate_iqm(last))


def test_divergence_counts_match_a_hand_count() -> None:
    outcomes = pd.DataFrame(
        {
            "alpha": [0.1, 0.1, 0.1, 0.1, 1.0, 1.0, "1", "1"],
            "n_step": [1, 1.0, "inf", "inf", 1, 1, "inf", "inf"],
            "outcome": [
                "soft-diverged",
                "converged",
                "converged",
                "converged",
                "hard-diverged",
                "soft-diverged-then-recovered",
                "stable",
                "soft-diverged",
            ],
        }
    )
    counts = divergence_counts(outcomes, "alpha", "n_step", {"n_step": ["inf", 1]})
    table = {
        (row.alpha, row.n_step): (row.diverged, row.seeds) for row in counts.itertuples(index=False)
    }
    assert table == {
        ("0.1", "inf"): (0, 2),
        ("0.1", "1"): (1, 2),
        ("1", "inf"): (1, 2),
        ("1", "1"): (2, 2),
    }
    assert list(counts["n_step"].cat.categories) == ["inf", "1"]
    figure = divergence_heatmap(counts, "alpha", "n_step", "test")
    notes = sorted(text.get_text() for text in figure.axes[0].texts)
    assert notes == ["0/2", "1/2", "1/2", "2/2"]
    assert value_key(True) == "True" and value_key(np.float64(32.0)) == "32" == value_key("32")


def test_chapter11_table_agrees_on_the_short_runs(catalog: Catalog) -> None:
    table = reproductions(catalog)
    assert set(table["experiment"]) == set(CHECKS)
    assert len(table) == STATEMENTS
    assert table["agrees"].all(), table.loc[~table["agrees"], ["experiment", "measured"]]


def doctored(catalog: Catalog, experiment: str, root: Path) -> Path:
    """A copy of the latest run of ``experiment`` alone under ``root``; returns its directory."""
    source = catalog.entries[str(catalog.latest_run(experiment))].path
    target = root / experiment / source.name
    shutil.copytree(source, target)
    return target


def test_chapter11_table_flags_doctored_runs(catalog: Catalog, tmp_path: Path) -> None:
    cube = doctored(catalog, "triad_cube_baird", tmp_path)
    outcomes = pd.read_parquet(cube / "outcomes.parquet")
    on_policy = (outcomes["triad.features"] == "env") & ~outcomes["triad.off_policy"]
    outcomes.loc[on_policy & (outcomes["triad.n_step"] == "1"), "outcome"] = "soft-diverged"
    outcomes.to_parquet(cube / "outcomes.parquet")
    w2w = doctored(catalog, "two_state_w2w", tmp_path)
    metrics = pd.read_parquet(w2w / "metrics.parquet")
    metrics.loc[metrics["step"] == metrics["step"].max(), "w_0"] *= 1.01
    metrics.to_parquet(w2w / "metrics.parquet")

    with (
        pytest.warns(UnverifiedRunWarning, match="excluded"),
        pytest.raises(ResultsError, match="2 excluded as they do not verify"),
    ):
        Catalog(tmp_path)  # the catalog refuses doctored files unless asked to include them
    with pytest.warns(UnverifiedRunWarning, match="included although it does not match"):
        doctored_catalog = Catalog(tmp_path, include_unverified=True)
    table = reproductions(doctored_catalog).set_index("source")
    assert not table.loc["Section 11.3 (the deadly triad)", "agrees"]
    assert not table.loc["Section 11.2 (after Figure 11.2)", "agrees"]
    assert not table.loc["Section 11.2 (the w -> 2w example)", "agrees"].any()


def test_open_results_names_the_commands(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"rlharness run experiments/baird_tdc\.yaml --results "):
        open_results(tmp_path, ["baird_tdc", "baird_td_dp"])


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    import matplotlib.pyplot as plt

    yield
    plt.close("all")
