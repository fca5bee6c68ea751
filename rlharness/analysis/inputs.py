"""Finding a notebook's inputs, and saying which command produces them when they are absent."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rlharness.catalog import Catalog
from rlharness.errors import ResultsError, SpecError
from rlharness.storage import default_url

if TYPE_CHECKING:
    import optuna


def run_command(experiment: str, root: Path) -> str:
    """The command that publishes a run of ``experiment`` under ``root``."""
    return f"rlharness run experiments/{experiment}.yaml --results {root}"


def sweep_command(experiment: str, root: Path, study: str | None = None) -> str:
    """The command that runs (or resumes) the sweep of ``experiment`` under ``root``."""
    named = f" --study {study}" if study and study != experiment else ""
    return f"rlharness sweep experiments/{experiment}.yaml --results {root}{named}"


def open_results(root: Path, experiments: Sequence[str]) -> Catalog:
    """The catalog of ``root``; `ResultsError` naming the commands if no experiment has a run.

    At least one of ``experiments`` must have a run; the others may be absent.
    """
    commands = "\n".join(f"    {run_command(name, root)}" for name in experiments)
    hint = f"produce them with:\n{commands}"
    try:
        catalog = Catalog(root)
    except ResultsError as error:
        raise ResultsError(f"{error}\n{hint}") from None
    if not any(catalog.latest_run(name) for name in experiments):
        raise ResultsError(f"{root} holds no run of {', '.join(experiments)}; {hint}")
    return catalog


def require_run(root: Path, experiment: str) -> tuple[Catalog, str]:
    """The catalog of ``root`` and the latest run of ``experiment``, or `ResultsError`."""
    catalog = open_results(root, [experiment])
    return catalog, str(catalog.latest_run(experiment))


def study_storage(root: Path, experiment: str, storage_url: str | None = None) -> str:
    """``storage_url`` if given, else the sweep's default SQLite storage beside the results."""
    return storage_url or default_url(root, experiment)


def require_study(storage_url: str, study: str, experiment: str, root: Path) -> optuna.Study:
    """The stored study, or `ResultsError` with the command that runs the sweep."""
    from rlharness.storage import load_study

    try:
        return load_study(storage_url, study)
    except SpecError as error:
        command = sweep_command(experiment, root, study)
        raise ResultsError(f"{error}; run the sweep first:\n    {command}") from None
