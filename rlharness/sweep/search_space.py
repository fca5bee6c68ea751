"""A sweep's search space: dotted spec fields as Optuna distributions, checked before anything runs.

`plan_sweep` turns an experiment's ``sweep`` section (or its ``grid``, when
the sweep has no space) into a `SweepPlan`: the distributions Optuna samples,
the grid points when the sampler is ``grid``, and the trial budget. Every
problem is a `SpecError` naming the field: a path that is not a spec field,
bounds the field does not accept, an objective the agent does not measure.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import ValidationError

from rlharness.errors import SpecError, short, short_text
from rlharness.runner import resolve
from rlharness.spec import (
    ExperimentSpec,
    ParameterSpec,
    SweepSpec,
    check_grid_size,
    with_settings,
)
from rlharness.sweep.objectives import check_objective

UNSWEEPABLE = ("name", "grid", "sweep")
EXECUTION_FIELDS = ("n_trials", "retries", "cpus_per_trial", "gpus_per_trial")
"""Sweep fields that change how a study runs, not what its trials compute."""


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep searches and how many trials it finishes."""

    spec: ExperimentSpec
    sweep: SweepSpec
    source: str
    """Where the space comes from: ``sweep.space`` or ``grid``."""
    distributions: dict[str, BaseDistribution]
    points: tuple[dict[str, Any], ...]
    """The grid sampler's points in grid order (empty for the other samplers)."""
    budget: int
    """Trials to finish: every point once (grid) or n_trials."""

    @property
    def is_grid(self) -> bool:
        """Whether each point is run exactly once, from a fixed list."""
        return self.sweep.sampler == "grid"

    def point(self, params: dict[str, Any]) -> ExperimentSpec:
        """The experiment at ``params`` (raises `SpecError` if they are not valid there)."""
        return with_settings(self.spec, params, f"experiment {self.spec.name}", self.source)

    def definition(self) -> dict[str, Any]:
        """What identifies a study: a resumed study must have been created from the same one."""
        data = self.spec.model_dump(mode="json")
        data["sweep"] = self.sweep.model_dump(mode="json", exclude=set(EXECUTION_FIELDS))
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        return {
            "experiment": self.spec.name,
            "sampler": self.sweep.sampler,
            "objective": self.sweep.objective,
            "direction": self.sweep.direction,
            "aggregate": self.sweep.aggregate,
            "space": list(self.distributions),
            "spec_sha256": digest,
        }


def plan_sweep(
    spec: ExperimentSpec, n_trials: int | None = None, where: str = "experiment"
) -> SweepPlan:
    """Check ``spec``'s sweep (``n_trials`` overrides sweep.n_trials) and plan it, or raise."""
    sweep = spec.sweep or SweepSpec()
    if n_trials is not None:
        sweep = sweep.model_copy(update={"n_trials": n_trials})
    source = "sweep.space" if sweep.space else "grid"
    parameters = _parameters(spec, sweep, where)
    problems = [
        f"{source}.{short_text(path)}: cannot sweep '{path.split('.')[0]}'"
        for path in parameters
        if path.split(".")[0] in UNSWEEPABLE
    ]
    for path, parameter in parameters.items():
        value = (
            (parameter.choices or [None])[0]
            if parameter.type == "categorical"
            else _bounds(parameter)[0]
        )
        try:
            with_settings(spec, {path: value}, where, source)
        except SpecError as error:
            problems.extend(error.messages)
    if problems:
        raise SpecError(where, problems)
    if sweep.sampler == "grid":
        counts = [_grid_count(path, p, source, where) for path, p in parameters.items()]
        check_grid_size(counts, f"{source} (grid sampler)", where)
        values = {path: _grid_values(p) for path, p in parameters.items()}
        points = tuple(
            dict(zip(values, combination, strict=True))
            for combination in itertools.product(*values.values())
        )[: sweep.n_trials]
        distributions: dict[str, BaseDistribution] = {
            path: CategoricalDistribution(choices) for path, choices in values.items()
        }
        budget = len(points)
        probes: list[dict[str, Any]] = list(points)
    else:
        if sweep.n_trials is None:
            raise SpecError(
                where,
                [
                    f"sweep.n_trials: the {sweep.sampler} sampler needs a trial budget; "
                    "set sweep.n_trials or pass --n-trials"
                ],
            )
        distributions = {
            path: _distribution(path, p, source, where) for path, p in parameters.items()
        }
        points, budget = (), sweep.n_trials
        probes = _probes(parameters)
    plan = SweepPlan(spec, sweep, source, distributions, points, budget)
    _check_points(plan, probes, where)
    return plan


def _parameters(spec: ExperimentSpec, sweep: SweepSpec, where: str) -> dict[str, ParameterSpec]:
    """The sweep's space, or the grid as categoricals when the sweep has none."""
    if sweep.space and spec.grid:
        raise SpecError(
            where,
            [
                "grid: a sweep with sweep.space searches only that space; "
                "move the grid fields into sweep.space as categoricals"
            ],
        )
    if sweep.space:
        return dict(sweep.space)
    if not spec.grid:
        raise SpecError(where, ["sweep.space: nothing to search; give sweep.space or a grid"])
    parameters = {}
    for path, values in spec.grid.items():
        try:
            parameters[path] = ParameterSpec(type="categorical", choices=values)
        except ValidationError:
            raise SpecError(
                where, [f"grid.{path}: a sweep takes only strings, numbers, booleans or null"]
            ) from None
    return parameters


def _grid_count(path: str, parameter: ParameterSpec, source: str, where: str) -> int:
    """How many values one grid dimension has, counted without listing them."""
    if parameter.type == "categorical":
        return len(parameter.choices or [])
    low, high = parameter.low, parameter.high
    assert low is not None and high is not None
    if parameter.type == "int":
        return (int(high) - int(low)) // int(parameter.step or 1) + 1
    if parameter.step is None:
        raise SpecError(
            where, [f"{source}.{short_text(path)}: the grid sampler needs choices or a step"]
        )
    span = (high - low) / parameter.step
    if math.isfinite(span):
        return math.floor(span + 1e-9) + 1
    # beyond float range (e.g. 1e300 over 1e-300): count exactly
    return math.floor((Fraction(high) - Fraction(low)) / Fraction(parameter.step)) + 1


def _grid_values(parameter: ParameterSpec) -> list[Any]:
    """Every value of one grid dimension (already counted): its choices, or low..high by step."""
    if parameter.type == "categorical":
        return list(parameter.choices or [])
    assert parameter.low is not None and parameter.high is not None
    if parameter.type == "int":
        step = int(parameter.step or 1)
        return list(range(int(parameter.low), int(parameter.high) + 1, step))
    assert parameter.step is not None
    count = math.floor((parameter.high - parameter.low) / parameter.step + 1e-9) + 1
    return [round(parameter.low + k * parameter.step, 12) for k in range(count)]


def _distribution(path: str, parameter: ParameterSpec, source: str, where: str) -> BaseDistribution:
    """The Optuna distribution of one dimension."""
    low, high = parameter.low, parameter.high
    try:
        if parameter.type == "categorical":
            return CategoricalDistribution(parameter.choices or [])
        assert low is not None and high is not None
        _check_divisible(path, low, high, parameter.step, source, where)
        if parameter.type == "int":
            step = int(parameter.step or 1)
            return IntDistribution(int(low), int(high), log=parameter.log, step=step)
        return FloatDistribution(low, high, log=parameter.log, step=parameter.step)
    except (ValueError, ArithmeticError) as error:  # Optuna's Decimal arithmetic on the step
        raise SpecError(where, [f"{source}.{short_text(path)}: {error}"]) from None


def _check_divisible(
    path: str, low: float, high: float, step: float | None, source: str, where: str
) -> None:
    """Refuse a stepped range whose ``high`` Optuna would lower, with only a warning, to fit.

    Optuna tests ``(high - low) % step`` in decimal arithmetic on the written
    numbers; the same test here turns its silent change of the space into a message.
    """
    if step is None:
        return
    stride = Decimal(str(step))
    span = Decimal(str(high)) - Decimal(str(low))
    if span % stride == 0:
        return
    fitting = _written(Decimal(str(low)) + (span // stride) * stride)
    raise SpecError(
        where,
        [
            f"{source}.{short_text(path)}: high - low = {_written(span)} is not a multiple of "
            f"step {_written(stride)}; Optuna would lower high to {fitting}: set high to "
            f"{fitting}, or change the step"
        ],
    )


def _written(number: Decimal) -> str:
    """A decimal as a person writes it: 3, not 3.0 or 3E+0."""
    return format(number.normalize(), "f")


def _probes(parameters: dict[str, ParameterSpec]) -> list[dict[str, Any]]:
    """Points that try each choice and both bounds of every dimension, the others at their first."""
    extremes = {
        path: (p.choices or []) if p.type == "categorical" else _bounds(p)
        for path, p in parameters.items()
    }
    base = {path: values[0] for path, values in extremes.items()}
    probes = [base]
    for path, values in extremes.items():
        probes.extend({**base, path: value} for value in values[1:])
    return probes


def _bounds(parameter: ParameterSpec) -> list[Any]:
    assert parameter.low is not None and parameter.high is not None
    if parameter.type == "int":
        return [int(parameter.low), int(parameter.high)]
    return [parameter.low, parameter.high]


def _check_points(plan: SweepPlan, probes: list[dict[str, Any]], where: str) -> None:
    """Resolve each probe point against its env and agent; one `SpecError` with every problem."""
    problems: list[str] = []
    for params in probes:
        try:
            point = with_settings(plan.spec, params, where, plan.source)
        except SpecError as error:
            problems.extend(error.messages)
            continue
        try:
            check_objective(plan.sweep.objective, point, where)
        except SpecError as error:
            problems.extend(error.messages)
            continue
        try:
            resolve(point)
        except SpecError as error:
            label = ", ".join(
                f"{short_text(path)}={short(value)}" for path, value in params.items()
            )
            problems.extend(f"{m} (in {plan.source} point {label})" for m in error.messages)
    if problems:
        raise SpecError(where, list(dict.fromkeys(problems)))
