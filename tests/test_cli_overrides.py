"""``--set PATH=VALUE`` on run, sweep and validate, and ``sweep --seeds``, typed as a user would
(in-process through typer's runner: the same app as the console script, without its start-up)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import TINY_SPEC
from tests.helpers import invoke as cli
from tests.test_cli import assert_bad_input, run_dirs, snapshot, write_spec


@pytest.fixture
def tiny(tmp_path):
    return write_spec(tmp_path, TINY_SPEC, "tiny.yaml")


@pytest.mark.parametrize("command", ["run", "sweep", "validate"])
def test_wrong_type_names_the_field_and_exits_2(command, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    completed = cli(command, tiny, "--set", "run.steps=many")
    assert_bad_input(
        completed,
        f"error: experiment file {tiny} with --set run.steps='many':",
        "run.steps: Input should be a valid integer (got 'many')",
    )
    assert snapshot(tmp_path) == before, "nothing written"


def test_unknown_field_is_named_with_the_allowed_fields(tiny):
    completed = cli("validate", tiny, "--set", "agent.alfa=0.02")
    assert_bad_input(
        completed,
        "agent.alfa: unknown field; allowed fields here: alpha, beta, correction_regularisation, "
        "initial_weight_noise, initial_weights, name, projection_radius, ridge, update",
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("agent.alpha", "'agent.alpha': expected PATH=VALUE, a dotted field path"),
        ("=0.02", "'=0.02': expected PATH=VALUE"),
        ("agent..alpha=1", "'agent..alpha=1': expected PATH=VALUE"),
        ("agent.alpha=[0.1", "agent.alpha: value is not valid YAML"),
        ("run.steps.first=1", "run.steps.first: run.steps is 50 in the file, not a mapping"),
    ],
)
def test_malformed_set_is_refused_by_name(tiny, given, expected):
    completed = cli("validate", tiny, "--set", given)
    assert_bad_input(completed, "error: --set:", expected)


def test_the_same_field_twice_is_refused(tiny):
    completed = cli("validate", tiny, "--set", "agent.alpha=0.1", "--set", "agent.alpha=0.2")
    assert_bad_input(completed, "agent.alpha: given twice; set each field once")


def test_values_are_yaml_and_grid_keys_are_field_paths(tiny):
    """``[...]`` is a list, and ``grid.triad.features`` is the grid's ``triad.features`` entry."""
    completed = cli(
        "validate",
        tiny,
        "--set",
        "grid.triad.features=[tabular, env]",
        "--set",
        "grid.triad.off_policy=[true]",
        "--set",
        "run.seeds=4",
    )
    assert completed.returncode == 0, completed.stderr
    assert "valid (2 grid point(s) x 4 seed(s)" in completed.stdout


def test_set_values_land_in_config_and_provenance(tiny, tmp_path):
    """The run records the resolved experiment and, in its provenance, what was set."""
    root = tmp_path / "results"
    completed = cli(
        "run",
        tiny,
        "--set",
        "agent.alpha=0.02",
        "--set",
        "run.steps=20",
        "--set",
        "env.kwargs.gamma=0.9",
        "--seeds",
        "1",
        "--results",
        root,
        "--quiet",
    )
    assert completed.returncode == 0, completed.stderr
    [run_dir] = run_dirs(root)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["agent"]["alpha"] == 0.02
    assert config["run"]["steps"] == 20
    assert config["env"]["kwargs"] == {"gamma": 0.9}
    assert config["run"]["seeds"] == 1
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["overrides"] == {
        "agent.alpha": 0.02,
        "run.steps": 20,
        "env.kwargs.gamma": 0.9,
    }
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert sorted(metrics["step"].unique()) == [0, 10, 20], "the run used run.steps=20"


def test_sweep_takes_seeds_like_run(tiny, tmp_path):
    """``sweep --seeds`` is validated like ``run --seeds`` (before Ray starts)."""
    completed = cli("sweep", tiny, "--seeds", "1000001", "--results", tmp_path / "r", "--quiet")
    assert_bad_input(completed, "error: --seeds:", "run.seeds: Input should be less than or equal")
    assert not (tmp_path / "r").exists()
    shown = cli("sweep", "--help")
    assert {"--seeds", "--set", "--format"} <= set(shown.stdout.replace(",", " ").split())
