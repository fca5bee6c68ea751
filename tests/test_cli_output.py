"""Readable output anywhere: piped at 80 columns nothing is cut, and --format on run and status.

The pipe is real (the console script with COLUMNS=80); the formats run in-process.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess

import pandas as pd
import pytest

from tests.conftest import TINY_SPEC
from tests.helpers import invoke
from tests.test_cli import RLHARNESS, cli, run_dirs, write_spec

LONG_GRID = {"triad.off_policy": [False, True], "agent.initial_weight_noise": [0.0, 0.125]}


@pytest.fixture(scope="module")
def grid_spec(tmp_path_factory):
    """The tiny spec with a grid whose labels are wider than an 80-column table cell."""
    spec = {**TINY_SPEC, "grid": LONG_GRID, "run": {**TINY_SPEC["run"], "seeds": 1, "steps": 20}}
    return write_spec(tmp_path_factory.mktemp("grid"), spec, "grid.yaml")


@pytest.fixture(scope="module")
def piped_run(grid_spec):
    """One run printed through a pipe with COLUMNS=80, and its summary."""
    root = grid_spec.parent / "results"
    completed = cli("run", grid_spec, "--results", root)
    assert completed.returncode == 0, completed.stderr
    [run_dir] = run_dirs(root, "tiny")
    summary = json.loads((run_dir / "summary.json").read_text())
    return completed, summary, root


def test_piped_run_shows_every_grid_point_label_whole(piped_run):
    completed, summary, _ = piped_run
    labels = [variant["label"] for variant in summary["variants"]]
    assert len(labels) == 4
    assert all(len(label) > 40 for label in labels), "wider than a cell at 80 columns"
    lines = completed.stdout.splitlines()
    for label in labels:
        assert sum(label in line for line in lines) == 1, (label, completed.stdout)
    assert "…" not in completed.stdout, "no cell is cut short"
    for row in summary["knob_effects"]:
        assert any(row["knob"] in line and str(row["value"]) in line for line in lines)


@pytest.mark.parametrize("output", ["json", "csv"])
def test_run_format_puts_the_data_alone_on_stdout(output, tmp_path):
    spec = write_spec(tmp_path, {**TINY_SPEC, "run": {**TINY_SPEC["run"], "steps": 20}})
    root = tmp_path / "results"
    completed = invoke("run", spec, "--results", root, "--seeds", "1", "--format", output)
    assert completed.returncode == 0, completed.stderr
    [run_dir] = run_dirs(root, "tiny")
    summary = json.loads((run_dir / "summary.json").read_text())
    if output == "json":
        assert json.loads(completed.stdout) == summary
    else:
        frame = pd.read_csv(io.StringIO(completed.stdout))
        assert frame["grid point"].tolist() == ["off_policy=False", "off_policy=True"]
        assert frame["seeds"].tolist() == [1, 1]
        assert frame["converged"].tolist() == [
            v["outcome_counts"]["converged"] for v in summary["variants"]
        ]
    assert f"results: {run_dir}" in completed.stderr


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
    """A study of two trials in RESULTS/tiny/optuna.db, as ``status tiny`` finds it."""
    import optuna

    from rlharness.storage import default_url

    root = tmp_path_factory.mktemp("status") / "results"
    (root / "tiny").mkdir(parents=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="tiny", storage=default_url(root, "tiny"))
    study.enqueue_trial({"agent.target_update_period": 100, "agent.initial_weight_noise": 0.5})
    study.enqueue_trial({"agent.target_update_period": 7, "agent.initial_weight_noise": 0.25})
    study.optimize(
        lambda trial: (
            trial.suggest_int("agent.target_update_period", 1, 1000)
            + trial.suggest_float("agent.initial_weight_noise", 0.0, 1.0)
        ),
        n_trials=2,
    )
    return root


def test_status_json_parses(study_root):
    completed = invoke("status", "tiny", "--results", study_root, "--format", "json")
    assert completed.returncode == 0, completed.stderr
    records = json.loads(completed.stdout)
    assert [(r["#"], r["state"], r["value"]) for r in records] == [
        (0, "COMPLETE", 100.5),
        (1, "COMPLETE", 7.25),
    ]
    assert [r["agent.target_update_period"] for r in records] == [100, 7]
    assert "study tiny in" in completed.stderr, "the headline goes to stderr"


def test_piped_status_shows_states_and_param_paths_whole(study_root):
    completed = cli("status", "tiny", "--results", study_root)  # the console script, piped
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    header = next(line for line in lines if "state" in line)
    assert "agent.target_update_period" in header
    assert "agent.initial_weight_noise" in header
    assert sum("COMPLETE" in line for line in lines) == 3, "the headline and two rows"


def test_agents_lists_the_deep_agents_knobs():
    completed = invoke("agents")
    assert completed.returncode == 0, completed.stderr
    rows = [line.replace("│", "|").split("|") for line in completed.stdout.splitlines()]
    cells = {row[1].strip(): [c.strip() for c in row[2:4]] for row in rows if len(row) > 4}
    assert cells["agent.target_update_period"] == ["500", "int >= 1"]
    assert cells["agent.bootstrap_target"] == [
        "target_q",
        "q_learning, target_q, double_q, inverse_double_q",
    ]
    assert cells["agent.q_lambda"] == ["0.65", "float >= 0, <= 1"]
    assert cells["agent.reward_clip"] == ["1.0", "float > 0, null"]
    assert "agent.name: pqn (PQN (Gallici et al., ICLR 2025" in completed.stdout


def test_envs_descriptions_have_no_markup():
    completed = invoke("envs")
    assert completed.returncode == 0, completed.stderr
    assert "`" not in completed.stdout
    assert "The prediction form (state values) of Baird's counterexample." in completed.stdout


def test_status_markdown_is_a_table_of_every_trial(study_root):
    completed = invoke("status", "tiny", "--results", study_root, "--format", "markdown")
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    header = "| # | state | agent.target_update_period | agent.initial_weight_noise | value |"
    assert header in completed.stdout
    assert any(line.startswith("| 1 | COMPLETE | 7 | 0.25 | 7.25 |") for line in lines)


@pytest.mark.parametrize(("columns", "layout"), [(80, "rows"), (200, "table")])
def test_a_terminal_gets_a_table_that_fits_or_one_line_per_cell(study_root, columns, layout):
    """On an 80-column terminal the trials table (about 100 columns) becomes ``column: value``
    lines, nothing folded or cut; on a 200-column one it is the table."""
    env = {**os.environ, "COLUMNS": str(columns), "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    completed = subprocess.run(
        [str(RLHARNESS), "status", "tiny", "--results", str(study_root)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr
    text = re.sub(r"\x1b\[[0-9;]*m", "", completed.stdout)
    headline, *lines = text.splitlines()  # one line however long, as every message
    assert headline.startswith("study tiny in sqlite:///")
    assert all(len(line) <= columns for line in lines), text
    if layout == "rows":
        assert "- #: 0" in lines and "- #: 1" in lines
        assert "  agent.target_update_period: 100" in lines
        assert lines.count("  state: COMPLETE") == 2
    else:
        assert sum("│ COMPLETE │" in line for line in lines) == 2, text
