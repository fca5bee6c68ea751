"""The Ray job environment of `rlharness submit`: the code, its commit and the locked versions.

A Ray job runs its entrypoint in a copy of the working directory without ``.git``
(Ray uploads it as a zip), so the commit travels as an environment variable that
`rlharness.results.provenance` records. The versions travel as Ray's ``pip``
runtime environment: every exact pin of the lock, installed by pip on each node into
the job's virtualenv over the node's own packages (already satisfied on a node built
from the same lock, corrected on any other). Ray itself is left out: a job runs on the
cluster's Ray.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from rlharness.errors import SpecError
from rlharness.results import COMMIT_VARIABLE, DIRTY_VARIABLE

RUN_LOCK = Path("requirements/run.lock")
"""The lock of what a run needs, relative to the working directory."""
CLUSTER_PACKAGES = ("ray",)
"""Pins the cluster supplies: a job cannot bring its own Ray."""


def source_commit(directory: Path) -> tuple[str, bool]:
    """The commit checked out in ``directory`` and whether tracked files have changes.

    Raises `SpecError` when ``directory`` is not in a git work tree.
    """

    def git(*args: str) -> str:
        completed = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            raise SpecError(
                "--working-dir",
                [f"{directory} is not in a git work tree: {completed.stderr.strip()}"],
            )
        return completed.stdout.strip()

    commit = git("rev-parse", "HEAD")
    return commit, bool(git("status", "--porcelain", "--untracked-files=no"))


def locked_pins(lock: Path) -> list[str]:
    """The ``name==version`` pins of a lock (uv or pip-tools format) but the cluster's own."""
    pins = []
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith(("#", "-")):
            pin = line.split(" ", 1)[0]
            if pin.split("==", 1)[0].lower() not in CLUSTER_PACKAGES:
                pins.append(pin)
    return pins


def job_runtime_env(working_dir: Path, lock: Path | None) -> dict[str, Any]:
    """Ray's ``runtime_env`` for a job from ``working_dir``: its commit, and the lock's pins.

    ``lock`` None leaves the nodes' packages as they are.
    """
    commit, dirty = source_commit(working_dir)
    runtime_env: dict[str, Any] = {
        "working_dir": str(working_dir),
        "env_vars": {COMMIT_VARIABLE: commit, DIRTY_VARIABLE: str(dirty).lower()},
    }
    if lock is not None:
        if not lock.is_file():
            raise SpecError("--lock", [f"{lock} is not a file; `make lock` writes it"])
        runtime_env["pip"] = {"packages": locked_pins(lock), "pip_check": False}
    return runtime_env
