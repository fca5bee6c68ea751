"""The results store: ``results/<experiment>/<run-id>/``, written atomically.

A run is written into a hidden staging directory ``.<run-id>.partial`` and
renamed into place only when every file is complete, and each file is itself
written to a temporary name and renamed. An interrupted run therefore leaves
at most a ``.partial`` directory, never a run that looks complete. A run
holds:
    config.yaml       the resolved experiment (grid included)
    provenance.json   package versions, Python, platform, git commit, command
    metrics.parquet   one row per grid point x seed x logged step
    outcomes.parquet  one row per grid point x seed
    summary.json      outcome counts and final metrics per grid point
    plots/*.png       figures
    manifest.json     every file with its size and SHA-256, written last
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import pandas as pd
import yaml

from rlharness.spec import ExperimentSpec
from rlharness.storage import mask

TRACKED_PACKAGES = (
    "rlharness",
    "numpy",
    "numba",
    "scipy",
    "pandas",
    "pyarrow",
    "gymnasium",
    "torch",
    "stable-baselines3",
    "ray",
    "optuna",
    "pydantic",
    "matplotlib",
)
MANIFEST = "manifest.json"
FILE_MODE = 0o644


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a file through ``write`` into a temporary sibling, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write(path, lambda stream: stream.write(text.encode()))


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Atomically write a DataFrame as Parquet (pyarrow, zstd)."""
    atomic_write(path, lambda stream: frame.to_parquet(stream, index=False, compression="zstd"))


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-<random>``: sortable by time, unique across concurrent runs."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


class RunWriter:
    """Stages one run's files and publishes the run directory atomically on `finish`."""

    def __init__(
        self, root: Path, spec: ExperimentSpec, run_id: str | None = None, group: str = ""
    ) -> None:
        """Stage ``root/<experiment>/[group/]<run_id>`` (a fresh time-stamped id by default)."""
        self.run_id = run_id or new_run_id()
        parent = root / spec.name / group
        self.final_dir = parent / self.run_id
        self.staging_dir = parent / f".{self.run_id}.partial"
        self.staging_dir.mkdir(parents=True)

    def path(self, relative: str) -> Path:
        """Where a file of this run is staged."""
        return self.staging_dir / relative

    def write_json(self, relative: str, data: Any) -> None:
        """Stage a JSON file."""
        atomic_write_text(self.path(relative), json.dumps(data, indent=2, default=_jsonable) + "\n")

    def write_yaml(self, relative: str, data: Any) -> None:
        """Stage a YAML file."""
        atomic_write_text(self.path(relative), yaml.safe_dump(data, sort_keys=False))

    def write_parquet(self, relative: str, frame: pd.DataFrame) -> None:
        """Stage a Parquet file."""
        atomic_write_parquet(self.path(relative), frame)

    def finish(self) -> Path:
        """Write the manifest and move the staged run to its final place."""
        files = sorted(p for p in self.staging_dir.rglob("*") if p.is_file())
        manifest = {
            "run_id": self.run_id,
            "files": {
                str(p.relative_to(self.staging_dir)): {
                    "bytes": p.stat().st_size,
                    "sha256": _sha256(p),
                }
                for p in files
            },
        }
        self.write_json(MANIFEST, manifest)
        os.replace(self.staging_dir, self.final_dir)
        return self.final_dir

    def abandon(self) -> None:
        """Remove the staged files of a run that did not finish."""
        shutil.rmtree(self.staging_dir, ignore_errors=True)


def provenance(command: list[str] | None = None) -> dict[str, Any]:
    """What produced a run: versions, interpreter, platform, git commit and the command.

    Passwords in URLs on the command line (a storage URL) are masked.
    """
    versions: dict[str, str | None] = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": [mask(part) for part in (command if command is not None else sys.argv)],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git": _git_state(),
    }


def _git_state() -> dict[str, Any]:
    """The commit of the source tree rlharness runs from, and whether it had local changes."""
    source = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            completed = subprocess.run(
                ["git", "-C", str(source), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return completed.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
