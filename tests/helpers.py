"""Build and run small experiments through the public spec and runner."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from rlharness.runner import TrialResult, plan_trials, run_trial
from rlharness.spec import ExperimentSpec, parse_spec
from rlharness_envs.baird import INITIAL_WEIGHTS

BAIRD_W0 = list(INITIAL_WEIGHTS)


def make_spec(
    env: str,
    agent: dict[str, Any],
    steps: int,
    log_every: int = 1,
    seeds: int = 1,
    triad: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    grid: dict[str, list[Any]] | None = None,
    diagnostics: dict[str, Any] | None = None,
) -> ExperimentSpec:
    """A validated spec from its parts."""
    return parse_spec(
        {
            "name": "test",
            "env": {"id": env, "kwargs": env_kwargs or {}},
            "agent": agent,
            "triad": triad or {},
            "run": {"steps": steps, "log_every": log_every, "seeds": seeds},
            "grid": grid or {},
            "diagnostics": diagnostics or {},
        }
    )


def run_all(spec: ExperimentSpec) -> list[TrialResult]:
    """Every grid point of ``spec``, in grid order."""
    return [run_trial(trial) for trial in plan_trials(spec)]


def run_one(spec: ExperimentSpec) -> TrialResult:
    """The single trial of a grid-free spec."""
    (result,) = run_all(spec)
    return result


def invoke(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``rlharness ARGS`` in-process through typer's runner (the console script's app without
    its start-up): the exit code, stdout and stderr; an uncaught exception is raised."""
    from typer.testing import CliRunner

    from rlharness.cli import app

    result = CliRunner().invoke(app, [str(arg) for arg in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)
