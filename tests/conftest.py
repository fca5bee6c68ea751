"""Shared fixtures: a tiny, valid experiment; a Ray head and PostgreSQL for the sweep tests."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clusters import POSTGRES_VARIABLE, RayHead, start_ray_head, use_test_token

REPO = Path(__file__).resolve().parent.parent

TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "description": "Baird, semi-gradient TD, 50 steps: a smoke test.",
    "env": {"id": "triad/Baird-v0"},
    "agent": {
        "name": "semi_gradient_td",
        "alpha": 0.01,
        "initial_weights": [1, 1, 1, 1, 1, 1, 10, 1],
    },
    "run": {"steps": 50, "log_every": 10, "seeds": 3},
    "grid": {"triad.off_policy": [False, True]},
}


TINY_STUDY: dict[str, Any] = {
    "name": "deadly_triad_minatar",
    "description": "The deadly-triad study's grid, cut to 2 x 2 x 2 x 1 x 2 points, 2 seeds.",
    "env": {"id": "MinAtar/Breakout-v1"},
    "agent": {
        "name": "dqn",
        "backend": "fleet",
        "learning_starts": 50,
        "target_update_period": 50,
        "batch_size": 32,
        "replay_capacity": 1000,
        "eval_episodes": 1,
        "network": {"width": 16},
    },
    "run": {"steps": 200, "log_every": 100, "seeds": 2},
    "grid": {
        "env.id": ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1"],
        "agent.bootstrap_target": ["q_learning", "inverse_double_q"],
        "agent.n_step": [1, 3],
        "agent.prioritized_replay.alpha": [0.0, 1.0],
    },
}
"""A real fleet run of the study's experiment (by name) on both MinAtar games, in seconds."""


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results root holding one published run of `TINY_STUDY`."""
    from rlharness.local_run import run_experiment
    from rlharness.spec import parse_spec

    root = tmp_path_factory.mktemp("study") / "results"
    run_experiment(parse_spec(TINY_STUDY), root)
    return root


@pytest.fixture
def tiny_spec() -> dict[str, Any]:
    """A fresh, mutable copy of a valid 2-point x 3-seed experiment (50 steps, log every 10)."""
    return copy.deepcopy(TINY_SPEC)


def pytest_configure(config: pytest.Config) -> None:
    """Ray's token and settings for the session, set before any test module imports Ray."""
    directory = Path(tempfile.mkdtemp(prefix="rlh-session-"))
    config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))
    use_test_token(directory)


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """A Ray head on loopback (job server included) for the whole session, stopped at the end."""
    head = start_ray_head()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="module")
def ray_client(ray_head: RayHead) -> Iterator[RayHead]:
    """This process connected to the session's Ray head as a driver."""
    import ray

    if ray.is_initialized():  # a Ray that an earlier test left connected
        ray.shutdown()
    ray.init(address=ray_head.address, logging_level="WARNING", log_to_driver=False)
    try:
        yield ray_head
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL server that .ci/run starts (see .ci/postgres); CI must provide it."""
    url = os.environ.get(POSTGRES_VARIABLE)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{POSTGRES_VARIABLE} is not set: .ci/run starts PostgreSQL and exports it")
    pytest.skip(
        f"{POSTGRES_VARIABLE} is not set: run through .ci/run, or start a server with "
        f"'.ci/postgres start DIR' and export its URL as {POSTGRES_VARIABLE}"
    )
