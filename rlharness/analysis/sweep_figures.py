"""Figures of a sweep: Optuna's matplotlib plots of one stored study.

`sweep_figures` loads a study and returns its optimisation history, slice
plot, parallel coordinates and, when they are defined, parameter importances,
drawn in the harness's colour-blind-safe style and labelled with the sweep's
objective. Optuna's plots restyle matplotlib globally; here that is undone
when each figure is drawn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rlharness.analysis.plots import OUTCOME_COLOURS
from rlharness.analysis.style import STYLE, keep_plain
from rlharness.storage import load_study
from rlharness.sweep.study import DEFINITION

if TYPE_CHECKING:
    import optuna

OBJECTIVE_COLOUR = OUTCOME_COLOURS["converged"]
BEST_COLOUR = OUTCOME_COLOURS["hard-diverged"]
CONTINUOUS_MAP = "cividis"


def sweep_figures(storage_url: str, study_name: str) -> dict[str, Figure]:
    """The figures of study ``study_name`` in ``storage_url``, keyed by name.

    Keys, in order: ``importances`` (only with two or more completed trials and a
    parameter that varies among them), ``slice``, ``parallel`` and ``history``
    (these three only once a trial has completed). Raises `SpecError` when the
    storage or study does not exist.
    """
    from optuna.trial import TrialState

    study = load_study(storage_url, study_name)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return {}
    objective = objective_name(study)
    varying = varying_params(completed)
    figures: dict[str, Figure] = {}
    if len(completed) >= 2 and varying:
        figures["importances"] = _importances(study, varying, objective)
    figures["slice"] = _slice(study, objective)
    figures["parallel"] = _parallel(study, objective)
    figures["history"] = _history(study, objective)
    return figures


def objective_name(study: optuna.Study) -> str:
    """The swept objective as recorded by the launcher (e.g. ``mean final_sqrt_pbe``)."""
    definition = study.user_attrs.get(DEFINITION) or {}
    parts = [definition.get("aggregate"), definition.get("objective")]
    return " ".join(str(part) for part in parts if part) or "objective value"


def varying_params(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """Parameters taking more than one value among ``trials``, sorted by name."""
    values: dict[str, set[str]] = {}
    for trial in trials:
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(repr(value))
    return sorted(name for name, seen in values.items() if len(seen) > 1)


def _draw(plot: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Figure, list[Axes]]:
    """Call an Optuna matplotlib plot in a style context, so its global restyling is undone."""
    from optuna.exceptions import ExperimentalWarning

    with plt.style.context(STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Target and region quantiles")
        warnings.filterwarnings("ignore", message="Attempting to set identical")
        drawn = plot(*args, **kwargs)
    axes = list(np.ravel(drawn))
    for axis in axes:
        _recolour(axis)
    keep_plain(axes[0].figure)
    return axes[0].figure, axes


def _recolour(axis: Axes) -> None:
    """Swap Optuna's Blues, whose light end fades into white, for cividis (colour-vision safe)."""
    for collection in axis.collections:
        name = collection.get_cmap().name
        if collection.get_array() is None or not name.startswith("Blues"):
            continue
        collection.set_cmap(CONTINUOUS_MAP + ("_r" if name.endswith("_r") else ""))
        if collection.colorbar is not None:
            collection.colorbar.update_normal(collection)


def _importances(study: optuna.Study, params: list[str], objective: str) -> Figure:
    from optuna.visualization.matplotlib import plot_param_importances

    figure, (axis,) = _draw(plot_param_importances, study, params=params, target_name=objective)
    axis.set_xlabel(f"relative importance for {objective}")
    axis.set_ylabel("parameter")
    figure.tight_layout()
    return figure


def _slice(study: optuna.Study, objective: str) -> Figure:
    """Objective against each parameter; Optuna labels each panel's axes and its colour bar."""
    from optuna.visualization.matplotlib import plot_slice

    figure, _ = _draw(plot_slice, study, target_name=objective)
    return figure


def _parallel(study: optuna.Study, objective: str) -> Figure:
    """One line per trial through the objective's axis and each parameter's (named below it)."""
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    figure, (axis,) = _draw(plot_parallel_coordinate, study, target_name=objective)
    axis.set_ylabel("value, on each vertical axis's own scale")
    return figure


def _history(study: optuna.Study, objective: str) -> Figure:
    from optuna.visualization.matplotlib import plot_optimization_history

    figure, (axis,) = _draw(plot_optimization_history, study, target_name=objective)
    for collection in axis.collections:
        if collection.get_label() == objective:
            collection.set_facecolor(OBJECTIVE_COLOUR)
    for line in axis.lines:
        if line.get_label() == "Best Value":
            line.set_color(BEST_COLOUR)
    axis.legend(loc="best", fontsize=8)
    axis.set_xlabel("trial number")
    axis.set_ylabel(objective)
    figure.tight_layout()
    return figure
