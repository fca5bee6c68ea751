"""The trials of a sweep as a table: number, state, objective value, parameters, outcomes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from rlharness.sweep.study import OUTCOMES, RESULTS

if TYPE_CHECKING:
    import optuna


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: ``trial``, ``state``, ``value``, ``duration_s``, one column per
    parameter, ``outcomes`` (seed counts per outcome) and ``results`` (the trial's run directory).
    """
    rows = []
    for trial in study.get_trials(deepcopy=False):
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        outcomes = trial.user_attrs.get(OUTCOMES) or {}
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "duration_s": duration,
                **trial.params,
                "outcomes": ", ".join(f"{name}: {count}" for name, count in outcomes.items()),
                "results": trial.user_attrs.get(RESULTS),
            }
        )
    return pd.DataFrame.from_records(rows)
