"""Per-knob divergence rates of a grid run, with 95% Wilson intervals.

For every grid field and each of its values, the runs (grid points x seeds)
with that value are pooled over the other fields: the fraction that diverged
(soft-diverged, recovered or hard-diverged; `rlharness.outcomes.DIVERGED`),
its Wilson score interval, and the median final return or
value error. This is the per-knob table of van Hasselt et al. (2018).
"""

from __future__ import annotations

import pandas as pd

from rlharness.outcomes import DIVERGED

CONFIDENCE = 0.95
FINAL_COLUMNS = ("final_eval_return", "final_sqrt_ve")


def knob_effects(outcomes: pd.DataFrame, knobs: list[str]) -> pd.DataFrame:
    """One row per knob value: runs, diverged count, fraction and interval, median final metric."""
    from statsmodels.stats.proportion import proportion_confint

    final = next((column for column in FINAL_COLUMNS if column in outcomes.columns), None)
    rows = []
    for knob in knobs:
        for value, group in outcomes.groupby(knob, sort=False):
            diverged = int(group["outcome"].isin(DIVERGED).sum())
            low, high = proportion_confint(
                diverged, len(group), alpha=1 - CONFIDENCE, method="wilson"
            )
            row = {
                "knob": knob,
                "value": str(value),
                "runs": len(group),
                "diverged": diverged,
                "diverged_fraction": diverged / len(group),
                "ci_low": float(low),
                "ci_high": float(high),
            }
            if final is not None:
                row[f"median_{final}"] = float(group[final].median())
            rows.append(row)
    return pd.DataFrame.from_records(rows)
