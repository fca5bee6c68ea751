"""Optuna storage: a SQLite file beside the results by default, PostgreSQL on a cluster.

A storage URL may carry a password; `rlharness.masking.mask` hides it wherever a
URL is shown. `check` proves a storage usable before anything is created, so a
bad URL or an unreachable server leaves no study and no database file behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlharness.errors import SpecError, StorageLostError
from rlharness.masking import MASKED, mask

if TYPE_CHECKING:
    import optuna
    from optuna.storages import RDBStorage
    from sqlalchemy.engine import URL

DEFAULT_FILE = "optuna.db"
SQLITE_BUSY_TIMEOUT_S = 60
"""How long SQLite waits for a lock (a reader beside the launcher) before giving up."""
CONNECT_TIMEOUT_S = 10
OPEN_ATTEMPTS = 3
"""Launchers opening a new PostgreSQL storage at once may race creating its tables."""
WHERE = "--storage"

SCHEMA_LOCK_KEY = 0x726C68
"""PostgreSQL advisory-lock key under which launchers and readers create Optuna's tables."""


def default_url(out: Path, experiment: str) -> str:
    """``sqlite:///OUT/<experiment>/optuna.db`` with an absolute path."""
    return f"sqlite:///{(out / experiment / DEFAULT_FILE).resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases)."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return Path(parsed.database or "")


def check(url: str) -> None:
    """Raise `SpecError` unless ``url`` names a database that can hold studies; create nothing."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    parsed = _parse(url)
    try:
        engine = create_engine(parsed, poolclass=NullPool, connect_args=_connect_args(parsed))
    except ImportError as error:
        raise SpecError(
            WHERE,
            [
                f"{mask(url, url)}: its database driver is not installed ({error}); "
                "for PostgreSQL: pip install 'rlharness[postgres]'"
            ],
        ) from None
    except SQLAlchemyError:
        raise SpecError(
            WHERE,
            [f"{mask(url, url)}: unknown database {parsed.drivername!r}; use sqlite or postgresql"],
        ) from None
    if parsed.get_backend_name() == "sqlite":
        engine.dispose()
        _check_sqlite_file(url, parsed)
        return
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as error:
        raise SpecError(
            WHERE, [f"cannot connect to {mask(url, url)}: {_reason(error, parsed)}"]
        ) from None
    finally:
        engine.dispose()


def open_storage(url: str) -> RDBStorage:
    """An Optuna RDB storage on ``url``, its tables created if they are missing.

    Creating the tables is not atomic in Optuna (it checks, then creates), so
    every process that opens a storage here (launchers, ``status``, reports)
    does it under one lock: a SQLite database's directory locked with flock, or
    a PostgreSQL advisory lock. A reader never meets half-created tables, and two
    launchers never both create them.
    """
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import SQLAlchemyError

    parsed = _parse(url)
    engine_kwargs: dict[str, Any] = {"connect_args": _connect_args(parsed)}
    if parsed.get_backend_name() != "sqlite":
        engine_kwargs["pool_pre_ping"] = True
    for attempt in range(OPEN_ATTEMPTS):
        try:
            with _schema_lock(url, parsed):
                storage = RDBStorage(url, engine_kwargs=engine_kwargs)
            if parsed.get_backend_name() == "sqlite":
                _write_ahead(storage)
            return storage
        except (SQLAlchemyError, OSError) as error:
            if attempt == OPEN_ATTEMPTS - 1:
                raise SpecError(
                    WHERE, [f"cannot open {mask(url, url)}: {_reason(error, parsed)}"]
                ) from None
            time.sleep(0.5 * (attempt + 1))  # a connection that failed may succeed on a retry
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _schema_lock(url: str, parsed: URL) -> Iterator[None]:
    """Hold the lock under which Optuna's tables are created on this database."""
    if parsed.get_backend_name() == "sqlite":
        directory = os.open(Path(parsed.database or "").resolve().parent, os.O_RDONLY)
        try:
            fcntl.flock(directory, fcntl.LOCK_EX)
            yield
        finally:
            os.close(directory)  # closing the descriptor releases the lock
        return
    if parsed.get_backend_name() != "postgresql":
        yield
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(parsed, poolclass=NullPool, connect_args=_connect_args(parsed))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY}
                )
    finally:
        engine.dispose()


def lost(url: str, error: Exception) -> StorageLostError:
    """The error to raise when ``url``'s database fails under a running sweep."""
    cause = error.__cause__ if error.__cause__ is not None else error
    return StorageLostError(
        f"the study's storage {mask(url, url)} failed: {_reason(cause, _parse(url))}"
    )


def load_study(url: str, name: str) -> optuna.Study:
    """An existing study, or `SpecError` naming the studies the storage holds."""
    import optuna

    check(url)
    sqlite_file = sqlite_path(url)
    if sqlite_file is not None and not sqlite_file.is_file():
        raise SpecError(
            WHERE, [f"{url}: no such database file; run rlharness sweep first, or give --storage"]
        )
    storage = open_storage(url)
    names = sorted(optuna.get_all_study_names(storage))
    if name not in names:
        held = ", ".join(names) or "none"
        raise SpecError("study", [f"no study {name!r} in {mask(url, url)}; it holds: {held}"])
    return optuna.load_study(study_name=name, storage=storage)


def _parse(url: str) -> URL:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise SpecError(
            WHERE,
            [
                f"{mask(url)!r} is not a database URL; e.g. sqlite:///results/optuna.db or "
                "postgresql://user:password@host:5432/database"
            ],
        ) from None


def _check_sqlite_file(url: str, parsed: URL) -> None:
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        raise SpecError(
            WHERE, [f"{url}: an in-memory database ends with the launcher; name a file"]
        )
    path = Path(database)
    if path.exists() and not path.is_file():
        raise SpecError(WHERE, [f"{url}: {path} is not a file"])
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise SpecError(WHERE, [f"{url}: {ancestor} is not a writable directory"])


def _write_ahead(storage: RDBStorage) -> None:
    """SQLite in write-ahead-log mode: readers (status, a dashboard) never block the launcher.

    Commits are synced at checkpoints (synchronous=NORMAL): a killed process loses
    nothing; a power cut may lose the last commits but never corrupts the file.
    """
    from sqlalchemy import event

    def configure(connection: Any, _: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", configure)
    storage.engine.dispose()


def _connect_args(parsed: URL) -> dict[str, Any]:
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {"timeout": SQLITE_BUSY_TIMEOUT_S}
    if backend == "postgresql":
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def _reason(error: BaseException, parsed: URL) -> str:
    """The first line of the driver's message, without the password even if it echoes it."""
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    if parsed.password:
        text = text.replace(str(parsed.password), MASKED)
    return mask(text)
