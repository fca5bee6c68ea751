"""Live curves: TensorBoard streams readable while `rlharness run` is still going, equal to the
published metrics; progress in logged steps; `--wandb` without wandb installed."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlharness.live.progress import LoggedSteps, logs_per_seed
from rlharness.live.tensorboard import TensorBoardStreams, stream_labels
from rlharness.local_run import run_experiment
from rlharness.spec import parse_spec
from tests.conftest import TINY_SPEC

RLHARNESS = Path(sys.executable).parent / "rlharness"
DEADLINE_S = 180.0

FLEET_SPEC: dict[str, Any] = {
    "name": "live_fleet",
    "env": {"id": "CartPole-v1"},
    "agent": {
        "name": "dqn",
        "backend": "fleet",
        "learning_starts": 100,
        "batch_size": 16,
        "replay_capacity": 2000,
        "eval_episodes": 1,
        "network": {"width": 16, "depth": 1},
    },
    "run": {"steps": 3000, "log_every": 100, "seeds": 2},
    "grid": {"agent.bootstrap_target": ["q_learning", "double_q"]},
}
"""Two grid points x 2 seeds as one fleet, 31 logs each: seconds of training after startup."""


def read_stream(stream: Path) -> dict[str, dict[int, float]]:
    """Every scalar of one event stream, by tag and step, as TensorBoard's own reader sees it."""
    accumulator = EventAccumulator(str(stream))
    accumulator.Reload()
    return {
        tag: {event.step: event.value for event in accumulator.Scalars(tag)}
        for tag in accumulator.Tags()["scalars"]
    }


def assert_streams_equal_metrics(
    run_dir: Path, seen: dict[tuple[str, str], dict[str, dict[int, float]]]
) -> None:
    """Each stream's scalars (``seen``, read while running or after) are the published
    metrics of its grid point x seed, as float32 (TensorBoard's scalar precision)."""
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    labels = {"q_learning": "bootstrap_target=q_learning", "double_q": "bootstrap_target=double_q"}
    for (label, seed_dir), scalars in seen.items():
        assert scalars, (label, seed_dir)
        target = next(t for t, name in labels.items() if name == label)
        rows = metrics[
            (metrics["agent.bootstrap_target"] == target)
            & (metrics["seed"] == int(seed_dir.removeprefix("seed")))
        ].set_index("step")
        for tag, values in scalars.items():
            expected = np.float32(rows.loc[list(values), tag].to_numpy())
            np.testing.assert_array_equal(np.float32(list(values.values())), expected, tag)


def test_tensorboard_streams_are_readable_while_the_run_goes_on(tmp_path: Path) -> None:
    spec = tmp_path / "live.yaml"
    spec.write_text(yaml.safe_dump(FLEET_SPEC))
    results = tmp_path / "results"
    process = subprocess.Popen(
        [str(RLHARNESS), "run", str(spec), "--results", str(results), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    live: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    deadline = time.monotonic() + DEADLINE_S
    try:
        while process.poll() is None and not live and time.monotonic() < deadline:
            for stream in sorted(results.glob("live_fleet/.*.partial/tensorboard/*/seed*")):
                scalars = read_stream(stream)
                if scalars and process.poll() is None:  # read while the run is still going
                    live[stream.parent.name, stream.name] = scalars
            time.sleep(0.2)
        _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    [run_dir] = (results / "live_fleet").iterdir()
    streams = sorted(run_dir.glob("tensorboard/*/seed*"))
    assert len(streams) == 4
    final = {(s.parent.name, s.name): read_stream(s) for s in streams}
    assert all(len(scalars["probe_max_abs_q"]) == 31 for scalars in final.values())
    assert_streams_equal_metrics(run_dir, final)
    # What was read during the run is a prefix of the published metrics (if the run was
    # too quick to be caught, the published streams above still hold).
    assert_streams_equal_metrics(run_dir, live)
    for key, scalars in live.items():
        assert set(scalars["probe_max_abs_q"]) <= set(final[key]["probe_max_abs_q"])


def test_linear_streams_equal_the_metrics_and_the_bar_counts_logged_steps(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    run_dir, _ = run_experiment(
        parse_spec(copy.deepcopy(TINY_SPEC)),
        tmp_path,
        on_progress=lambda done, total: calls.append((done, total)),
    )
    # 2 grid points x 3 seeds x 6 logged steps, counted one record at a time
    assert calls == [(done, 36) for done in range(1, 37)]
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    logged = [c for c in metrics.columns if c not in ("variant", "triad.off_policy", "seed")]
    for off_policy in (False, True):
        for seed in range(3):
            scalars = read_stream(run_dir / f"tensorboard/off_policy={off_policy}/seed{seed}")
            rows = metrics[(metrics["triad.off_policy"] == off_policy) & (metrics["seed"] == seed)]
            assert set(scalars) == set(logged) - {"step"}
            for tag, values in scalars.items():
                assert list(values) == rows["step"].tolist()
                np.testing.assert_array_equal(
                    np.float32(list(values.values())), np.float32(rows[tag].to_numpy()), tag
                )


def test_tensorboard_false_writes_no_streams(tmp_path: Path) -> None:
    data = copy.deepcopy(TINY_SPEC)
    data["run"]["tensorboard"] = False
    run_dir, _ = run_experiment(parse_spec(data), tmp_path)
    assert (run_dir / "metrics.parquet").is_file()
    assert not (run_dir / "tensorboard").exists()


def test_progress_caps_extra_records_and_completes_a_seed_that_ended_early() -> None:
    calls: list[tuple[int, int]] = []
    progress = LoggedSteps({0: (2, logs_per_seed(50, 10))}, lambda d, t: calls.append((d, t)))
    for _ in range(8):  # one past the 6 expected: a fleet's extra log at a non-finite loss
        progress.record(0, 0, {"step": 0.0})
    progress.record(0, 1, {"step": 0.0})
    progress.finished(0, 1)  # hard-diverged after one log
    progress.finished(0, 0)
    assert calls == [*((d, 12) for d in range(1, 7)), (7, 12), (12, 12)]


def test_logs_per_seed_counts_step_zero_each_period_and_the_last_step() -> None:
    assert logs_per_seed(50, 10) == 6
    assert logs_per_seed(55, 10) == 7
    assert logs_per_seed(1, 1) == 2


def test_stream_labels_are_safe_distinct_directory_names() -> None:
    labels = stream_labels(
        {
            0: {"agent.alpha": 0.01, "triad.features": "tabular"},
            1: {"agent.alpha": "a/b c"},
            2: {"agent.alpha": "a b/c"},
            3: {"agent.x": "y" * 200},
        },
        "td",
    )
    assert labels[0] == "alpha=0.01,features=tabular"
    assert labels[1] == "point1-alpha=a_b_c" and labels[2] == "point2-alpha=a_b_c"
    assert labels[3].startswith("point3-x=yyy") and len(labels[3]) <= 130
    assert stream_labels({0: {}}, "td") == {0: "td"}
    assert all("/" not in label and " " not in label for label in labels.values())


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_without_wandb_installed_is_one_line_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY_SPEC))
    completed = subprocess.run(
        [str(RLHARNESS), "run", str(spec), "--results", str(tmp_path), "--wandb", "triad"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: --wandb: wandb is not installed; `pip install wandb` to stream to W&B"
    ]
    assert not (tmp_path / "tiny").exists()


def test_a_stream_that_cannot_be_written_stops_streaming_not_the_run(
    tmp_path: Path, capsys
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the streams' directory should be")
    streams = TensorBoardStreams(blocked, {0: {}}, {"agent": "td"})
    streams.record(0, 0, {"step": 0, "sqrt_ve": 1.0})
    streams.record(0, 0, {"step": 1, "sqrt_ve": 2.0})
    assert streams.stopped
    assert capsys.readouterr().err.count("warning: TensorBoard streams stopped") == 1
