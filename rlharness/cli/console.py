"""The one console of the command line, its exit codes, and its one way to report an error.

Every message goes out whole on one line (no wrapping on a narrow terminal) and
without a traceback: bad input (`fail`) exits `BAD_INPUT`, a fault of the
machinery (`fault`, `write_failed`) exits `FAULT`, Ctrl-C exits `INTERRUPTED`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from rlharness.errors import SpecError

if TYPE_CHECKING:
    from rlharness.errors import ResultsError, ResultsWriteError

FAULT = 1
"""A fault of the machinery (storage, disk), reported in one message; rerunning resumes."""
UNVERIFIED = 1
"""``verify``: some run does not match its manifest."""
BAD_INPUT = 2
"""Input that cannot be used as given: one message naming the field, file or option."""
INTERRUPTED = 130
"""Stopped by Ctrl-C (128 + SIGINT); running the same command again resumes."""

console = Console()
errors = Console(stderr=True)


def plain(text: str, *, stderr: bool = False) -> None:
    """``text`` as it is (no markup, no highlighting, never wrapped), on stdout or stderr."""
    (errors if stderr else console).print(text, markup=False, highlight=False, soft_wrap=True)


def fail(error: SpecError | ResultsError) -> NoReturn:
    """Bad input as one message on stderr, without a traceback; exit `BAD_INPUT`.

    A `SpecError` names where (a field, a file, an option) and lists each problem on
    its own line; any other error (`ResultsError`) is its one line of text.
    """
    if isinstance(error, SpecError):
        errors.print(f"[bold red]error:[/] {escape(error.where)}:", highlight=False, soft_wrap=True)
        for message in error.messages:
            plain(f"  - {message}", stderr=True)
    else:
        errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(BAD_INPUT)


def fault(error: object, *next_steps: str) -> NoReturn:
    """A fault of the machinery (storage lost, disk full): the error, then what to do; exit 1."""
    plain(f"error: {error}", stderr=True)
    for step in next_steps:
        plain(step, stderr=True)
    raise typer.Exit(FAULT)


def write_failed(error: ResultsWriteError, results: Path, next_step: str) -> NoReturn:
    """Results that could not be written, what was kept, and what to do; exit `FAULT`."""
    kept = []
    if error.staging_dir is not None:
        kept.append(
            f"  the files written before it are kept in {error.staging_dir} "
            f"({', '.join(error.kept)}); that is not a run, and the catalog skips it"
        )
    fault(
        error,
        *kept,
        f"  {next_step}; `rlharness verify --results {results} --remove-partial` removes what "
        "unfinished runs left behind",
    )


def interrupted(message: str) -> NoReturn:
    """Stopped by Ctrl-C: what happened to the work in flight; exit `INTERRUPTED`."""
    plain(message, stderr=True)
    raise typer.Exit(INTERRUPTED)


def progress(quiet: bool) -> Progress:
    """A bar of finished out of total items, with elapsed time, on stderr."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=quiet,
    )
