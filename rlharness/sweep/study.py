"""The Optuna study of a sweep: its stored attributes, sampler and pruner; no Ray.

The study in its storage is the single source of truth for a sweep. The
launcher records on it what the analysis, the CLI and other launchers read
back; every attribute key is defined here, once, and its value is what
existing databases hold, so never change one:

- the study's `DEFINITION`: what identifies the sweep
  (`SweepPlan.definition`), so that a resumed study has the same one;
- a trial's `PER_SEED` objective values, seed `OUTCOMES` counts and
  `RESULTS` directory once it finished;
- a running trial's `LAUNCHER` (who runs it) and `HEARTBEAT` (its last sign
  of life, see `rlharness.sweep.liveness`);
- why a trial failed: `ERROR` (it raised), `FAIL_REASON` (lost, stopped,
  unwritable results) or `SUPERSEDED` (claimed beyond the budget or twice);
- `RETRY_OF`: the trial whose point a queued trial runs again.

Importing this module does not import Ray, so the analysis and the CLI can
read a study without starting Ray's client libraries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, CmaEsSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from rlharness.errors import SpecError
from rlharness.masking import mask
from rlharness.outcomes import Outcome

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from rlharness.sweep.search_space import SweepPlan

DEFINITION = "rlharness"
"""Study attribute: the sweep's definition (experiment, sampler, objective, direction, ...)."""
PER_SEED = "per_seed"
"""Trial attribute: the objective of each seed, keyed by the seed as text."""
OUTCOMES = "outcomes"
"""Trial attribute: how many seeds ended in each outcome."""
RESULTS = "results"
"""Trial attribute: the trial's published run directory."""
LAUNCHER = "launcher"
"""Trial attribute: the launcher running the trial (`rlharness.sweep.liveness.Launcher`)."""
HEARTBEAT = "heartbeat"
"""Trial attribute: when the launcher running the trial last showed it is alive (Unix time)."""
ERROR = "error"
"""Trial attribute: why a failed trial cannot run (it raised, or its point is not valid)."""
FAIL_REASON = "fail_reason"
"""Trial attribute: why a trial failed that may run again (its point is re-queued)."""
SUPERSEDED = "superseded"
"""Trial attribute: why a claimed trial did not run (its point was taken, or the budget full)."""
RETRY_OF = "retry_of"
"""Trial attribute of a queued trial: the number of the failed trial whose point it runs."""
FIXED_PARAMS = "fixed_params"
"""Optuna's system attribute holding a queued trial's params before they are suggested."""

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_study(plan: SweepPlan, storage: BaseStorage, name: str, url: str) -> optuna.Study:
    """Create the study or load it, refusing one created from a different sweep."""
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=plan.sweep.direction,
        pruner=_pruner(plan),
        load_if_exists=True,
    )
    definition = plan.definition()
    stored = study.user_attrs.get(DEFINITION)
    if stored is None and study.direction.name.lower() != plan.sweep.direction:
        stored = {"direction": study.direction.name.lower()}
    if stored is None:
        study.set_user_attr(DEFINITION, definition)
    elif stored != definition:
        differing = [key for key in definition if key in stored and stored[key] != definition[key]]
        raise SpecError(
            "--study",
            [
                f"study {name!r} in {mask(url, url)} was created from a different sweep "
                f"({', '.join(differing) or 'its definition'} differ); resume it with the same "
                "experiment file, or pass --study with a new name"
            ],
        )
    study.sampler = _sampler(plan, len(study.get_trials(deepcopy=False)))
    return study


def params_of(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's params, including those of a waiting trial (queued, not yet suggested)."""
    return trial.params or dict(trial.system_attrs.get(FIXED_PARAMS, {}))


class DivergencePruner(BasePruner):
    """Prune a trial once one of its seeds hard-diverged; otherwise ask ``base``."""

    def __init__(self, base: BasePruner) -> None:
        self.base = base

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether to stop ``trial`` now."""
        if trial.user_attrs.get(OUTCOMES, {}).get(Outcome.HARD_DIVERGED, 0) > 0:
            return True
        return self.base.prune(study, trial)


def _pruner(plan: SweepPlan) -> BasePruner:
    """The sweep's pruner over steps of ``seeds_per_step`` seeds (hard divergence, if asked)."""
    sweep = plan.sweep
    steps = math.ceil(plan.spec.run.seeds / sweep.seeds_per_step)
    factories: dict[str, Callable[[], BasePruner]] = {
        "none": NopPruner,
        "median": MedianPruner,
        "hyperband": lambda: HyperbandPruner(min_resource=1, max_resource=max(steps, 1)),
    }
    base = factories[sweep.pruner]()
    return DivergencePruner(base) if sweep.prune_hard_diverged else base


def _sampler(plan: SweepPlan, existing: int) -> BaseSampler:
    """The sampler, seeded past the trials a study already has so that a resumed sweep explores."""
    seed = plan.sweep.seed + existing
    factories: dict[str, Callable[[], BaseSampler]] = {
        "grid": lambda: RandomSampler(seed=seed),
        "random": lambda: RandomSampler(seed=seed),
        "tpe": lambda: TPESampler(seed=seed),
        "cmaes": lambda: CmaEsSampler(seed=seed, warn_independent_sampling=False),
    }
    return factories[plan.sweep.sampler]()
