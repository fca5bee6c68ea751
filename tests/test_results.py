"""The results store: atomic files, staged runs published on finish, provenance."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import rlharness.local_run
import rlharness.publish
import rlharness.results
from rlharness.results import (
    MANIFEST,
    RunWriter,
    atomic_write,
    atomic_write_parquet,
    atomic_write_text,
    new_run_id,
    provenance,
)
from rlharness.spec import parse_spec
from tests.conftest import REPO, TINY_SPEC


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- atomic_write ------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    path = tmp_path / "summary.json"
    path.write_bytes(b"previous content")

    def write(stream):
        stream.write(b"half of the new")
        stream.flush()
        raise error("interrupted")

    with pytest.raises(error):
        atomic_write(path, write)
    assert path.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_failed_first_write_creates_nothing(tmp_path):
    path = tmp_path / "sub" / "metrics.parquet"

    def write(stream):
        stream.write(b"PAR1")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, write)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_successful_write_replaces_content_with_mode_644(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"old")
    path.chmod(0o600)
    atomic_write(path, lambda stream: stream.write(b"new content"))
    assert path.read_bytes() == b"new content"
    assert mode(path) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]

    fresh = tmp_path / "deeper" / "notes.txt"
    atomic_write_text(fresh, "héllo\n")
    assert fresh.read_text(encoding="utf-8") == "héllo\n"
    assert mode(fresh) == 0o644


def test_atomic_write_parquet_round_trips(tmp_path):
    frame = pd.DataFrame({"seed": [0, 1], "sqrt_ve": [0.5, float("nan")]})
    path = tmp_path / "m.parquet"
    atomic_write_parquet(path, frame)
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    assert mode(path) == 0o644


# --- RunWriter ---------------------------------------------------------------------------------


@pytest.fixture
def spec(tiny_spec):
    return parse_spec(tiny_spec)


def test_run_ids_are_sortable_and_unique():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    for run_id in ids:
        assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_id)


def test_files_are_staged_until_finish(tmp_path, spec):
    writer = RunWriter(tmp_path, spec)
    experiment = tmp_path / "tiny"
    assert writer.staging_dir == experiment / f".{writer.run_id}.partial"
    assert writer.final_dir == experiment / writer.run_id

    writer.write_yaml("config.yaml", {"name": "tiny", "run": {"seeds": 3}})
    writer.write_json("summary.json", {"value": 1.5})
    writer.write_parquet("metrics.parquet", pd.DataFrame({"step": [0, 10]}))
    atomic_write(writer.path("plots/a.png"), lambda stream: stream.write(b"\x89PNG fake"))
    assert [p.name for p in experiment.iterdir()] == [writer.staging_dir.name]
    assert not writer.final_dir.exists()
    assert writer.path("config.yaml").parent == writer.staging_dir

    final = writer.finish()
    assert final == writer.final_dir
    assert [p.name for p in experiment.iterdir()] == [writer.run_id], "staging dir renamed"

    files = {str(p.relative_to(final)) for p in final.rglob("*") if p.is_file()}
    assert files == {
        "config.yaml",
        "summary.json",
        "metrics.parquet",
        "plots/a.png",
        MANIFEST,
    }
    manifest = json.loads((final / MANIFEST).read_text())
    assert manifest["run_id"] == writer.run_id
    assert set(manifest["files"]) == files - {MANIFEST}
    for name, entry in manifest["files"].items():
        content = (final / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["bytes"] == len(content)
    assert json.loads((final / "summary.json").read_text()) == {"value": 1.5}
    assert (final / "plots/a.png").read_bytes() == b"\x89PNG fake"


def test_json_accepts_numpy_scalars(tmp_path, spec):
    import numpy as np

    writer = RunWriter(tmp_path, spec)
    writer.write_json("s.json", {"a": np.float64(0.25), "b": np.int64(3)})
    assert json.loads(writer.path("s.json").read_text()) == {"a": 0.25, "b": 3}
    writer.abandon()


def test_abandon_removes_the_staging_dir(tmp_path, spec):
    writer = RunWriter(tmp_path, spec)
    writer.write_json("summary.json", {"partial": True})
    writer.abandon()
    assert not writer.staging_dir.exists()
    assert not writer.final_dir.exists()
    assert list((tmp_path / "tiny").iterdir()) == []


def test_two_writers_never_share_a_dir(tmp_path, spec):
    first, second = RunWriter(tmp_path, spec), RunWriter(tmp_path, spec)
    assert first.run_id != second.run_id
    first.write_json("summary.json", {"run": 1})
    second.write_json("summary.json", {"run": 2})
    assert json.loads((first.finish() / "summary.json").read_text()) == {"run": 1}
    assert json.loads((second.finish() / "summary.json").read_text()) == {"run": 2}


# --- run_experiment ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_spec():
    data = copy.deepcopy(TINY_SPEC)
    data["run"] = {"steps": 20, "log_every": 10, "seeds": 2}
    return parse_spec(data)


@pytest.fixture(scope="module")
def template_run(tmp_path_factory, quick_spec):
    """One complete run, made once per module."""
    root = tmp_path_factory.mktemp("template") / "results"
    run_dir, _ = rlharness.local_run.run_experiment(quick_spec, root, command=["test"])
    return root, run_dir


@pytest.fixture
def previous_run(tmp_path, template_run):
    """A fresh results root that already holds one complete run."""
    template_root, template_dir = template_run
    root = tmp_path / "results"
    shutil.copytree(template_root, root)
    return root, root / template_dir.relative_to(template_root), tree(root)


def test_run_experiment_writes_a_complete_run(previous_run, quick_spec):
    root, run_dir, _ = previous_run
    assert run_dir.parent == root / "tiny"
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]
    names = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    assert {"config.yaml", "provenance.json", "metrics.parquet", "outcomes.parquet"} <= names
    assert {"summary.json", MANIFEST, "plots/weights.png"} <= names
    assert len(pd.read_parquet(run_dir / "metrics.parquet")) == 2 * 2 * 3
    assert all(mode(run_dir / name) == 0o644 for name in names)


def staging_dirs(root: Path) -> list[Path]:
    return sorted(root.glob("*/.*.partial"))


@pytest.mark.parametrize("failure", [KeyboardInterrupt, MemoryError])
def test_interrupted_run_publishes_nothing_and_keeps_its_grid_points(
    previous_run, quick_spec, monkeypatch, failure
):
    root, _, before = previous_run

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(rlharness.publish, "_write_plots", fail)
    with pytest.raises(failure):
        rlharness.local_run.run_experiment(quick_spec, root)
    (staging,) = staging_dirs(root)
    after = {path: data for path, data in tree(root).items() if staging.name not in path}
    assert after == before, "no new run dir, old run untouched"
    staged = sorted(p.name for p in (staging / ".trials").iterdir())
    assert staged == ["v0", "v1"], "both grid points are kept for a resume"


def test_interrupt_inside_a_file_write_publishes_nothing(previous_run, quick_spec, monkeypatch):
    root, _, before = previous_run

    def half_parquet(self, stream, **kwargs):
        stream.write(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_parquet)
    with pytest.raises(KeyboardInterrupt):
        rlharness.local_run.run_experiment(quick_spec, root)
    assert tree(root) == before, "no grid point finished: no .partial dir kept"
    assert not list(root.rglob("*.tmp")) and not list(root.rglob("*.partial"))


def test_interrupt_before_any_grid_point_keeps_no_dirs(tmp_path, quick_spec, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rlharness.local_run, "run_trials", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rlharness.local_run.run_experiment(quick_spec, tmp_path / "results")
    assert list((tmp_path / "results").rglob("*")) == [tmp_path / "results" / "tiny"]


# --- provenance --------------------------------------------------------------------------------


def test_provenance_records_versions_and_git(monkeypatch):
    record = provenance(["rlharness", "run", "x.yaml"])
    assert record["command"] == ["rlharness", "run", "x.yaml"]
    packages = record["packages"]
    assert set(packages) == set(rlharness.results.TRACKED_PACKAGES)
    import numpy
    import pydantic

    assert packages["numpy"] == numpy.__version__
    assert packages["pydantic"] == pydantic.VERSION
    assert packages["rlharness"] == "0.1.0"
    assert re.fullmatch(r"3\.\d+\.\d+", record["python"])
    assert set(record["git"]) == {"commit", "dirty"}
    json.dumps(record)  # JSON-ready as is

    if (REPO / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        if head.returncode == 0:
            assert record["git"]["commit"] == head.stdout.strip()
            assert isinstance(record["git"]["dirty"], bool)


def test_provenance_without_git(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(rlharness.results.subprocess, "run", no_git)
    assert provenance([])["git"] == {"commit": None, "dirty": None}
