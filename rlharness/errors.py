"""User-facing errors, all in one place: each says what is wrong and what to do.

`SpecError`: bad input, reported by field with what is allowed. `ResultsError`:
results that cannot be read or compared as asked. `ResultsWriteError`: a run's
file that cannot be written. `StorageLostError`: a sweep's database that failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_MESSAGE_CHARS = 600
"""No message is longer: echoed values are shortened where quoted; this caps the rest."""


class SpecError(Exception):
    """An experiment that cannot run as written; each message names a field."""

    def __init__(self, where: str, messages: list[str]) -> None:
        messages = [_cap(message) for message in messages]
        super().__init__(f"{where}: " + "; ".join(messages))
        self.where = where
        self.messages = messages


class ResultsError(Exception):
    """Results that cannot be read or compared as asked; the message says what is there."""


class ResultsWriteError(Exception):
    """A file of a run could not be written; the message says what, where and the free space.

    ``kept`` lists the files written before the failure that stay in the
    staging directory ``staging_dir`` (set by whoever salvages the run; empty
    when nothing was kept).
    """

    def __init__(self, path: Path, reason: str, free: str) -> None:
        self.path = path
        self.reason = reason
        self.staging_dir: Path | None = None
        self.kept: list[str] = []
        super().__init__(f"cannot write {path}: {reason} ({free})")


class StorageLostError(Exception):
    """The study's database failed during a sweep (stopped server, lost connection, full disk)."""


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters so that messages quote values, not dump them."""
    return short_text(_safe_repr(value), limit)


def short_text(text: str, limit: int = 60) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except (RecursionError, ValueError):
        # nested too deeply to print, or an int too long for str(); its type still helps
        return f"<{type(value).__name__}>"


def _cap(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    half = MAX_MESSAGE_CHARS // 2 - 3
    return f"{message[:half]} ... {message[-half:]}"
