"""Parameters that several commands take: one declaration, one name and one help text each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rlharness.cli.console import fail
from rlharness.cli.tables import Format
from rlharness.errors import SpecError

if TYPE_CHECKING:
    from rlharness.spec import ExperimentSpec

SpecArgument = Annotated[
    Path, typer.Argument(help="Experiment YAML file, e.g. experiments/triad_cube_baird.yaml.")
]
ResultsOption = Annotated[
    Path, typer.Option("--results", help="Results root holding <experiment>/<run-id>/ runs.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar or table.")]
RepsOption = Annotated[
    int, typer.Option("--reps", min=100, help="Bootstrap resamples for the intervals.")
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
