"""Whether published runs are what their manifests say, and what unfinished runs left behind.

A published run's ``manifest.json`` lists every file with its size and SHA-256
(`rlharness.results.RunWriter.finish`). `check_run` compares the files with it
and reads the ones the catalog needs; a run with any `Problem` is unverified,
and one whose data files cannot be read at all is also unreadable.
`find_partials` lists the ``.partial`` staging dirs of runs that never
finished; `Partial.keep_reason` says whether their writer may still be running.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlharness.processes import process_alive
from rlharness.results import MANIFEST, PARTIAL_SUFFIX, WRITER_RECORD, sha256

RUN_FILES = ("config.yaml", "summary.json", "outcomes.parquet", "metrics.parquet")
"""The files a run must have for the catalog to read it."""
PARQUET_FILES = ("outcomes.parquet", "metrics.parquet")


@dataclass(frozen=True)
class Problem:
    """What is wrong with one file of a run.

    ``readable`` is False when the file is missing or cannot be parsed as what it
    should be: such a run cannot be used at all, verified or not.
    """

    file: str
    message: str
    readable: bool = True


@dataclass(frozen=True)
class RunCheck:
    """One run checked against its manifest, with the files the catalog reads."""

    key: str
    """``<experiment>/<run-id>`` or ``<experiment>/sweep-<study>/trial-<n>``."""
    path: Path
    problems: tuple[Problem, ...]
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """Every file is present and matches the manifest, and each parses."""
        return not self.problems

    @property
    def readable(self) -> bool:
        """Every file the catalog needs is present and parses (it may still be unverified)."""
        return all(problem.readable for problem in self.problems)

    def describe(self) -> str:
        """The problems as ``file: message; file: message``."""
        return "; ".join(f"{problem.file}: {problem.message}" for problem in self.problems)


def run_dirs(root: Path) -> Iterator[Path]:
    """Every directory under ``root`` where a run or sweep trial may be, sorted.

    ``<experiment>/<run-id>/`` and ``<experiment>/sweep-<study>/trial-<n>/``;
    hidden entries (staging dirs) are skipped, and so is a directory that holds
    neither a manifest nor any run file (a ``reports`` dir, an empty dir).
    """
    candidates = [
        path
        for path in sorted(root.glob("*/*/")) + sorted(root.glob("*/sweep-*/trial-*/"))
        if path.is_dir()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
        and not (path.parent.parent == root and path.name.startswith("sweep-"))
    ]
    for path in candidates:
        if any((path / name).exists() for name in (MANIFEST, *RUN_FILES)):
            yield path


def check_runs(root: Path) -> list[RunCheck]:
    """`check_run` for every run and trial under ``root``."""
    return [check_run(path, path.relative_to(root).as_posix()) for path in run_dirs(root)]


def check_run(run_dir: Path, key: str) -> RunCheck:
    """Compare ``run_dir`` with its manifest and read its config, summary and provenance."""
    problems = _manifest_problems(run_dir)
    listed_missing = {problem.file for problem in problems if not problem.readable}
    for name in RUN_FILES:
        if not (run_dir / name).is_file() and name not in listed_missing:
            problems.append(Problem(name, "missing", readable=False))
    config = _mapping(run_dir, "config.yaml", problems)
    summary = _mapping(run_dir, "summary.json", problems)
    provenance = (
        _mapping(run_dir, "provenance.json", problems)
        if (run_dir / "provenance.json").is_file()
        else {}
    )
    for name in PARQUET_FILES:
        problems.extend(_parquet_problems(run_dir / name))
    return RunCheck(key, run_dir, tuple(problems), config, summary, provenance)


def _manifest_problems(run_dir: Path) -> list[Problem]:
    """Files missing, changed or unlisted compared with ``manifest.json``."""
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return [Problem(MANIFEST, "missing: the run's files cannot be verified")]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return [Problem(MANIFEST, f"cannot be read ({_first_line(error)})")]
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return [Problem(MANIFEST, "not a manifest (no 'files' mapping)")]
    problems = []
    for name, expected in sorted(files.items()):
        path = run_dir / name
        if not path.resolve().is_relative_to(run_dir.resolve()):
            problems.append(Problem(MANIFEST, f"lists a file outside the run: {name}"))
        elif not path.is_file():
            missing = "missing (the manifest lists it)"
            problems.append(Problem(name, missing, readable=name not in RUN_FILES))
        else:
            problems.extend(_file_problems(path, name, expected))
    present = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    for name in sorted(present - set(files) - {MANIFEST}):
        problems.append(Problem(name, "not listed in the manifest"))
    return problems


def _file_problems(path: Path, name: str, expected: Any) -> list[Problem]:
    """Whether one listed file has the manifest's size and SHA-256."""
    if not isinstance(expected, dict):
        return [Problem(MANIFEST, f"has no size and SHA-256 for {name}")]
    size = path.stat().st_size
    if size != expected.get("bytes"):
        return [Problem(name, f"{size} bytes, but the manifest says {expected.get('bytes')}")]
    if sha256(path) != expected.get("sha256"):
        return [Problem(name, "contents differ from the manifest (SHA-256 mismatch)")]
    return []


def _mapping(run_dir: Path, name: str, problems: list[Problem]) -> dict[str, Any]:
    """The mapping in a YAML or JSON file, or {} with a problem recorded."""
    path = run_dir / name
    if not path.is_file():
        return {}
    try:
        text = path.read_text()
        data = yaml.safe_load(text) if name.endswith(".yaml") else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        problems.append(Problem(name, f"cannot be parsed ({_first_line(error)})", readable=False))
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        problems.append(Problem(name, f"not a mapping (holds a {kind})", readable=False))
        return {}
    return data


def _parquet_problems(path: Path) -> list[Problem]:
    """Whether a Parquet file's footer and schema can be read (a truncated file cannot)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return []
    try:
        pq.read_metadata(path)
    except (OSError, ValueError) as error:
        return [Problem(path.name, f"not readable Parquet ({_first_line(error)})", readable=False)]
    return []


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass(frozen=True)
class Partial:
    """A ``.partial`` staging dir: a run that has not finished, or never will."""

    path: Path
    bytes: int
    writer: dict[str, Any] | None
    """The process that created it (host, pid, start), if it recorded one."""

    def keep_reason(self) -> str | None:
        """Why it must not be removed (its writer may still run), or None if it is stale."""
        if self.writer is None:
            return None
        pid, host = self.writer.get("pid"), self.writer.get("host")
        if host != socket.gethostname():
            return f"written by pid {pid} on host {host}, which cannot be checked from here"
        if isinstance(pid, int) and process_alive(pid, self.writer.get("start")):
            return f"still being written by pid {pid}"
        return None

    def remove(self) -> None:
        """Delete the staging dir and everything in it."""
        shutil.rmtree(self.path)


def find_partials(root: Path) -> list[Partial]:
    """The staging dirs of unfinished runs and trials under ``root``."""
    found = sorted(root.glob(f"*/.*{PARTIAL_SUFFIX}")) + sorted(
        root.glob(f"*/sweep-*/.*{PARTIAL_SUFFIX}")
    )
    return [read_partial(path) for path in found if path.is_dir()]


def read_partial(path: Path) -> Partial:
    """The staging dir ``path`` with its size and the writer it records."""
    return Partial(path, _size(path), _writer(path / WRITER_RECORD))


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _writer(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
