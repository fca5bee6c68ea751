"""``stability``: the predicted stable/divergent region over two knobs, checked against runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlharness.cli.console import fail, plain
from rlharness.cli.options import SpecArgument, check_writable, load_experiment
from rlharness.cli.tables import Format, print_frame
from rlharness.errors import SpecError

DEFAULT_STABILITY_ROOT = Path("results/stability")


def stability(
    spec_path: SpecArgument,
    x: Annotated[str, typer.Option("--x", help="Dotted field on the x axis, e.g. agent.alpha.")],
    y: Annotated[
        str, typer.Option("--y", help="Dotted field on the y axis, e.g. env.kwargs.gamma.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Directory of the CSV and figure (default: results/stability/<name>)."
        ),
    ] = None,
    x_values: Annotated[
        str | None,
        typer.Option(
            "--x-values", help="Comma-separated x values (default: the spec's grid values)."
        ),
    ] = None,
    y_values: Annotated[
        str | None,
        typer.Option(
            "--y-values", help="Comma-separated y values (default: the spec's grid values)."
        ),
    ] = None,
    resolution: Annotated[
        int, typer.Option("--resolution", min=2, max=400, help="Predicted points per axis.")
    ] = 40,
    no_runs: Annotated[bool, typer.Option("--no-runs", help="Predict only; run nothing.")] = False,
) -> None:
    """Predict divergence from the spectral radius of the exact expected map over two knobs, and
    count its agreement with runs of the spec at the given values."""
    from rlharness.agents.linear import update_kind
    from rlharness.agents.linear.stability import predicted_rule
    from rlharness.analysis.stability_map import (
        axis,
        point_spec,
        stability_figure,
        stability_map,
    )
    from rlharness.analysis.style import PAPER_FORMATS, save_figure
    from rlharness.spec import LinearAgentSpec

    spec = load_experiment(spec_path)
    where = f"experiment file {spec_path}"
    directory = out if out is not None else DEFAULT_STABILITY_ROOT / spec.name
    try:
        if x == y:
            raise SpecError("--y", [f"the two axes must differ, both are {x}"])
        check_writable(directory, "--out")
        x_axis = axis(spec, x, "--x", _parse(x_values, "--x-values"), resolution)
        y_axis = axis(spec, y, "--y", _parse(y_values, "--y-values"), resolution)
        result = stability_map(spec, x_axis, y_axis, not no_runs, where)
        agent = point_spec(spec, {}, where).agent
    except SpecError as error:
        fail(error)
    assert isinstance(agent, LinearAgentSpec)
    others = [field for field in spec.grid if field not in (x, y)]
    if update_kind(agent) == "sampled":
        plain(
            f"sampled {agent.name} is predicted by its mean update, the expected form of "
            f"{predicted_rule(agent)}; the map leaves out the sampling noise"
        )
    if agent.projection_radius is not None or "agent.projection_radius" in (x, y):
        plain(
            "the predicted map is the unprojected one: agent.projection_radius clips the target "
            "nonlinearly, so runs may stay bounded where rho > 1"
        )
    if others:
        fixed = ", ".join(f"{field}={spec.grid[field][0]}" for field in others)
        plain(f"other grid fields at their first value: {fixed}")
    shown = result.table[[x, y, "rho", "growth", "predicted", "measured", "agree"]]
    print_frame(shown, Format.table, f"{spec.name}: predicted (rho per update) vs runs")
    directory.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(directory / "stability.csv", index=False)
    written = save_figure(
        stability_figure(result, spec.name), directory / "stability", formats=PAPER_FORMATS
    )
    agree, total = result.agreement
    counted = f"agreement: {agree}/{total} points" if total else "no runs (--no-runs)"
    plain(f"{counted}; wrote {directory / 'stability.csv'}, {', '.join(map(str, written))}")


def _parse(text: str | None, option: str) -> list[float] | None:
    """Comma-separated numbers (integers stay integers), or None."""
    if text is None:
        return None
    values: list[float] = []
    for part in text.split(","):
        try:
            values.append(int(part) if part.strip().lstrip("-").isdigit() else float(part))
        except ValueError:
            raise SpecError(option, [f"not a number: {part!r}; give V,V,..."]) from None
    return values
