"""``rlharness run SPEC --resume`` after a real SIGKILL: only the missing grid points run again,
and the one published run's metrics and outcomes are bitwise an uninterrupted run's."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from rlharness.catalog import Catalog
from rlharness.errors import ResultsError, SpecError
from rlharness.integrity import check_runs
from rlharness.local_run import run_experiment
from rlharness.results import WRITER_RECORD
from rlharness.spec import load_spec, parse_spec
from tests.conftest import TINY_SPEC
from tests.test_cli import BAD_INPUT, RLHARNESS, cli, write_spec

KILL_DEADLINE_S = 180
LINEAR: dict[str, Any] = {
    "name": "resume_linear",
    "env": {"id": "triad/Baird-v0"},
    "agent": {"name": "semi_gradient_td", "alpha": 0.01, "initial_weights": [1] * 6 + [10, 1]},
    "run": {"steps": 40_000, "log_every": 2_000, "seeds": 3},
    "grid": {"triad.off_policy": [False, True], "agent.alpha": [0.01, 0.005]},
}
FLEET: dict[str, Any] = {
    "name": "resume_fleet",
    "env": {"id": "CartPole-v1"},
    "agent": {
        "name": "dqn",
        "backend": "fleet",
        "learning_starts": 100,
        "eval_episodes": 1,
        "target_update_period": 100,
        "replay_capacity": 200,
    },
    "run": {"steps": 500, "log_every": 100, "seeds": 2},
    # batch sizes make 3 fleets (variants 0-1, 2-3, 4-5) of 2 grid points x 2 seeds
    "grid": {"agent.batch_size": [16, 32, 64], "agent.learning_rate": [1e-3, 3e-4]},
}


def staging_dirs(root: Path, name: str) -> list[Path]:
    return sorted((root / name).glob(".*.partial"))


def staged(root: Path, name: str) -> set[int]:
    """The variants whose grid point is staged in the experiment's unfinished run."""
    return {
        int(path.name.removeprefix("v"))
        for directory in staging_dirs(root, name)
        for path in (directory / ".trials").glob("v*")
    }


def published(root: Path) -> list[str]:
    """The runs the catalog takes as complete."""
    try:
        return list(Catalog(root).entries)
    except ResultsError as error:
        assert "holds no published runs" in str(error)
        return []


def run_command(spec_path: Path, root: Path, *options: str) -> list[str]:
    return [str(RLHARNESS), "run", str(spec_path), "--results", str(root), "--quiet", *options]


def kill_part_way(spec_path: Path, root: Path, name: str, total: int) -> set[int] | None:
    """Start ``rlharness run``, SIGKILL it once some but not all grid points are staged.

    The variants staged at the kill, or None if the run finished first.
    """
    process = subprocess.Popen(
        run_command(spec_path, root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + KILL_DEADLINE_S
    while len(staged(root, name)) == 0 or len(staged(root, name)) >= total:
        if process.poll() is not None:
            _, stderr = process.communicate()
            assert process.returncode == 0, stderr
            return None
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no grid point was staged within {KILL_DEADLINE_S} s")
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    done = staged(root, name)
    return done if len(done) < total else None


def killed_run(tmp_path: Path, data: dict[str, Any], total: int) -> tuple[Path, Path, set[int]]:
    """A run of ``data`` killed part-way: its spec file, results root and staged variants.

    A run that finishes before the kill is run again with 4 times the steps.
    """
    for factor in (1, 4, 16):
        spec = copy.deepcopy(data)
        spec["run"]["steps"] *= factor
        spec["run"]["log_every"] *= factor
        directory = tmp_path / f"steps_x{factor}"
        directory.mkdir()
        spec_path = write_spec(directory, spec)
        root = directory / "results"
        done = kill_part_way(spec_path, root, data["name"], total)
        if done is not None:
            return spec_path, root, done
    pytest.fail("every run finished before it could be killed part-way")


def resume_beside_reference(
    spec_path: Path, root: Path, reference: Path
) -> subprocess.CompletedProcess[str]:
    """``--resume`` the killed run while an uninterrupted run of the same file runs here."""
    command = run_command(spec_path, root, "--resume")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_experiment(load_spec(spec_path), reference)
    finally:
        stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def assert_same_tables(run: Path, reference: Path) -> None:
    """metrics and outcomes equal value for value (NaN where NaN), dtype for dtype, byte by byte."""
    for name in ("metrics.parquet", "outcomes.parquet"):
        resumed, uninterrupted = pd.read_parquet(run / name), pd.read_parquet(reference / name)
        pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)
        assert (run / name).read_bytes() == (reference / name).read_bytes()


def only_run(root: Path) -> Path:
    (run,) = published(root)
    return root / run


def test_linear_run_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    spec_path, root, done = killed_run(tmp_path, LINEAR, total=4)
    (staging,) = staging_dirs(root, "resume_linear")
    assert published(root) == [], "a killed run is not a run"
    verified = cli("verify", "--results", root)
    assert verified.returncode == 0, verified.stdout
    assert "0 run(s) checked" in verified.stdout
    assert f"partial: {staging} (" in verified.stdout
    assert "`rlharness run SPEC --resume` continues it" in verified.stdout

    resume_beside_reference(spec_path, root, tmp_path / "reference")
    run = only_run(root)
    assert run.name == staging.name.removeprefix(".").removesuffix(".partial")
    assert staging_dirs(root, "resume_linear") == []
    assert_same_tables(run, only_run(tmp_path / "reference"))
    (resume,) = json.loads((run / "provenance.json").read_text())["resumed"]
    assert resume["grid_points_staged"] == len(done)
    assert resume["command"][-1] == "--resume"
    files = json.loads((run / "manifest.json").read_text())["files"]
    assert not any(name.startswith(".") for name in files), "staging records are not published"
    assert [check.verified for check in check_runs(root)] == [True]


def test_fleet_run_killed_then_resumed_runs_only_the_missing_fleets(tmp_path):
    spec_path, root, done = killed_run(tmp_path, FLEET, total=6)
    assert published(root) == []
    resumed = resume_beside_reference(spec_path, root, tmp_path / "reference")
    missing_fleets = {variant // 2 for variant in set(range(6)) - done}
    assert resumed.stderr.count("fleet of ") == len(missing_fleets), resumed.stderr
    run, reference = only_run(root), only_run(tmp_path / "reference")
    assert_same_tables(run, reference)
    assert_same_networks(run, reference)
    assert_one_stream_each(run, reference)


def assert_same_networks(run: Path, reference: Path) -> None:
    """The saved networks of the staged and the rerun grid points are the uninterrupted ones."""
    networks = sorted(p.relative_to(run) for p in (run / "agents").rglob("*.pt"))
    assert networks == sorted(
        p.relative_to(reference) for p in (reference / "agents").rglob("*.pt")
    )
    assert len(networks) == 6 * 2
    for name in networks:
        resumed, uninterrupted = torch.load(run / name), torch.load(reference / name)
        assert resumed.keys() == uninterrupted.keys()
        assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)


def assert_one_stream_each(run: Path, reference: Path) -> None:
    """One TensorBoard event file per grid point x seed: a killed point's partial one is gone."""
    streams = sorted(p.parent.relative_to(run) for p in (run / "tensorboard").rglob("events.*"))
    assert streams == sorted(
        p.parent.relative_to(reference) for p in (reference / "tensorboard").rglob("events.*")
    )
    assert len(streams) == len(set(streams)) == 6 * 2


def test_resume_without_an_unfinished_run_says_so(tmp_path):
    spec_path = write_spec(tmp_path, TINY_SPEC)
    completed = cli("run", spec_path, "--results", tmp_path / "results", "--resume")
    assert completed.returncode == BAD_INPUT
    assert "error: --resume:" in completed.stderr
    assert "no unfinished run of tiny under" in completed.stderr
    assert not (tmp_path / "results" / "tiny").exists() or not any(
        (tmp_path / "results" / "tiny").iterdir()
    )


def interrupt_after_first_grid_point(done: int, total: int) -> None:
    """Ctrl-C as the last grid point finishes: every other one is staged, that one is not."""
    if done == total:
        raise KeyboardInterrupt


def end_writer(staging: Path) -> None:
    """Record a process that has ended as the staging dir's writer (as after a kill)."""
    ended = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, rlharness.processes as p; print(json.dumps(p.this_process()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    (staging / WRITER_RECORD).write_text(ended.stdout)


def test_resume_refuses_a_live_writer_another_experiment_and_other_seeds(tmp_path):
    spec = parse_spec(copy.deepcopy(TINY_SPEC))
    root = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, root, on_progress=interrupt_after_first_grid_point)
    (staging,) = staging_dirs(root, "tiny")
    assert staged(root, "tiny") == {0}

    with pytest.raises(SpecError, match=f"still being written by pid {os.getpid()}"):
        run_experiment(spec, root, resume=True)
    end_writer(staging)
    changed = copy.deepcopy(TINY_SPEC)
    changed["agent"]["alpha"] = 0.02
    with pytest.raises(SpecError) as error:
        run_experiment(parse_spec(changed), root, resume=True)
    assert error.value.where == "--resume"
    assert error.value.messages[0].startswith("agent.alpha: 0.01 in the unfinished run ")
    assert error.value.messages[0].endswith(", 0.02 now")
    with pytest.raises(SpecError) as error:
        run_experiment(spec, root, seeds=2, resume=True)
    assert error.value.where == "--seeds"
    assert "has 3 seed(s)" in error.value.messages[0]

    run, _ = run_experiment(spec, root, resume=True)
    reference, _ = run_experiment(spec, tmp_path / "reference")
    assert_same_tables(run, reference)
    assert staged(root, "tiny") == set() and staging_dirs(root, "tiny") == []
