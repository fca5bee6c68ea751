"""The sweep's study: read without Ray, and read back as existing databases hold it."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.pruners import NopPruner
from optuna.trial import TrialState

from rlharness.analysis.sweep_figures import objective_name
from rlharness.analysis.trials import trials_table
from rlharness.errors import SpecError
from rlharness.spec import parse_spec
from rlharness.storage import default_url, open_storage
from rlharness.sweep.search_space import plan_sweep
from rlharness.sweep.study import DivergencePruner, open_study, params_of
from tests.conftest import TINY_SPEC

READERS = (
    "rlharness.sweep.study",
    "rlharness.sweep.search_space",
    "rlharness.sweep.objectives",
    "rlharness.analysis.trials",
    "rlharness.analysis.sweep_figures",
    "rlharness.analysis.report",
)
"""Modules that read a study (the analysis, ``status``, reports): none may start Ray's libraries."""


def imported(statement: str, *modules: str) -> list[bool]:
    """Whether each of ``modules`` is imported after ``statement`` runs in a new interpreter."""
    check = f"import sys; {statement}; print(*(m in sys.modules for m in {modules!r}))"
    shown = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    )
    return [word == "True" for word in shown.stdout.split()]


@pytest.mark.parametrize("module", READERS)
def test_reading_a_study_does_not_import_ray(module):
    assert imported(f"import {module}", "ray") == [False]


def test_the_sweep_package_imports_its_driver_and_ray_only_when_asked():
    assert imported("import rlharness.sweep", "ray", "rlharness.sweep.driver") == [False, False]
    assert imported("from rlharness.sweep import run_sweep", "ray") == [True], "the check can fail"


def test_a_study_as_existing_databases_hold_it_is_read_back(tmp_path):
    """A study written with the attribute keys that databases hold today is resumed and read."""
    plan = plan_sweep(parse_spec({**TINY_SPEC, "sweep": {"objective": "final_sqrt_ve"}}))
    url = default_url(tmp_path, "tiny")
    (tmp_path / "tiny").mkdir()
    storage = open_storage(url)
    stored = optuna.create_study(storage=storage, study_name="tiny")
    stored.set_user_attr("rlharness", plan.definition())
    point = {"triad.off_policy": True}
    stored.add_trial(
        optuna.trial.create_trial(
            params=point,
            distributions=plan.distributions,
            value=0.5,
            user_attrs={
                "per_seed": {"0": 0.5},
                "outcomes": {"hard-diverged": 1},
                "results": "results/tiny/sweep-tiny/trial-00000",
            },
        )
    )
    stored.enqueue_trial({"triad.off_policy": False}, user_attrs={"retry_of": 0})

    study = open_study(plan, storage, "tiny", url)
    complete, waiting = study.get_trials(deepcopy=False)
    assert objective_name(study) == "mean final_sqrt_ve"
    assert params_of(waiting) == {"triad.off_policy": False}, "a queued trial's fixed params"
    table = trials_table(study)
    assert table["outcomes"].tolist() == ["hard-diverged: 1", ""]
    assert table["results"].tolist()[0] == "results/tiny/sweep-tiny/trial-00000"
    assert DivergencePruner(NopPruner()).prune(study, complete)
    assert waiting.state == TrialState.WAITING

    other = plan_sweep(parse_spec({**TINY_SPEC, "sweep": {"objective": "final_sqrt_pbe"}}))
    with pytest.raises(SpecError, match="was created from a different sweep"):
        open_study(other, storage, "tiny", url)
