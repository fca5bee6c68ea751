"""Storage URLs: masked wherever shown, checked before anything is created; stale launchers."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from rlharness.errors import SpecError
from rlharness.results import provenance
from rlharness.storage import check, default_url, mask
from rlharness.sweep import STALE_AFTER_S, Launcher, stale_reason


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://user:secret@db:5432/s", "postgresql://user:***@db:5432/s"),
        ("postgresql+psycopg://u:p%40ss@h/s", "postgresql+psycopg://u:***@h/s"),
        ("--storage=postgresql://u:with@at@h/s", "--storage=postgresql://u:***@h/s"),
        (
            "a postgresql://u:x@h/s and mysql://v:y@k/t",
            "a postgresql://u:***@h/s and mysql://v:***@k/t",
        ),
        ("postgresql://user@db/s", "postgresql://user@db/s"),
        ("sqlite:////tmp/x/optuna.db", "sqlite:////tmp/x/optuna.db"),
        ("no url here: a:b@c", "no url here: a:b@c"),
    ],
)
def test_mask_hides_passwords_only(text, masked):
    assert mask(text) == masked


def test_provenance_never_records_a_password():
    record = provenance(["rlharness", "sweep", "x.yaml", "--storage", "postgresql://u:pw1@h/s"])
    assert record["command"][-1] == "postgresql://u:***@h/s"


def test_default_storage_is_an_absolute_sqlite_file_beside_the_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_url(tmp_path / "results", "cube") == (
        f"sqlite:///{tmp_path}/results/cube/optuna.db"
    )
    from pathlib import Path

    assert default_url(Path("results"), "cube") == f"sqlite:///{tmp_path}/results/cube/optuna.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite://", "an in-memory database ends with the launcher"),
        ("sqlite:///:memory:", "an in-memory database ends with the launcher"),
        ("ftp://host/file", "unknown database 'ftp'"),
        ("::", "is not a database URL"),
    ],
)
def test_check_refuses_storages_that_cannot_hold_a_study(url, expected):
    with pytest.raises(SpecError) as caught:
        check(url)
    assert caught.value.where == "--storage"
    assert expected in caught.value.messages[0]


def test_check_creates_no_sqlite_file(tmp_path):
    database = tmp_path / "a" / "b" / "optuna.db"
    check(f"sqlite:///{database}")
    assert not (tmp_path / "a").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpecError, match="not a writable directory"):
        check(f"sqlite:///{blocker}/optuna.db")


def test_a_running_trial_is_stale_when_its_launcher_is_gone():
    me = Launcher.this()
    now = time.time()

    def running(owner: dict, heartbeat: float) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(
            state=TrialState.RUNNING, user_attrs={"launcher": owner, "heartbeat": heartbeat}
        )

    assert stale_reason(running(me.record(), now - 10 * STALE_AFTER_S), me, now) is None
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = {**me.record(), "id": "other", "pid": int(exited.stdout)}
    assert "is gone" in (stale_reason(running(dead, now), me, now) or "")
    elsewhere = {**me.record(), "id": "other", "host": "another-host", "pid": 1}
    assert stale_reason(running(elsewhere, now - 5), me, now) is None
    assert "no heartbeat for" in (
        stale_reason(running(elsewhere, now - STALE_AFTER_S - 1), me, now) or ""
    )
    reused = {**me.record(), "id": "other", "start": (me.start or 0) + 1}
    assert "is gone" in (stale_reason(running(reused, now), me, now) or ""), "a reused pid"
