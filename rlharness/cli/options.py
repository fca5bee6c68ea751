"""Parameters that several commands take: one declaration, one name and one help text each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from rlharness.cli.console import fail
from rlharness.cli.tables import Format
from rlharness.errors import SpecError

if TYPE_CHECKING:
    from rlharness.spec import ExperimentSpec

T = TypeVar("T")

SpecArgument = Annotated[
    Path, typer.Argument(help="Experiment YAML file, e.g. experiments/triad_cube_baird.yaml.")
]
DEFAULT_RESULTS = Path("results")
ResultsOption = Annotated[
    Path,
    typer.Option(
        "--results",
        help="Results root: RESULTS/<experiment>/ holds its runs, sweep trials and default "
        "study storage.",
    ),
]
OutAlias = Annotated[Path | None, typer.Option("--out", hidden=True, help="Old name of --results.")]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar="RLHARNESS_STORAGE",
        help="Optuna storage URL (default: sqlite:///RESULTS/<experiment>/optuna.db); "
        "postgresql://user:password@host/db on a cluster. Pass a URL with a password "
        "through RLHARNESS_STORAGE, not the command line.",
    ),
]
StudyOption = Annotated[
    str | None, typer.Option("--study", help="Study name (default: the experiment's name).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar or table.")]
MetricOption = Annotated[
    str | None,
    typer.Option(
        "--metric",
        help="Per-seed metric, e.g. final_sqrt_ve, final_max_abs_value, final_eval_return, "
        "return_auc (default: the first the runs have of these).",
    ),
]
RepsOption = Annotated[
    int, typer.Option("--reps", min=100, help="Bootstrap resamples for the intervals.")
]
BootstrapSeedOption = Annotated[
    int, typer.Option("--bootstrap-seed", help="Seed of the bootstrap resampling.")
]
FormatOption = Annotated[Format, typer.Option("--format", help="Output format.")]
IncludeUnverifiedOption = Annotated[
    bool,
    typer.Option(
        "--include-unverified",
        help="Also use runs whose files do not match their manifests (with a warning); "
        "runs whose files cannot be read are left out even so.",
    ),
]


def either(name: str, value: T, old_name: str, old_value: T | None, default: T) -> tuple[T, str]:
    """The value given under an option's documented name or its old one, and the name used.

    Both given is bad input (the documented one counts as given when it differs from
    ``default``); the name comes back so that messages speak of what the user typed.
    """
    if old_value is None:
        return value, name
    if value != default:
        fail(SpecError(name, [f"given twice: as {name} and as {old_name}, its old form"]))
    return old_value, old_name


def load_experiment(spec_path: Path) -> ExperimentSpec:
    """The experiment in ``spec_path``, or its problems reported as bad input."""
    from rlharness.spec import load_spec

    try:
        return load_spec(spec_path)
    except SpecError as error:
        fail(error)


def check_writable(results: Path, option: str) -> None:
    """``results`` is, or can become, a writable directory (nothing is created here)."""
    existing = results
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise SpecError(
            option,
            [f"cannot hold results under {results}: {existing} is not a writable directory"],
        )
