"""Parameters that several commands take: one declaration, one name and one help text each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from rlharness.cli.console import fail
from rlharness.cli.tables import Format
from rlharness.errors import SpecError

if TYPE_CHECKING:
    from rlharness.spec import ExperimentSpec

T = TypeVar("T")

SeedsOption = Annotated[
    int | None, typer.Option("--seeds", min=1, help="Number of seeds (overrides run.seeds).")
]
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
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="PATH=VALUE",
        help="Set a field of the experiment file before it is validated, e.g. --set "
        "agent.alpha=0.02 --set run.steps=2000: a dotted field path, the value read as YAML "
        "([1, 2], null, true); repeatable. The run records the resolved experiment.",
    ),
]
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


def load_experiment(spec_path: Path, overrides: dict[str, Any] | None = None) -> ExperimentSpec:
    """The experiment in ``spec_path`` with ``overrides`` set, or its problems as bad input."""
    from rlharness.spec import load_spec

    try:
        return load_spec(spec_path, overrides)
    except SpecError as error:
        fail(error)


def read_overrides(sets: list[str] | None) -> dict[str, Any]:
    """The ``--set`` options as dotted path -> value, or their problems as bad input."""
    from rlharness.spec import parse_overrides

    try:
        return parse_overrides(sets or [])
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


def with_seeds(spec: ExperimentSpec, seeds: int) -> ExperimentSpec:
    """``spec`` with ``--seeds`` as its run.seeds, validated like the file (bounds, memory)."""
    from rlharness.spec import parse_spec

    data = spec.model_dump()
    data["run"]["seeds"] = seeds
    return parse_spec(data, "--seeds")
