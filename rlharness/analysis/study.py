"""The deadly-triad study of one run: its outcomes, design knobs and soft bound, and its tables.

`open_study` selects a run as ``compare`` does (an experiment's latest run, a
run key or its path) and gathers what the hypotheses and the study's figures
need; `study_tables` computes the hypotheses' verdicts, the per-knob rates and
the per-cell table from it. The CLI's ``hypotheses`` command and the
``deadly_triad_study`` notebook both call these.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rlharness.analysis.cells import cell_rates
from rlharness.analysis.compare import select
from rlharness.analysis.curves import soft_thresholds
from rlharness.analysis.hypotheses import STUDY_KNOBS, hypotheses
from rlharness.analysis.knobs import knob_effects
from rlharness.analysis.statistics import DEFAULT_REPS
from rlharness.catalog import Catalog
from rlharness.errors import ResultsError

DEFAULT_EXPERIMENT = "deadly_triad_minatar"


@dataclass(frozen=True)
class Study:
    """One run of a grid over the study's knobs."""

    run: str
    experiment: str
    outcomes: pd.DataFrame
    """One row per grid point x seed (`Catalog.outcomes`)."""
    knobs: list[str]
    """`STUDY_KNOBS`, then any other field the run's grid varies: each combination is a cell."""
    thresholds: tuple[float, ...]
    """The run's soft-divergence bounds R_max / (1 - gamma)."""


def open_study(catalog: Catalog, target: str = DEFAULT_EXPERIMENT) -> Study:
    """The run ``target`` names (an experiment's latest run, a run key or its path).

    Raises `ResultsError` if it names nothing, several runs (a sweep's trials), or a
    run without the study's knobs.
    """
    ((_, keys),) = select(catalog, [target])
    if len(keys) != 1:
        raise ResultsError(
            f"{target!r} names {len(keys)} runs (a sweep's trials); name one run: "
            f"{', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        )
    (run,) = keys
    entry = catalog.entries[run]
    grid = list(entry.config.get("grid") or {})
    knobs = list(dict.fromkeys([*STUDY_KNOBS, *grid]))
    outcomes = catalog.outcomes([run])
    absent = [knob for knob in knobs if knob not in outcomes.columns]
    if absent:
        raise ResultsError(
            f"run {run} has no {', '.join(absent)}: the study needs a DQN run with "
            f"{', '.join(STUDY_KNOBS)}"
        )
    experiment = str(entry.config.get("name", run.split("/")[0]))
    return Study(run, experiment, outcomes, knobs, soft_thresholds(catalog, [run]))


def study_tables(study: Study, reps: int = DEFAULT_REPS, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``hypotheses`` (H1 to H6 with verdicts), ``knob_rates`` (soft divergence per level of
    each knob, averaged over cells) and ``cells`` (one row per cell), by name."""
    return {
        "hypotheses": hypotheses(study.outcomes, study.knobs, reps, seed),
        "knob_rates": knob_effects(study.outcomes, study.knobs, reps, seed),
        "cells": cell_rates(study.outcomes, study.knobs),
    }
