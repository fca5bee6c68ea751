"""``rlharness sweep`` and ``status`` run for real: local Ray, a Ray head, PostgreSQL (Ray jobs and
clusters as the README documents them: tests/test_ray_cluster.py)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from rlharness.errors import SpecError
from rlharness.storage import default_url, load_study
from tests.clusters import client_env
from tests.conftest import TINY_SPEC
from tests.test_cli import RLHARNESS, assert_bad_input, cli, write_spec
from tests.test_live import read_stream

LAUNCH_TIMEOUT_S = 300


def spec(**sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(TINY_SPEC)
    data.update(sections)
    return data


def slow_trials(**sections: Any) -> dict[str, Any]:
    """Trials that take a few seconds each (RandomWalk, one seed, 10^8 TD updates).

    Shorter trials finish between two polls of the study, and a launcher can then be done
    before the test has seen it mid-sweep, or before a second launcher has started.
    """
    steps = 100_000_000
    data = spec(
        env={"id": "triad/RandomWalk-v0"},
        agent={"name": "semi_gradient_td", "alpha": 0.01},
        triad={"off_policy": False},
        run={"steps": steps, "log_every": steps // 5, "seeds": 1},
        grid={},
    )
    data.update(sections)
    return data


def slow_random_sweep(n_trials: int) -> dict[str, Any]:
    """A random search over the step size of :func:`slow_trials`."""
    return slow_trials(
        sweep={
            "sampler": "random",
            "n_trials": n_trials,
            "objective": "final_sqrt_ve",
            "space": {"agent.alpha": {"type": "float", "low": 1e-3, "high": 0.05, "log": True}},
        },
    )


def launch(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(RLHARNESS), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**(env or client_env()), "COLUMNS": "200"},
    )


def load(url: str, name: str = "tiny") -> optuna.Study:
    """The study, opened the way the product opens it (under its schema lock).

    A bare `optuna.load_study` beside a launcher that is creating the database
    would race it creating Optuna's tables.
    """
    return load_study(url, name)


def loaded(url: str, name: str = "tiny") -> optuna.Study | None:
    """The study, or None while its launcher has not created the database or the study yet."""
    try:
        return load(url, name)
    except SpecError:
        return None


def counts(study: optuna.Study) -> Counter[str]:
    return Counter(trial.state.name for trial in study.trials)


def wait_for(condition, launcher: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert launcher.poll() is None, "the launcher ended before the awaited state"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def trial_dirs(out: Path, study: str = "tiny") -> list[str]:
    return sorted(p.name for p in (out / "tiny" / f"sweep-{study}").glob("trial-*"))


def no_database_anywhere(root: Path) -> bool:
    return not any(path.name == "optuna.db" for path in root.rglob("*"))


# --- local Ray, default SQLite storage ---------------------------------------------------------


def test_sweep_on_a_local_ray_with_default_sqlite_then_status(tmp_path):
    spec_path = write_spec(tmp_path, spec(grid={"triad.off_policy": [False, True]}), "tiny.yaml")
    out = tmp_path / "results"
    completed = cli("sweep", spec_path, "--results", out, "--workers", "2")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Traceback" not in output
    database = out / "tiny" / "optuna.db"
    assert database.is_file()
    assert f"study: tiny in sqlite:///{database.resolve()}: 2 of 2 trials finished" in output
    assert "2/2" in completed.stderr, "the progress bar counts finished trials"
    study = load(default_url(out, "tiny"))
    assert counts(study) == {"COMPLETE": 2}
    assert trial_dirs(out) == ["trial-00000", "trial-00001"]
    assert_trial_streams_equal_metrics(out / "tiny" / "sweep-tiny")

    for target in ("tiny", spec_path):
        status = cli("status", target, "--results", out)
        assert status.returncode == 0, status.stderr
        assert "study tiny in sqlite:///" in status.stdout
        assert "divergence_rate (mean over seeds), minimize; 2 COMPLETE" in status.stdout
        rows = [line for line in status.stdout.splitlines() if "COMPLETE" in line and "│" in line]
        assert len(rows) == 2 and all("converged 3" in row for row in rows)


def assert_trial_streams_equal_metrics(sweep_dir: Path) -> None:
    """Each trial x seed streamed its records to TensorBoard as its Ray task logged them:
    the published metrics, as float32 (TensorBoard's scalar precision)."""
    for trial in ("trial-00000", "trial-00001"):
        metrics = pd.read_parquet(sweep_dir / trial / "metrics.parquet")
        streams = sorted((sweep_dir / "tensorboard" / trial).glob("*/seed*"))
        assert [stream.name for stream in streams] == [f"seed{seed}" for seed in range(3)]
        for stream in streams:
            rows = metrics[metrics["seed"] == int(stream.name.removeprefix("seed"))]
            scalars = read_stream(stream)
            assert scalars["sqrt_ve"] and set(scalars["sqrt_ve"]) == set(rows["step"])
            for tag, values in scalars.items():
                expected = rows.set_index("step").loc[list(values), tag].to_numpy()
                np.testing.assert_array_equal(
                    np.float32(list(values.values())), np.float32(expected), tag
                )


# --- bad input: one message, exit 2, nothing created ------------------------------------------

BAD_SWEEPS: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "space_over_a_missing_field": (
        spec(grid={}, sweep={"space": {"agent.alfa": {"type": "categorical", "choices": [1]}}}),
        [],
        ["agent.alfa: unknown field; allowed fields here: alpha, beta"],
    ),
    "space_over_a_missing_section": (
        spec(grid={}, sweep={"space": {"trial.n_step": {"type": "int", "low": 1, "high": 2}}}),
        [],
        ["sweep.space.trial.n_step: 'trial' is not a field; allowed: agent, description"],
    ),
    "empty_grid": (
        spec(grid={}),
        [],
        ["sweep.space: nothing to search; give sweep.space or a grid"],
    ),
    "grid_over_a_float_without_step": (
        spec(grid={}, sweep={"space": {"agent.alpha": {"type": "float", "low": 0.1, "high": 1}}}),
        [],
        ["sweep.space.agent.alpha: the grid sampler needs choices or a step"],
    ),
    "tpe_without_a_budget": (
        spec(
            grid={},
            sweep={
                "sampler": "tpe",
                "space": {"agent.alpha": {"type": "float", "low": 0.1, "high": 1}},
            },
        ),
        [],
        ["sweep.n_trials: the tpe sampler needs a trial budget"],
    ),
    "objective_of_another_agent_kind": (
        spec(sweep={"objective": "final_return"}),
        [],
        ["sweep.objective: final_return is not measured for linear agents; allowed:"],
    ),
    "not_a_storage_url": (
        spec(),
        ["--storage", "not a url"],
        ["error: --storage:", "is not a database URL"],
    ),
    "unknown_database": (spec(), ["--storage", "oracle+nope://x/y"], ["unknown database"]),
    "unreachable_postgresql": (
        spec(),
        ["--storage", "postgresql://sweeper:hunter2@127.0.0.1:1/studies"],
        ["cannot connect to postgresql://sweeper:***@127.0.0.1:1/studies", "Connection refused"],
    ),
    "unreachable_ray_address": (
        spec(),
        ["--address", "127.0.0.1:1"],
        ["error: --address:", "cannot reach a Ray cluster at 127.0.0.1:1"],
    ),
    "bad_study_name": (spec(), ["--study", "a/b"], ["error: --study:", "use letters, digits"]),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS))
def test_bad_sweep_input_exits_2_and_creates_nothing(case, tmp_path):
    data, options, expected = BAD_SWEEPS[case]
    spec_path = write_spec(tmp_path, data)
    out = tmp_path / "results"
    completed = cli("sweep", spec_path, "--results", out, *options)
    assert_bad_input(completed, *expected)
    assert "hunter2" not in completed.stdout + completed.stderr
    assert not out.exists(), "no results directory, no study, no database file"
    assert no_database_anywhere(tmp_path)


def test_status_of_a_missing_study_or_storage(tmp_path):
    completed = cli("status", "nothing", "--results", tmp_path)
    assert_bad_input(completed, "no such database file")
    assert no_database_anywhere(tmp_path)


# --- crash safety: stop and kill the launcher, resume ------------------------------------------


@pytest.mark.slow
def test_stopped_and_killed_launchers_resume_to_the_budget(ray_head, tmp_path):
    spec_path = write_spec(tmp_path, slow_random_sweep(n_trials=6))
    out = tmp_path / "results"
    url = default_url(out, "tiny")
    command = (
        "sweep",
        spec_path,
        "--results",
        out,
        "--address",
        ray_head.address,
        "--workers",
        "2",
    )

    def progressed(at_least: int) -> bool:
        study = loaded(url)
        if study is None:
            return False
        found = counts(study)
        return found["COMPLETE"] >= at_least and found["RUNNING"] >= 1

    first = launch(*command)
    wait_for(lambda: progressed(1), first)
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=LAUNCH_TIMEOUT_S)
    assert first.returncode == 130, stderr
    assert "interrupted: trials in flight were re-queued" in stderr
    assert "Traceback" not in stderr
    after_stop = counts(load(url))
    assert after_stop["RUNNING"] == 0, "a stopped launcher leaves no trial running"
    assert after_stop["WAITING"] == after_stop["FAIL"] >= 1

    done_before = after_stop["COMPLETE"]
    second = launch(*command)
    wait_for(lambda: progressed(done_before + 1), second)
    second.send_signal(signal.SIGKILL)
    second.communicate(timeout=LAUNCH_TIMEOUT_S)
    assert counts(load(url))["RUNNING"] >= 1, "a killed launcher leaves its trials running"

    third = launch(*command)
    stdout, stderr = third.communicate(timeout=LAUNCH_TIMEOUT_S)
    assert third.returncode == 0, stdout + stderr
    assert "6 of 6 trials finished" in stdout
    assert "is gone" in stderr, "the dead launcher's trials were re-queued"
    study = load(url)
    found = counts(study)
    assert found["COMPLETE"] == 6 and found["RUNNING"] == 0 and found["WAITING"] == 0
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert trial_dirs(out) == [f"trial-{t.number:05d}" for t in complete], "no orphan results"
    reasons = [t.user_attrs.get("fail_reason", "") for t in study.trials if t.state.name == "FAIL"]
    assert any("interrupted" in reason for reason in reasons)
    assert any("is gone" in reason for reason in reasons)
    retried = [t for t in complete if "retry_of" in t.user_attrs]
    assert retried, "re-queued points ran again"
    for trial in retried:
        original = study.trials[trial.user_attrs["retry_of"]]
        assert original.state == TrialState.FAIL and original.params == trial.params


# --- PostgreSQL: two launchers on one study ----------------------------------------------------


def test_two_launchers_share_a_postgresql_study_and_run_each_point_once(
    ray_head, postgres_url, tmp_path
):
    grid = {"triad.n_step": [1, 2, 3], "agent.alpha": [0.01, 0.02]}
    spec_path = write_spec(tmp_path, slow_trials(grid=grid))
    out = tmp_path / "results"
    study_name = f"pair-{os.getpid()}-{time.time_ns()}"
    env = {**client_env(), "RLHARNESS_STORAGE": postgres_url}
    command = (
        "sweep",
        spec_path,
        "--results",
        out,
        "--address",
        ray_head.address,
        "--workers",
        "2",
        "--study",
        study_name,
    )
    launchers = [launch(*command, env=env) for _ in range(2)]
    outputs = [launcher.communicate(timeout=LAUNCH_TIMEOUT_S) for launcher in launchers]
    for launcher, (stdout, stderr) in zip(launchers, outputs, strict=True):
        assert launcher.returncode == 0, stdout + stderr
    study = load(postgres_url, study_name)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 6, "no point twice"
    others = [t for t in study.trials if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.FAIL and "superseded" in t.user_attrs for t in others)
    assert trial_dirs(out, study_name) == sorted(f"trial-{t.number:05d}" for t in complete)
    owners = {t.user_attrs["launcher"]["pid"] for t in complete}
    assert owners == {launcher.pid for launcher in launchers}, "both launchers ran trials"

    password = postgres_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    for stdout, stderr in outputs:
        assert password not in stdout + stderr
        assert "rlharness:***@127.0.0.1" in stdout
    for path in out.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    status = cli("status", study_name, "--storage", postgres_url)
    assert status.returncode == 0, status.stderr
    assert password not in status.stdout + status.stderr
    assert "6 COMPLETE" in status.stdout
