"""Sweeps: an Optuna study searched by ask/tell from a launcher, its trials run as Ray tasks.

- `study`: the study, its stored attribute keys, sampler and pruner (no Ray);
- `search_space`: a spec's sweep as Optuna distributions (`plan_sweep`);
- `objectives`: what a trial's value is, from its results;
- `driver`: the ask/tell loop (`run_sweep`), with `flight` (a trial's seed
  chunks), `liveness` (launchers that are gone) and `signals` (stopping);
- `cluster`: Ray execution, local or on a cluster.

`run_sweep` and `SweepReport` are imported from `driver` on first use, so that
importing `rlharness.sweep.study` (the analysis, ``status``) does not import Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlharness.sweep.driver import SweepReport, run_sweep

__all__ = ["SweepReport", "run_sweep"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("rlharness.sweep.driver"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
