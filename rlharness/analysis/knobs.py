"""Per-knob divergence rates of a grid run: mean over grid points, stratified bootstrap CI.

For every grid field and each of its values: the runs (grid points x seeds)
with that value, how many diverged (soft-diverged, recovered or
hard-diverged; `rlharness.outcomes.DIVERGED`), the fraction
diverged averaged over the grid points with that value (each point's own
fraction, every point weighted alike), its 95% stratified bootstrap interval
(seeds resampled within each grid point, `rlharness.analysis.cells`), and the
median final return or value error over those runs. This is the per-knob
table of van Hasselt et al. (2018).

Grid points with one value of a knob can diverge at very different rates
(Q-learning always, a target network never), so their seeds are not draws of
one common rate: a binomial interval of the pooled count would not be an
interval of anything. The mean of the points' own rates is.
"""

from __future__ import annotations

import pandas as pd

from rlharness.analysis.cells import CellSample, levels, value_key
from rlharness.analysis.statistics import CONFIDENCE, DEFAULT_REPS
from rlharness.outcomes import DIVERGED

FINAL_COLUMNS = ("final_eval_return", "final_sqrt_ve")


def knob_effects(
    outcomes: pd.DataFrame,
    knobs: list[str],
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per knob value: ``knob``, ``value``, ``grid_points``, ``runs``, ``diverged``
    (a count), ``diverged_fraction`` (mean over grid points) with ``ci_low`` and ``ci_high``,
    and the median final metric (``median_final_eval_return`` or ``median_final_sqrt_ve``)."""
    final = next((column for column in FINAL_COLUMNS if column in outcomes.columns), None)
    sample = CellSample(outcomes, knobs, "diverged", reps, seed, confidence)
    diverged = outcomes["outcome"].isin(DIVERGED)
    rows = []
    for knob in knobs:
        keys = outcomes[knob].map(value_key)
        for value in levels(outcomes, knob):
            chosen = keys == value
            rate = sample.rate({knob: value})
            row = {
                "knob": knob,
                "value": value,
                "grid_points": rate.strata,
                "runs": int(chosen.sum()),
                "diverged": int(diverged[chosen].sum()),
                "diverged_fraction": rate.value,
                "ci_low": rate.low,
                "ci_high": rate.high,
            }
            if final is not None:
                row[f"median_{final}"] = float(outcomes.loc[chosen, final].median())
            rows.append(row)
    return pd.DataFrame.from_records(rows)
