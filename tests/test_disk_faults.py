"""A full disk under ``rlharness run`` and ``sweep`` (a real, small tmpfs), and removing what
unfinished runs left behind (a real killed process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from rlharness.catalog import Catalog
from rlharness.errors import ResultsError
from rlharness.storage import load_study
from tests.clusters import client_env
from tests.conftest import REPO, TINY_SPEC
from tests.test_cli import RLHARNESS, cli, write_spec

FAULT = 1
TMPFS_BYTES = 2 * 1024 * 1024
ROOM_FOR_DATA = 48 * 1024
"""Room for the run's config, provenance, outcomes and metrics (about 32 KiB in tmpfs pages),
not for its figures (the first is about 33 KiB): the disk fills during the run's writes."""
WRITE_ERROR = re.compile(r"error: cannot write (\S+): No space left on device \((.+) free there\)")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (root is needed: CI runs as root)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs (root is needed): {mounted.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with one file so that only ``leave`` bytes stay free; the file."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with filler.open("wb") as stream:
        os.posix_fallocate(stream.fileno(), 0, free - leave)
    return filler


def assert_write_failed(completed: subprocess.CompletedProcess[str]) -> re.Match[str]:
    """Exit 1, one message naming the file and the free space, and no traceback."""
    output = completed.stdout + completed.stderr
    assert completed.returncode == FAULT, output
    assert "Traceback" not in output
    found = WRITE_ERROR.search(completed.stderr)
    assert found, completed.stderr
    return found


def published(root: Path) -> list[str]:
    """The runs the catalog takes as complete."""
    try:
        return list(Catalog(root).entries)
    except ResultsError as error:
        assert "holds no published runs" in str(error)
        return []


def test_run_on_a_full_disk_keeps_what_fits_and_publishes_nothing(disk, tmp_path):
    # without live streams, which would take the room left for the run's own files
    spec_path = write_spec(
        tmp_path, TINY_SPEC | {"run": {**TINY_SPEC["run"], "tensorboard": False}}
    )
    out = disk / "results"
    filler = fill(disk, ROOM_FOR_DATA)

    failed = cli("run", spec_path, "--results", out, "--quiet")
    found = assert_write_failed(failed)
    (staging,) = (out / "tiny").glob(".*.partial")
    assert Path(found.group(1)).is_relative_to(staging), "the file that did not fit is named"
    assert f"the files written before it are kept in {staging} (.trials/v0" in failed.stderr
    assert (staging / ".trials" / "v0" / "outcomes.parquet").is_file(), "a finished grid point"
    assert "manifest.json" not in {p.name for p in staging.iterdir()}
    assert not list(staging.rglob("*.tmp"))
    assert "--remove-partial" in failed.stderr and "--resume" in failed.stderr
    assert published(out) == []
    verified = cli("verify", out)
    assert verified.returncode == 0, verified.stdout
    assert f"partial: {staging} (" in verified.stdout, "the kept files are pointed out"

    filler.unlink()
    resumed = cli("run", spec_path, "--results", out, "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert len(published(out)) == 1 and not staging.exists()
    assert cli("verify", out).returncode == 0


def test_run_on_a_disk_with_no_room_keeps_nothing(disk, tmp_path):
    spec_path = write_spec(tmp_path, TINY_SPEC)
    out = disk / "results"
    (out / "tiny").mkdir(parents=True)
    fill(disk, 0)
    failed = cli("run", spec_path, "--results", out, "--quiet")
    assert_write_failed(failed)
    assert "kept in" not in failed.stderr
    assert list((out / "tiny").iterdir()) == [], "no staging dir, no temporary dir"


def counts(url: str) -> Counter[str]:
    return Counter(trial.state.name for trial in load_study(url, "tiny").trials)


def test_sweep_on_a_full_disk_fails_the_trial_and_resumes_after(ray_head, disk, tmp_path):
    spec_path = write_spec(tmp_path, TINY_SPEC | {"sweep": {"sampler": "grid"}})
    out = disk / "results"
    url = f"sqlite:///{tmp_path / 'optuna.db'}"  # the study off the full disk
    command = (
        "sweep", spec_path, "--results", out, "--storage", url, "--address", ray_head.address,
        "--workers", "1", "--quiet",
    )  # fmt: skip
    (out / "tiny").mkdir(parents=True)
    filler = fill(disk, 8 * 1024)

    env = {**client_env(), "COLUMNS": "200"}
    failed = subprocess.run(
        [str(RLHARNESS), *map(str, command)], capture_output=True, text=True, env=env, timeout=300
    )
    assert_write_failed(failed)
    assert "the trial was failed and its point re-queued" in failed.stderr
    found = counts(url)
    assert found["COMPLETE"] == 0 and found["RUNNING"] == 0 and found["FAIL"] >= 1
    study = load_study(url, "tiny")
    reasons = [t.user_attrs.get("fail_reason", "") for t in study.trials]
    assert any("its results could not be written" in reason for reason in reasons)
    assert published(out) == []

    filler.unlink()
    resumed = subprocess.run(
        [str(RLHARNESS), *map(str, command)], capture_output=True, text=True, env=env, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "2 of 2 trials finished" in resumed.stdout
    complete = [t for t in load_study(url, "tiny").trials if t.state == TrialState.COMPLETE]
    assert sorted(published(out)) == [
        f"tiny/sweep-tiny/trial-{trial.number:05d}" for trial in complete
    ]


WRITER = """
import sys
from pathlib import Path
from rlharness.results import RunWriter
from rlharness.spec import parse_spec
from tests.conftest import TINY_SPEC

writer = RunWriter(Path(sys.argv[1]), parse_spec(TINY_SPEC))
writer.write_json("summary.json", {"partial": True})
print(writer.staging_dir, flush=True)
sys.stdin.read()
"""


def test_remove_partial_keeps_a_live_writers_dir_and_removes_a_killed_ones(tmp_path):
    root = tmp_path / "results"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert writer.stdout is not None
        staging = Path(writer.stdout.readline().strip())
        live = cli("verify", root, "--remove-partial")
        assert live.returncode == 0, live.stdout + live.stderr
        assert f"partial: kept {staging}" in live.stdout
        assert f"still being written by pid {writer.pid}" in live.stdout
        assert staging.is_dir()
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -9 and staging.is_dir(), "a killed run leaves its staging dir"
    stale = cli("verify", root, "--remove-partial")
    assert stale.returncode == 0, stale.stdout + stale.stderr
    assert f"partial: removed {staging}" in stale.stdout
    assert not staging.exists()
