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
    agents/variant<i>/seed<k>/final.(pt|zip), step<N>.(pt|zip)
                      deep agents' saved networks (`rlharness.agents.deep.saved`)
    manifest.json     every file with its size and SHA-256, written last

A file that cannot be written (a full disk, a quota, permissions) raises
`ResultsWriteError`, which says what, where and how much space is free; the
staging directory then keeps the files that were written (it is not a run:
the catalog skips it). A staging directory records the process writing it
(`WRITER_RECORD`), so that `rlharness verify --remove-partial` removes only
those whose writer has ended. It may also hold what a resumed run needs
(`STAGING_ONLY`: the experiment and each finished grid point, see
`rlharness.resume`); those are removed when the run is published.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Callable, Iterator
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import pandas as pd
import yaml

from rlharness.errors import ResultsWriteError
from rlharness.masking import mask
from rlharness.processes import this_process
from rlharness.spec import ExperimentSpec

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
PARTIAL_SUFFIX = ".partial"
WRITER_RECORD = ".writer.json"
"""In a staging directory: the host, pid and start time of the process writing it."""
RUN_RECORD = ".run.json"
"""In a staging directory: what a resumed run must match (`rlharness.resume`)."""
STAGED_TRIALS = ".trials"
"""In a staging directory: one directory per finished grid point (`rlharness.resume`)."""
STAGING_ONLY = (WRITER_RECORD, RUN_RECORD, STAGED_TRIALS)
"""Entries of a staging directory that are not part of the published run."""


def free_space(path: Path) -> str:
    """How much space is free on the file system that holds (or would hold) ``path``."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return "free space unknown"
    return f"{format_bytes(free)} free there"


def format_bytes(count: int) -> str:
    """``count`` bytes in binary units: ``512 B``, ``12.0 KiB``, ``44.1 MiB``."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


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
        self.staging_dir = parent / f".{self.run_id}{PARTIAL_SUFFIX}"
        with self._writing(self.staging_dir):
            self._create_staging_dir()

    @classmethod
    def take_over(cls, staging_dir: Path) -> RunWriter:
        """Continue writing the staging dir of an unfinished run as this process.

        The caller checks that its previous writer has ended; the writer record
        then names this process.
        """
        writer = cls.__new__(cls)
        writer.staging_dir = staging_dir
        writer.run_id = staging_dir.name.removeprefix(".").removesuffix(PARTIAL_SUFFIX)
        writer.final_dir = staging_dir.parent / writer.run_id
        with writer._writing(writer.path(WRITER_RECORD)):
            atomic_write_text(writer.path(WRITER_RECORD), json.dumps(this_process()) + "\n")
        return writer

    def _create_staging_dir(self) -> None:
        """Create the staging dir with its writer record already inside.

        The record is written into a temporary sibling that is then renamed, so
        a staging dir is never seen without the process that owns it.
        """
        self.staging_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.staging_dir.exists():
            raise FileExistsError(f"{self.staging_dir} exists: another writer has this run id")
        temporary = self.staging_dir.parent / f".{self.run_id}.{secrets.token_hex(4)}.new"
        temporary.mkdir()
        try:
            atomic_write_text(temporary / WRITER_RECORD, json.dumps(this_process()) + "\n")
            os.rename(temporary, self.staging_dir)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise

    @contextlib.contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        """Turn an OSError while writing ``path`` into a `ResultsWriteError`."""
        try:
            yield
        except OSError as error:
            raise ResultsWriteError(path, error.strerror or str(error), free_space(path)) from error

    def path(self, relative: str) -> Path:
        """Where a file of this run is staged."""
        return self.staging_dir / relative

    def written(self) -> list[str]:
        """The run's files staged so far, relative to the staging dir (`STAGING_ONLY` excluded)."""
        relative = (p.relative_to(self.staging_dir) for p in self.staging_dir.rglob("*"))
        return sorted(
            str(path)
            for path in relative
            if (self.staging_dir / path).is_file()
            and not any(part.startswith(".") for part in path.parts)
        )

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Stage a file of raw bytes (a figure)."""
        with self._writing(self.path(relative)):
            atomic_write(self.path(relative), lambda stream: stream.write(data))

    def write_text(self, relative: str, text: str) -> None:
        """Stage a UTF-8 text file."""
        self.write_bytes(relative, text.encode())

    def write_json(self, relative: str, data: Any) -> None:
        """Stage a JSON file."""
        self.write_text(relative, json.dumps(data, indent=2, default=_jsonable) + "\n")

    def write_yaml(self, relative: str, data: Any) -> None:
        """Stage a YAML file."""
        self.write_text(relative, yaml.safe_dump(data, sort_keys=False))

    def write_parquet(self, relative: str, frame: pd.DataFrame) -> None:
        """Stage a Parquet file."""
        with self._writing(self.path(relative)):
            atomic_write_parquet(self.path(relative), frame)

    def write_directory(self, relative: str, files: dict[str, bytes]) -> None:
        """Stage a directory of files (names may hold subdirectories) at once: written into a
        temporary sibling, then renamed.

        A reader sees the whole directory or none of it; it must not exist yet.
        """
        target = self.path(relative)
        with self._writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
            try:
                for name, data in files.items():
                    (temporary / name).parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(temporary / name, partial(_write_all, data=data))
                os.rename(temporary, target)
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)
                raise

    def finish(self) -> Path:
        """Write the manifest and move the staged run to its final place."""
        with self._writing(self.path(MANIFEST)):
            return self._publish()

    def _publish(self) -> Path:
        for name in STAGING_ONLY:
            staged = self.path(name)
            if staged.is_dir():
                shutil.rmtree(staged)
            else:
                staged.unlink(missing_ok=True)
        files = sorted(p for p in self.staging_dir.rglob("*") if p.is_file())
        manifest = {
            "run_id": self.run_id,
            "files": {
                str(p.relative_to(self.staging_dir)): {
                    "bytes": p.stat().st_size,
                    "sha256": sha256(p),
                }
                for p in files
            },
        }
        atomic_write_text(self.path(MANIFEST), json.dumps(manifest, indent=2) + "\n")
        os.replace(self.staging_dir, self.final_dir)
        return self.final_dir

    def salvage(self, error: ResultsWriteError) -> None:
        """After ``error``, keep the staged files (or remove the staging dir if it holds none).

        Staged grid points are kept too, for ``rlharness run --resume``.

        The kept files are recorded on ``error``; the dir stays a ``.partial``, never a run.
        """
        kept = self.written() if self.staging_dir.is_dir() else []
        if self.holds_trials():
            trials = sorted(p.name for p in self.path(STAGED_TRIALS).glob("v*"))
            kept += [f"{STAGED_TRIALS}/{name}" for name in trials]
        if kept:
            error.staging_dir, error.kept = self.staging_dir, kept
        else:
            self.abandon()

    def holds_trials(self) -> bool:
        """Whether finished grid points are staged: a resume would not run them again."""
        trials = self.path(STAGED_TRIALS)
        return trials.is_dir() and any(not p.name.startswith(".") for p in trials.iterdir())

    def abandon(self) -> None:
        """Remove the staged files of a run that did not finish."""
        shutil.rmtree(self.staging_dir, ignore_errors=True)


COMMIT_VARIABLE = "RLHARNESS_COMMIT"
"""The git commit of a source tree copied without .git, as its submitter saw it."""
DIRTY_VARIABLE = "RLHARNESS_DIRTY"
"""``true`` or ``false``: whether that tree had uncommitted changes to tracked files."""


def provenance(
    command: list[str] | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What produced a run: versions, interpreter, platform, git commit, the command and the
    ``--set`` overrides applied to the experiment file (dotted path -> value).

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
        "overrides": overrides or {},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git": _git_state(),
    }


def _git_state() -> dict[str, Any]:
    """The commit of the source tree rlharness runs from, and whether it had local changes.

    A tree without git (the working directory `rlharness submit` uploads to a Ray job)
    records the commit and dirtiness its submitter passed in `COMMIT_VARIABLE` and
    `DIRTY_VARIABLE`.
    """
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
    if commit is None:  # a copy without .git: a Ray job's working directory
        return {
            "commit": os.environ.get(COMMIT_VARIABLE) or None,
            "dirty": {"true": True, "false": False}.get(os.environ.get(DIRTY_VARIABLE, "")),
        }
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_all(stream: IO[bytes], data: bytes) -> None:
    stream.write(data)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
