"""Phase maps of predicted stability over two knobs, checked against actual runs.

The prediction at each point is the spectral radius of the exact expected map
(`rlharness.agents.linear.stability`); the measurement runs the spec as
written (its agent, update kind, steps and seeds) at a coarse grid of points,
and a point is measured diverged when most of its seeds end soft- or
hard-diverged under the run's own criterion. Predicted divergent means
rho > 1; marginal (rho = 1) counts as not divergent. The prediction is
asymptotic: ``growth`` = rho^steps says how far the dominant mode moves within
the run, so a run with growth below the criterion's factor may not show it yet
(and a non-normal map can grow for a while before it shrinks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rlharness.agents.linear import RULES, hyperparameters_of
from rlharness.agents.linear.stability import (
    Stability,
    mean_update_problem,
    predicted_rule,
    stability,
    stability_problems,
)
from rlharness.analysis import plots
from rlharness.analysis.style import plain
from rlharness.errors import SpecError
from rlharness.outcomes import DIVERGED
from rlharness.runner import TrialConfig, run_trial
from rlharness.spec import ExperimentSpec, LinearAgentSpec, with_settings

LOG_SPAN = 10.0
"""An axis whose positive values span at least this factor is drawn (and refined) on a log scale."""


@dataclass(frozen=True)
class Axis:
    """A knob of the map: its dotted field, the values measured, and the finer predicted ones."""

    field: str
    values: list[float]
    fine: list[float]
    integer: bool

    @property
    def logarithmic(self) -> bool:
        """Whether the values are all positive and span at least `LOG_SPAN`."""
        return min(self.values) > 0 and max(self.values) >= LOG_SPAN * min(self.values)


@dataclass(frozen=True)
class StabilityMap:
    """Per-update spectral radii on the fine grid (``radius[j, i]``: y j, x i) and the
    coarse table of prediction against measurement."""

    x: Axis
    y: Axis
    radius: np.ndarray
    table: pd.DataFrame

    @property
    def agreement(self) -> tuple[int, int]:
        """Points where prediction and measurement agree, and points measured."""
        measured = self.table.dropna(subset=["measured"])
        return int(measured["agree"].sum()), len(measured)


def axis(
    spec: ExperimentSpec, field: str, option: str, given: list[float] | None, resolution: int
) -> Axis:
    """The knob ``field``: ``given`` values, else the spec's grid values, else its one value."""
    current = _current(spec, field, option, needed=given is None and field not in spec.grid)
    if given is not None:
        values: list[Any] = given
    elif field in spec.grid:
        values = list(spec.grid[field])
    else:
        values = [current]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise SpecError(option, [f"{field} must take numbers, got {values!r}"])
    if len(set(values)) < 2:
        raise SpecError(
            option,
            [
                f"{field} has {len(set(values))} value(s) in the spec; a map needs at least two: "
                f"give them with {option}-values V,V,..."
            ],
        )
    integer = all(isinstance(v, int) for v in values)
    values = sorted(set(values))
    return Axis(field, values, _refined(values, resolution, integer), integer)


def _current(spec: ExperimentSpec, field: str, option: str, needed: bool) -> Any:
    """The spec's value of ``field`` (None where an env argument is left at its default)."""
    node: Any = spec.model_dump()
    keys = field.split(".")
    for depth, key in enumerate(keys):
        prefix = ".".join(keys[:depth])
        if not isinstance(node, dict):
            raise SpecError(option, [f"{field}: '{prefix}' has no sub-fields"])
        if key not in node:
            if prefix != "env.kwargs":
                allowed = ", ".join(sorted(node))
                raise SpecError(option, [f"{field}: '{key}' is not a field; allowed: {allowed}"])
            if needed:
                raise SpecError(
                    option,
                    [f"{field} is set neither in the spec nor in its grid; give {option}-values"],
                )
            return None
        node = node[key]
    return node


def _refined(values: list[float], resolution: int, integer: bool) -> list[float]:
    """``resolution`` points spanning ``values``, log-spaced where they span >= 10x."""
    low, high = min(values), max(values)
    if low > 0 and high >= LOG_SPAN * low:
        fine = np.geomspace(low, high, resolution)
    else:
        fine = np.linspace(low, high, resolution)
    if integer:
        return sorted({round(float(v)) for v in fine})
    return [float(v) for v in fine]


def point_spec(spec: ExperimentSpec, settings: dict[str, Any], where: str) -> ExperimentSpec:
    """The spec at ``settings``, the spec's other grid fields at their first value."""
    fixed = {field: values[0] for field, values in spec.grid.items() if field not in settings}
    return with_settings(spec, {**fixed, **settings}, where)


def predict(spec: ExperimentSpec) -> Stability:
    """The stability of the expected map of one grid point, or `SpecError` if it has none."""
    from rlharness.agents.linear.trial import resolve_linear

    agent = spec.agent
    where = f"experiment {spec.name}"
    if not isinstance(agent, LinearAgentSpec):
        allowed = ", ".join(RULES)
        raise SpecError(
            where, [f"agent.name: stability maps need a linear learner; allowed: {allowed}"]
        )
    problem = resolve_linear(spec).problem
    problems = stability_problems(agent, spec.triad, problem)
    if problems:
        raise SpecError(where, problems)
    name = predicted_rule(agent)
    hyperparameters = hyperparameters_of(agent, spec.triad)
    return stability(mean_update_problem(agent, problem), name, hyperparameters)


def measure(spec: ExperimentSpec) -> float:
    """The fraction of the spec's seeds that soft- or hard-diverge, run in-process."""
    result = run_trial(TrialConfig(spec, tuple(spec.run.seed_list)))
    return float(result.outcomes["outcome"].isin(DIVERGED).mean())


def stability_map(spec: ExperimentSpec, x: Axis, y: Axis, runs: bool, where: str) -> StabilityMap:
    """Predict every fine point, and predict and (with ``runs``) measure every coarse one."""
    radius = np.array(
        [
            [predict(point_spec(spec, {x.field: xv, y.field: yv}, where)).radius for xv in x.fine]
            for yv in y.fine
        ]
    )
    rows = []
    for yv in y.values:
        for xv in x.values:
            point = point_spec(spec, {x.field: xv, y.field: yv}, where)
            predicted = predict(point)
            fraction = measure(point) if runs else math.nan
            measured = None if math.isnan(fraction) else fraction > 0.5
            divergent = predicted.verdict == "divergent"
            rows.append(
                {
                    x.field: xv,
                    y.field: yv,
                    "rho": predicted.radius,
                    "rho_period": predicted.period_radius,
                    "growth": _growth(predicted.radius, point.run.steps),
                    "predicted": predicted.verdict,
                    "diverged_fraction": fraction,
                    "measured": None
                    if measured is None
                    else ("diverged" if measured else "stable"),
                    "agree": None if measured is None else divergent == measured,
                }
            )
    return StabilityMap(x, y, radius, pd.DataFrame(rows))


def _growth(radius: float, steps: int) -> float:
    """rho^steps: how far the slowest-decaying (or fastest-growing) mode moves in one run."""
    with np.errstate(over="ignore"):
        return float(np.power(radius, float(steps)))


def stability_figure(result: StabilityMap, title: str) -> Figure:
    """log10 rho over the fine grid, the rho = 1 contour, and the measured outcomes."""
    x, y = result.x, result.y
    with plt.style.context(plots.STYLE):
        figure, axes = plt.subplots(figsize=(6.4, 4.8))
        log_radius = np.log10(np.clip(result.radius, 1e-300, 1e300))
        limit = max(float(np.nanmax(np.abs(log_radius[np.isfinite(log_radius)]))), 1e-3)
        mesh = axes.pcolormesh(
            x.fine, y.fine, log_radius, shading="nearest", cmap="RdBu_r", vmin=-limit, vmax=limit
        )
        figure.colorbar(mesh, ax=axes, label="log10 spectral radius per update")
        if len(x.fine) > 1 and len(y.fine) > 1:
            axes.contour(x.fine, y.fine, log_radius, levels=[0.0], colors="black", linewidths=1.5)
        measured = result.table.dropna(subset=["measured"])
        for outcome, marker in (("stable", "o"), ("diverged", "x")):
            rows = measured[measured["measured"] == outcome]
            axes.scatter(
                rows[x.field],
                rows[y.field],
                marker=marker,
                color="black",
                s=40,
                label=f"measured {outcome}",
            )
        disagreeing = measured[~measured["agree"].astype(bool)]
        if len(disagreeing):
            axes.scatter(
                disagreeing[x.field], disagreeing[y.field], s=160, facecolors="none",
                edgecolors="red", linewidths=1.5, label="disagrees",
            )  # fmt: skip
        for ruler, knob in ((axes.set_xscale, x), (axes.set_yscale, y)):
            ruler("log" if knob.logarithmic else "linear")
        axes.set_xlabel(plain(x.field))
        axes.set_ylabel(plain(y.field))
        agree, total = result.agreement
        counted = f"agreement {agree}/{total}" if total else "no runs"
        axes.set_title(plain(f"{title}: rho = 1 (black line); {counted}"))
        if total:
            axes.legend(loc="best", fontsize="small")
    return figure
