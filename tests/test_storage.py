"""Storage URLs: checked before anything is created, opened by many processes at once."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import optuna
import pytest
from sqlalchemy.engine import make_url

from rlharness.errors import SpecError
from rlharness.storage import check, default_url, open_storage


def _open_in_step(url: str, barrier: Any) -> str:
    """Open a storage the moment every process of the round is ready; the error, if any."""
    barrier.wait()
    try:
        storage = open_storage(url)
        optuna.create_study(storage=storage, study_name="race", load_if_exists=True)
    except Exception as error:  # reported to the test, which names it
        return f"{type(error).__name__}: {error}"
    return ""


def _race(urls: list[str], processes: int = 6) -> list[str]:
    """Each URL opened by ``processes`` processes at once; every error they met."""
    context = multiprocessing.get_context("spawn")
    problems = []
    with context.Manager() as manager, context.Pool(processes) as pool:
        for url in urls:
            barrier = manager.Barrier(processes)
            problems += [p for p in pool.starmap(_open_in_step, [(url, barrier)] * processes) if p]
    return problems


def test_launchers_and_readers_opening_a_new_sqlite_database_at_once_never_race(tmp_path):
    urls = [f"sqlite:///{tmp_path / str(round_)}/optuna.db" for round_ in range(4)]
    for round_ in range(4):
        (tmp_path / str(round_)).mkdir()
    assert _race(urls) == []
    for url in urls:
        assert optuna.get_all_study_names(open_storage(url)) == ["race"]


def test_launchers_opening_a_new_postgresql_database_at_once_never_race(postgres_url):
    from sqlalchemy import create_engine, text

    names = [f"race_{os.getpid()}_{time.time_ns()}_{round_}" for round_ in range(3)]
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in names:
            connection.execute(text(f"CREATE DATABASE {name}"))
    base = make_url(postgres_url)
    urls = [base.set(database=name).render_as_string(hide_password=False) for name in names]
    try:
        assert _race(urls) == []
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


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
