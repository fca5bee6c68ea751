"""The ``rlharness`` console script, run for real: exit codes, stdout, stderr, results on disk."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import rlharness_envs
from rlharness.agents.linear import RULES
from rlharness.spec import load_spec, parse_spec
from tests.conftest import REPO, TINY_SPEC

RLHARNESS = Path(sys.executable).parent / "rlharness"
BAD_INPUT = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_FILES = {
    "config.yaml",
    "provenance.json",
    "metrics.parquet",
    "outcomes.parquet",
    "summary.json",
    "manifest.json",
    "knob_effects.csv",
}
LOGGED_STEPS = [0, 10, 20, 30, 40, 50]


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script; a narrow terminal must not break messages."""
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [str(RLHARNESS), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def write_spec(directory: Path, data: Any, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for directories)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def run_dirs(root: Path, name: str = "tiny") -> list[Path]:
    experiment = root / name
    return sorted(experiment.iterdir()) if experiment.exists() else []


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_bad_input(completed: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2, every expected fragment on stderr, and no traceback anywhere."""
    output = completed.stdout + completed.stderr
    assert completed.returncode == BAD_INPUT, output
    assert "Traceback" not in output
    lines = completed.stderr.splitlines()
    for fragment in expected:
        # on one line: messages are not wrapped, even on an 80-column terminal
        assert any(fragment in line for line in lines), (fragment, completed.stderr)


def mutated(**changes: Any) -> dict[str, Any]:
    """The tiny spec with ``section.field`` (or top-level) values replaced or added."""
    data = copy.deepcopy(TINY_SPEC)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = data
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    return data


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> dict[str, Any]:
    """One good run of the tiny spec into a fresh results root, with what it printed."""
    base = tmp_path_factory.mktemp("first_run")
    spec_path = write_spec(base, TINY_SPEC, "tiny.yaml")
    root = base / "results"
    completed = cli("run", spec_path, "--results", root)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return {
        "spec_path": spec_path,
        "root": root,
        "completed": completed,
        "dirs": run_dirs(root),
        "tree": snapshot(root),
    }


# --- bad input ---------------------------------------------------------------------------------

BAD_SPECS: dict[str, tuple[Any, list[str]]] = {
    "malformed_yaml": (
        "name: tiny\nenv:\n  id: [triad/Baird-v0\nagent: {name: semi_gradient_td}\n",
        ["is not valid YAML at line 4, column 6: expected ',' or ']'"],
    ),
    "not_utf8": (b"name: tiny\xff\xfe\n", ["is not valid YAML: not UTF-8 text"]),
    "unknown_env": (
        mutated(env__id="triad/Bard-v0"),
        [
            "env.id: unknown environment 'triad/Bard-v0'; available: triad/Baird-v0, "
            "triad/BairdControl-v0, triad/Kolter-v0, triad/RandomWalk-v0, "
            "triad/TsitsiklisVanRoy-v0, triad/TwoState-v0 (dqn also takes any registered "
            "Gymnasium id, e.g. CartPole-v1) "
            "(in grid point triad.off_policy=True)"
        ],
    ),
    "unknown_env_kwarg": (
        mutated(env__kwargs={"gama": 0.9}),
        ["env.kwargs.gama: not an argument of triad/Baird-v0; allowed: gamma"],
    ),
    "unknown_agent": (
        mutated(agent__name="sarsa"),
        [
            "agent.name: unknown value 'sarsa'; allowed: 'semi_gradient_td', 'semi_gradient_dp', "
            "'q_learning', 'tdc', 'tdrc', 'gtd2', 'emphatic_td', 'least_squares_dp', 'dqn'"
        ],
    ),
    "unknown_field": (
        mutated(run__n_seeds=3),
        [
            "run.n_seeds: unknown field; allowed fields here: checkpoint_every, device, "
            "first_seed, log_every, seeds, steps, tensorboard"
        ],
    ),
    "steps_wrong_type": (
        mutated(run__steps="many"),
        ["run.steps: Input should be a valid integer", "(got 'many')"],
    ),
    "alpha_negative": (
        mutated(agent__alpha=-0.01),
        ["agent.alpha: Input should be greater than 0 (got -0.01)"],
    ),
    "seeds_negative": (
        mutated(run__seeds=-1),
        ["run.seeds: Input should be greater than or equal to 1 (got -1)"],
    ),
    "sampled_monte_carlo_on_baird": (
        mutated(triad__n_step="inf", grid={}),
        ["triad.n_step: a sampled Monte Carlo target ('inf') needs an episodic env"],
    ),
    "tdc_without_beta": (
        mutated(agent__name="tdc", grid={}),
        ["agent.beta: tdc needs a secondary step size beta > 0"],
    ),
    "initial_weights_wrong_length": (
        mutated(agent__initial_weights=[1.0, 1.0, 1.0], grid={}),
        ["agent.initial_weights: needs 8 values (the env's feature dimension), got 3"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_exits_2_names_field_and_writes_nothing(case, first_run, tmp_path):
    data, expected = BAD_SPECS[case]
    spec_path = tmp_path / "spec.yaml"
    if isinstance(data, bytes):
        spec_path.write_bytes(data)
    else:
        write_spec(tmp_path, data)
    root = first_run["root"]
    before = snapshot(root)
    assert before == first_run["tree"]
    completed = cli("run", spec_path, "--results", root)
    assert_bad_input(completed, f"error: experiment file {spec_path}:", *expected)
    assert snapshot(root) == before


def test_validate_reports_every_problem_one_line_each(tmp_path):
    spec_path = write_spec(tmp_path, mutated(agent__alpha=-1, run__seeds=0, colour="red"))
    completed = cli("validate", spec_path)
    assert_bad_input(
        completed,
        "agent.alpha: Input should be greater than 0",
        "run.seeds: Input should be greater than or equal to 1",
        "colour: unknown field; allowed fields here: agent, description, diagnostics, env, grid, "
        "name, run, sweep, triad",
    )
    problems = [line for line in completed.stderr.splitlines() if line.startswith("  - ")]
    assert sorted(line[4:].split(":")[0] for line in problems) == [
        "agent.alpha",
        "colour",
        "run.seeds",
    ]


def test_missing_file_with_markup_like_name(first_run, tmp_path):
    before = snapshot(first_run["root"])
    absent = tmp_path / "absent[/b][red].yaml"
    completed = cli("run", absent, "--results", first_run["root"])
    assert_bad_input(completed, f"error: experiment file {absent}:", "cannot be read")
    assert snapshot(first_run["root"]) == before


def test_seeds_option_zero(first_run):
    before = snapshot(first_run["root"])
    completed = cli("run", first_run["spec_path"], "--seeds", "0", "--results", first_run["root"])
    assert_bad_input(completed, "Invalid value for '--seeds'")
    assert snapshot(first_run["root"]) == before


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [
        ("1000001", "error: --seeds:"),
        (str(2**64), "run.seeds: Input should be less than or equal to"),
    ],
)
def test_seeds_option_is_validated_like_the_file(first_run, seeds, expected):
    before = snapshot(first_run["root"])
    completed = cli("run", first_run["spec_path"], "--seeds", seeds, "--results", first_run["root"])
    assert_bad_input(completed, expected)
    assert snapshot(first_run["root"]) == before


@pytest.mark.parametrize("option", ["--results", "--out"])
def test_results_root_that_is_a_file_is_refused_before_running(option, first_run, tmp_path):
    """The message names the option as typed: ``--out`` is the old name of ``--results``."""
    not_a_directory = tmp_path / "results-file"
    not_a_directory.write_text("keep me")
    completed = cli("run", first_run["spec_path"], option, not_a_directory)
    assert_bad_input(completed, f"error: {option}:", "Not a directory")
    assert not_a_directory.read_text() == "keep me"


# --- a good run --------------------------------------------------------------------------------


def test_run_writes_one_complete_run_dir(first_run):
    root, completed = first_run["root"], first_run["completed"]
    assert "Traceback" not in completed.stderr
    [run_dir] = first_run["dirs"]
    assert not run_dir.name.startswith(".")
    assert [p.name for p in (root / "tiny").iterdir()] == [run_dir.name], "no .partial left"
    assert not list(root.rglob("*.partial")) and not list(root.rglob("*.tmp"))
    assert f"results: {run_dir}" in completed.stdout.splitlines()
    # 2 grid points x 3 seeds x 6 logged steps
    assert "36/36" in completed.stderr, "the progress bar counts logged steps"

    files = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    plots = {f for f in files if f.startswith("plots/")}
    streams = {f.rsplit("/", 1)[0] for f in files if f.startswith("tensorboard/")}
    assert streams == {
        f"tensorboard/off_policy={off_policy}/seed{seed}"
        for off_policy in (False, True)
        for seed in range(3)
    }
    events = {f for f in files if f.startswith("tensorboard/")}
    assert all(f.rsplit("/", 1)[1].startswith("events.out.tfevents.") for f in events)
    assert files == RUN_FILES | plots | events
    pngs = {plot for plot in plots if plot.endswith(".png")}
    assert len(pngs) >= 4
    assert plots == pngs | {plot.removesuffix(".png") + ".svg" for plot in pngs}
    for plot in pngs:
        assert (run_dir / plot).read_bytes().startswith(PNG_SIGNATURE)
        assert (run_dir / plot).stat().st_size > 1000


def test_manifest_matches_the_files(first_run):
    [run_dir] = first_run["dirs"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["run_id"] == run_dir.name
    on_disk = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256(run_dir / name), name
        assert entry["bytes"] == (run_dir / name).stat().st_size


def test_config_provenance_and_summary(first_run):
    [run_dir] = first_run["dirs"]
    config = load_spec(run_dir / "config.yaml")
    assert config == parse_spec(TINY_SPEC), "config.yaml is the resolved, re-runnable spec"

    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["packages"]["numpy"]
    assert provenance["packages"]["rlharness"]
    assert set(provenance["git"]) >= {"commit", "dirty"}
    assert provenance["command"][:2] == ["rlharness", "run"]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["experiment"] == "tiny"
    assert summary["run_id"] == run_dir.name
    assert [v["settings"] for v in summary["variants"]] == [
        {"triad.off_policy": False},
        {"triad.off_policy": True},
    ]
    for variant in summary["variants"]:
        assert variant["seeds"] == 3
        assert sum(variant["outcome_counts"].values()) == 3
        assert len(variant["per_seed"]) == 3


def test_metrics_one_row_per_point_seed_and_logged_step(first_run):
    [run_dir] = first_run["dirs"]
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert len(metrics) == 2 * 3 * len(LOGGED_STEPS)
    assert {"variant", "triad.off_policy", "seed", "step", "sqrt_ve", "w_0", "w_7"} <= set(
        metrics.columns
    )
    for (variant, seed), rows in metrics.groupby(["variant", "seed"]):
        assert sorted(rows["step"]) == LOGGED_STEPS, (variant, seed)
    assert sorted(metrics["seed"].unique()) == [0, 1, 2]
    assert metrics.groupby("variant")["triad.off_policy"].first().tolist() == [False, True]
    start = metrics[metrics["step"] == 0]
    assert (start[[f"w_{i}" for i in range(8)]].to_numpy() == [1, 1, 1, 1, 1, 1, 10, 1]).all()

    outcomes = pd.read_parquet(run_dir / "outcomes.parquet")
    assert len(outcomes) == 2 * 3
    assert set(outcomes["outcome"]) <= {"converged", "soft-diverged", "hard-diverged"}


def test_second_run_gets_its_own_dir_and_leaves_the_first_alone(first_run, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(first_run["root"], root)
    before = snapshot(root)
    completed = cli("run", first_run["spec_path"], "--results", root, "--quiet")
    assert completed.returncode == 0, completed.stderr
    dirs = run_dirs(root)
    assert len(dirs) == 2
    [old] = first_run["dirs"]
    [new] = [d for d in dirs if d.name != old.name]
    assert {k: v for k, v in snapshot(root).items() if not k.startswith(f"tiny/{new.name}")} == (
        before
    )
    assert (new / "manifest.json").exists()
    assert json.loads((new / "manifest.json").read_text())["run_id"] == new.name


def test_seeds_option_overrides_run_seeds(first_run, tmp_path):
    root = tmp_path / "results"
    completed = cli("run", first_run["spec_path"], "--seeds", "2", "--results", root, "--quiet")
    assert completed.returncode == 0, completed.stderr
    [run_dir] = run_dirs(root)
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert len(metrics) == 2 * 2 * len(LOGGED_STEPS)
    assert sorted(metrics["seed"].unique()) == [0, 1]
    assert len(pd.read_parquet(run_dir / "outcomes.parquet")) == 2 * 2
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["run"]["seeds"] == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [v["seeds"] for v in summary["variants"]] == [2, 2]


# --- the other commands ------------------------------------------------------------------------


def test_validate_good_file():
    path = REPO / "experiments" / "triad_cube_baird.yaml"
    completed = cli("validate", path)
    assert completed.returncode == 0, completed.stderr
    assert "valid (8 grid point(s) x 10 seed(s)" in completed.stdout


def test_envs_lists_triad_ids():
    completed = cli("envs")
    assert completed.returncode == 0, completed.stderr
    for env_id in rlharness_envs.TRIAD_ENVS:
        assert env_id in completed.stdout, "ids are listed whole"


def test_agents_lists_rule_names():
    completed = cli("agents")
    assert completed.returncode == 0, completed.stderr
    for name in (*RULES, "dqn", "pqn"):
        assert name in completed.stdout, "names are listed whole"


def test_help_is_fast_and_imports_lightly():
    heavy = ["torch", "ray", "gymnasium", "numba", "pandas", "matplotlib"]
    probe = f"import sys, rlharness.cli\nprint(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"

    completed = cli("--help")
    assert completed.returncode == 0, completed.stderr
    for command in ("run", "validate", "envs", "agents"):
        assert command in completed.stdout


# --- one name per concept across commands; the old names still work ---------------------------

DOCUMENTED_OPTIONS = {
    "run": ["--results", "--seeds", "--quiet", "--set", "--format"],
    "sweep": ["--results", "--storage", "--study", "--quiet", "--seeds", "--set", "--format"],
    "status": ["--results", "--storage", "--study", "--format"],
    "validate": ["--set"],
    "catalog": ["--results", "--format", "--include-unverified"],
    "compare": ["--results", "--metric", "--reps", "--bootstrap-seed", "--format"],
    "report": ["--results", "--metric", "--reps", "--storage", "--html"],
    "verify": ["--results", "--remove-partial"],
}
CONFLICTS = {
    "run": (["run", "tiny.yaml", "--results", "{d}", "--out", "{d}"], "--results", "--out"),
    "sweep": (["sweep", "tiny.yaml", "--results", "{d}", "--out", "{d}"], "--results", "--out"),
    "status": (["status", "tiny", "--results", "{d}", "--out", "{d}"], "--results", "--out"),
    "compare": (["compare", "--bootstrap-seed", "1", "--seed", "1"], "--bootstrap-seed", "--seed"),
    "report": (["report", "tiny", "--html", "{d}.html", "--out", "{d}.html"], "--html", "--out"),
    "verify": (["verify", "{d}", "--results", "{d}"], "--results", "the RESULTS argument"),
}


@pytest.mark.parametrize("command", list(DOCUMENTED_OPTIONS))
def test_help_shows_the_documented_names_only(command):
    completed = cli(command, "--help")
    assert completed.returncode == 0, completed.stderr
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", completed.stdout))
    assert set(DOCUMENTED_OPTIONS[command]) <= shown
    assert {"--out", "--seed"}.isdisjoint(shown), "old names are hidden aliases"
    if command == "verify":
        assert "Arguments" not in completed.stdout, "the results root is --results"


@pytest.mark.parametrize("command", list(CONFLICTS))
def test_old_name_and_documented_name_together_are_refused(command, tmp_path):
    args, new, old = CONFLICTS[command]
    completed = cli(*(arg.format(d=tmp_path / "elsewhere") for arg in args), cwd=tmp_path)
    assert_bad_input(completed, f"error: {new}:", f"given twice: as {new} and as {old}")
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_run_takes_out_as_the_old_name_of_results(first_run, tmp_path):
    root = tmp_path / "old-name"
    completed = cli("run", first_run["spec_path"], "--out", root, "--quiet")
    assert completed.returncode == 0, completed.stderr
    [run_dir] = run_dirs(root)
    assert f"results: {run_dir}" in completed.stdout.splitlines()
    assert {p.name for p in run_dir.iterdir() if p.is_file()} >= RUN_FILES
    [documented] = first_run["dirs"]
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    assert metrics.equals(pd.read_parquet(documented / "metrics.parquet")), "the same run"


@pytest.mark.parametrize("option", ["--results", "--out"])
def test_sweep_results_root_that_is_a_file_is_refused_before_ray(option, first_run, tmp_path):
    not_a_directory = tmp_path / "results-file"
    not_a_directory.write_text("keep me")
    completed = cli("sweep", first_run["spec_path"], option, not_a_directory, "--quiet")
    assert_bad_input(completed, f"error: {option}:", "is not a writable directory")
    assert not_a_directory.read_text() == "keep me"


def test_status_takes_results_or_out_and_study(tmp_path):
    """A study named after its experiment and another (``sweep --study other``), both in
    RESULTS/tiny/optuna.db: ``status tiny`` finds the first, ``--study other`` the second."""
    import optuna

    from rlharness.storage import default_url

    root = tmp_path / "results"
    (root / "tiny").mkdir(parents=True)
    url = default_url(root, "tiny")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, trials in (("tiny", 1), ("other", 2)):
        study = optuna.create_study(study_name=name, storage=url)
        study.optimize(lambda trial: trial.suggest_float("agent.alpha", 0.0, 1.0), n_trials=trials)

    documented = cli("status", "tiny", "--results", root)
    assert documented.returncode == 0, documented.stderr
    assert f"study tiny in {url}: value (- over seeds), minimize; 1 COMPLETE" in documented.stdout
    old = cli("status", "tiny", "--out", root)
    assert (old.returncode, old.stdout, old.stderr) == (0, documented.stdout, documented.stderr)

    other = cli("status", "tiny", "--results", root, "--study", "other")
    assert other.returncode == 0, other.stderr
    assert f"study other in {url}: value (- over seeds), minimize; 2 COMPLETE" in other.stdout
    by_storage = cli("status", "other", "--storage", url)
    assert by_storage.stdout == other.stdout, "--storage and a study name: as before"


def test_analysis_commands_take_their_old_names(first_run, tmp_path):
    """``verify RESULTS`` (now ``--results``), ``compare --seed`` (now ``--bootstrap-seed``)
    and ``report --out`` (now ``--html``) still do what they did."""
    root = first_run["root"]
    verified = cli("verify", "--results", root)
    assert verified.returncode == 0, verified.stderr
    assert "1 run(s) checked: 1 verified, 0 not" in verified.stdout
    old_verify = cli("verify", root)
    assert (old_verify.returncode, old_verify.stdout) == (0, verified.stdout)

    compare = ("compare", "tiny", "--results", root, "--reps", "100", "--format", "json")
    seeded = cli(*compare, "--bootstrap-seed", "3")
    assert seeded.returncode == 0, seeded.stderr
    assert cli(*compare, "--seed", "3").stdout == seeded.stdout
    assert cli(*compare, "--bootstrap-seed", "4").stdout != seeded.stdout, "the seed is used"

    for option in ("--html", "--out"):
        page = tmp_path / f"report{option}.html"
        reported = cli("report", "tiny", "--results", root, "--reps", "100", option, page)
        assert reported.returncode == 0, reported.stderr
        assert f"report: {page}" in reported.stdout.splitlines()
        assert "<html" in page.read_text()
    assert snapshot(root) == first_run["tree"], "reports went where they were sent"


# --- inputs that used to crash or hang ----------------------------------------------------------

DQN_SPEC: dict[str, Any] = {
    "name": "tiny",
    "env": {"id": "CartPole-v1"},
    "agent": {"name": "dqn"},
    "run": {"steps": 50, "log_every": 10},
}
SPEC_TAIL = (
    "env: {id: triad/Baird-v0}\nagent: {name: semi_gradient_td, alpha: 0.01}\nrun: {steps: 5}\n"
)
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)
MEMORY_MESSAGE = re.compile(r"needs [\d,.]+ GiB of memory; this machine has [\d,.]+ GiB available")
MAX_LINE = 600
MISSING_BOX2D = importlib.util.find_spec("Box2D") is None
MISSING_JAX = importlib.util.find_spec("jax") is None


def with_sweep(sampler: str, path: str, parameter: dict[str, Any]) -> dict[str, Any]:
    """The tiny spec (no grid) with a sweep over one parameter."""
    return mutated(grid={}, sweep={"sampler": sampler, "space": {path: parameter}})


CRASHING_INPUTS: dict[str, tuple[Any, list[str]]] = {
    "nested_2000_levels_flow": (
        "name: tiny\ndescription: " + "[" * 2000 + "]" * 2000 + "\n" + SPEC_TAIL,
        ["line 2: lists and mappings are nested more than 32 levels deep"],
    ),
    "nested_2000_levels_block": (
        "name: tiny\n" + SPEC_TAIL + "grid:\n  agent.alpha:\n    " + "- " * 2000 + "1\n",
        ["line 7: lists and mappings are nested more than 32 levels deep"],
    ),
    "seeds_2_64": (mutated(run__seeds=2**64), ["run.seeds: Input should be less than or equal"]),
    "first_seed_2_64": (
        mutated(run__first_seed=2**64),
        ["run.first_seed: Input should be less than or equal to 2147483647"],
    ),
    "last_seed_beyond_2_31": (
        mutated(run__first_seed=2**31 - 2, run__seeds=3),
        ["run.first_seed: the last seed, first_seed + seeds - 1 = 2147483648, must be at most"],
    ),
    "steps_10_30": (
        mutated(run__steps=10**30),
        ["run.steps: Input should be less than or equal to 4611686018427387904"],
    ),
    "replay_capacity_unallocatable": (
        {**DQN_SPEC, "agent": {"name": "dqn", "replay_capacity": 10**13}},
        ["agent.replay_capacity: one seed of this sb3 dqn trial (replay buffer"],
    ),
    "rllib_replay_capacity_unallocatable": (
        {**DQN_SPEC, "agent": {"name": "dqn", "backend": "rllib", "replay_capacity": 10**13}},
        ["agent.replay_capacity: one seed of this rllib dqn trial (replay buffer"],
    ),
    "network_width_unallocatable": (
        {**DQN_SPEC, "agent": {"name": "dqn", "network": {"width": 1_000_000}}},
        ["agent.network.width: one seed of this sb3 dqn trial", "networks 18,6"],
    ),
    "linear_logs_unallocatable": (
        mutated(run__steps=10**15, run__log_every=1),
        ["run.log_every: logging 8 weights of 3 seed(s) at 1000000000000002 steps needs"],
    ),
    "env_kwargs_rejected": (
        {**DQN_SPEC, "env": {"id": "CartPole-v1", "kwargs": {"render_mode": 5}}},
        ["env.kwargs.render_mode: CartPole-v1 cannot be made with these arguments"],
    ),
    "grid_astronomically_large": (
        mutated(grid={f"agent.extra_{k}": list(range(10)) for k in range(40)}),
        ["grid: about 10^40 points (10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 x 10 x ...) are"],
    ),
    "grid_over_the_limit": (
        mutated(grid={"agent.alpha": [0.01] * 101, "run.log_every": list(range(1, 101))}),
        ["grid: 10,100 points (101 x 100) are more than the 10,000 a grid may have"],
    ),
    "alias_bomb": (
        BILLION_LAUGHS + "name: tiny\n" + SPEC_TAIL,
        ["line 2: the YAML alias *a is not allowed in experiment files"],
    ),
    "duplicate_key": (
        "name: tiny\nname: other\n" + SPEC_TAIL,
        ["is not valid YAML at line 2, column 1: the key 'name' is given twice (first at line 1)"],
    ),
    "missing_box2d": pytest.param(
        {**DQN_SPEC, "env": {"id": "LunarLander-v3"}},
        ["env.id: LunarLander-v3 needs an optional dependency that is not installed: Box2D"],
        marks=pytest.mark.skipif(not MISSING_BOX2D, reason="Box2D is installed"),
    ),
    "missing_jax": pytest.param(
        {**DQN_SPEC, "env": {"id": "phys2d/CartPole-v0"}},
        ["env.id: phys2d/CartPole-v0 needs an optional dependency that is not installed: No"],
        marks=pytest.mark.skipif(not MISSING_JAX, reason="jax is installed"),
    ),
    "random_walk_too_large": (
        mutated(env={"id": "triad/RandomWalk-v0", "kwargs": {"n_states": 100_001}}, grid={}),
        ["env.kwargs.n_states: must be an odd integer >= 3 and <= 1001, got 100001"],
    ),
    "env_argument_wrong_type": (
        mutated(env__kwargs={"gamma": "high"}, grid={}),
        ["env.kwargs.gamma: must be a number, got 'high'"],
    ),
    "env_argument_not_finite": (
        mutated(env__kwargs={"gamma": float("nan")}, grid={}),
        ["env.kwargs.gamma: must be a finite number, got nan"],
    ),
    "singular_model": (
        {
            **TINY_SPEC,
            "env": {"id": "triad/TsitsiklisVanRoy-v0", "kwargs": {"epsilon": 1e-320, "gamma": 1}},
            "agent": {"name": "least_squares_dp"},
            "grid": {},
        },
        ["env.kwargs.epsilon: must be at least 1e-16 (below, 1 - epsilon rounds to 1)"],
    ),
    "long_env_id": (
        mutated(env__id="x" * 100_000),
        ["env.id: unknown environment 'xxxxxxxxxxxxx", "...; available: triad/Baird-v0"],
    ),
    "long_unknown_field": (mutated(**{"y" * 100_000: 1}), ["yyyyyyyy...: unknown field"]),
    "long_grid_value": (
        mutated(grid={"agent.alpha": ["z" * 100_000]}),
        ["agent.alpha: Input should be a valid number", "(in grid point agent.alpha='zzzz"],
    ),
}
SWEEP_INPUTS: dict[str, tuple[Any, list[str]]] = {
    "sweep_float_step_1e-12": (
        with_sweep(
            "grid", "agent.alpha", {"type": "float", "low": 0.001, "high": 0.1, "step": 1e-12}
        ),
        ["sweep.space (grid sampler): 99,000,000,001 points are more than the 10,000"],
    ),
    "sweep_int_range_to_1e12": (
        with_sweep("grid", "run.log_every", {"type": "int", "low": 1, "high": 10**12}),
        ["sweep.space (grid sampler): 1,000,000,000,000 points are more than the 10,000"],
    ),
    "sweep_float_range_beyond_floats": (
        with_sweep(
            "grid",
            "agent.initial_weight_noise",
            {"type": "float", "low": 0, "high": 1e308, "step": 1e-300},
        ),
        ["sweep.space (grid sampler): about 10^608 points are more than the 10,000"],
    ),
    "sweep_bound_too_large": (
        {
            **mutated(grid={}),
            "sweep": {
                "sampler": "random",
                "n_trials": 2,
                "space": {"run.steps": {"type": "int", "low": 1, "high": 1e30}},
            },
        },
        ["run.steps: Input should be less than or equal to 4611686018427387904"],
    ),
}


def _masked(stderr: str) -> str:
    """Messages with the memory available masked: it changes from one moment to the next."""
    return re.sub(r"has [\d,.]+ GiB available", "has N GiB available", stderr)


def _assert_short_lines(completed: subprocess.CompletedProcess[str]) -> None:
    longest = max(map(len, (completed.stdout + completed.stderr).splitlines()), default=0)
    assert longest <= MAX_LINE, longest


@pytest.mark.parametrize(("data", "expected"), CRASHING_INPUTS.values(), ids=list(CRASHING_INPUTS))
def test_input_that_crashed_is_refused_by_validate_and_run(data, expected, tmp_path):
    spec_path = write_spec(tmp_path, data)
    root = tmp_path / "results"
    validated = cli("validate", spec_path)
    assert_bad_input(validated, f"error: experiment file {spec_path}:", *expected)
    _assert_short_lines(validated)
    if "agent.replay_capacity" in expected[0] or "agent.network" in expected[0]:
        assert MEMORY_MESSAGE.search(validated.stderr), validated.stderr
    ran = cli("run", spec_path, "--results", root)
    assert_bad_input(ran, f"error: experiment file {spec_path}:", *expected)
    assert _masked(ran.stderr) == _masked(validated.stderr)
    assert not root.exists(), "refused before any work"


@pytest.mark.parametrize(("data", "expected"), SWEEP_INPUTS.values(), ids=list(SWEEP_INPUTS))
def test_sweep_that_cannot_be_planned_is_refused_by_validate_and_sweep(data, expected, tmp_path):
    spec_path = write_spec(tmp_path, data)
    root = tmp_path / "results"
    validated = cli("validate", spec_path)
    assert_bad_input(validated, f"error: experiment file {spec_path}:", *expected)
    _assert_short_lines(validated)
    swept = cli("sweep", spec_path, "--results", root)
    assert_bad_input(swept, f"error: experiment file {spec_path}:", *expected)
    assert not root.exists(), "refused before any work"


def test_expected_n_step_of_a_billion_runs_in_closed_form(tmp_path):
    """gamma^n underflows at n = 10^9, so T^n v is v_pi = 0 on Baird: the Monte Carlo run."""
    metrics = {}
    for n_step in (10**9, "inf"):
        data = mutated(
            name=f"n{n_step}",
            agent={"name": "semi_gradient_dp", "alpha": 0.01, "initial_weights": [1] * 6 + [10, 1]},
            triad={"n_step": n_step},
            run={"steps": 20, "log_every": 10, "seeds": 1},
            grid={},
        )
        spec_path = write_spec(tmp_path, data, f"n{n_step}.yaml")
        assert cli("validate", spec_path).returncode == 0
        completed = cli("run", spec_path, "--results", tmp_path / "results", "--quiet")
        assert completed.returncode == 0, completed.stderr
        (run_dir,) = run_dirs(tmp_path / "results", f"n{n_step}")
        metrics[n_step] = pd.read_parquet(run_dir / "metrics.parquet")
    pd.testing.assert_frame_equal(metrics[10**9], metrics["inf"])
    assert metrics["inf"]["w_6"].iloc[-1] != 10.0, "the weights moved"
