"""Sweeps in-process on a real Ray head: counting, samplers, per-seed values, pruning, faults."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import trim_mean

from rlharness.errors import SpecError
from rlharness.runner import plan_trials, run_trial
from rlharness.spec import parse_spec
from rlharness.storage import default_url, load_study
from rlharness.sweep import SweepReport, run_sweep
from rlharness.sweep.search_space import plan_sweep
from tests.clusters import worker_pids
from tests.conftest import TINY_SPEC
from tests.helpers import BAIRD_W0


def spec(**sections: Any) -> dict[str, Any]:
    """The tiny Baird spec with whole sections replaced."""
    data = copy.deepcopy(TINY_SPEC)
    data.update(sections)
    return data


def sweep(data: dict[str, Any], out: Path, **options: Any) -> tuple[SweepReport, optuna.Study]:
    """Plan and run a sweep of ``data`` into ``out``; the report and the study from storage."""
    report = run_sweep(plan_sweep(parse_spec(data)), out, **options)
    study = load_study(default_url(out, data["name"]), report.study)
    return report, study


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def seeds(trial: FrozenTrial) -> list[int]:
    """The seeds a trial ran, from its per-seed values (keyed by seed)."""
    return [int(seed) for seed in trial.user_attrs["per_seed"]]


def finished(study: optuna.Study, state: TrialState = TrialState.COMPLETE) -> list[FrozenTrial]:
    return [trial for trial in study.trials if trial.state == state]


def test_grid_runs_each_point_once_with_two_workers_and_resumes_to_nothing(ray_client, tmp_path):
    grid = {"triad.off_policy": [False, True], "triad.features": ["env", "tabular"]}
    data = spec(grid=grid)
    report, study = sweep(data, tmp_path, workers=2)
    points = [
        {"triad.off_policy": o, "triad.features": f}
        for o in grid["triad.off_policy"]
        for f in grid["triad.features"]
    ]
    complete = finished(study)
    assert states(study) == {"COMPLETE": 4}
    assert sorted(key(t.params) for t in complete) == sorted(key(p) for p in points)
    assert report.finished == report.budget == 4
    assert (tmp_path / "tiny" / "optuna.db").is_file(), "default storage: SQLite beside the results"

    for trial in complete:
        run_dir = Path(trial.user_attrs["results"])
        assert run_dir == tmp_path / "tiny" / "sweep-tiny" / f"trial-{trial.number:05d}"
        assert (run_dir / "manifest.json").is_file()
        outcomes = pd.read_parquet(run_dir / "outcomes.parquet")
        assert outcomes["seed"].tolist() == seeds(trial) == [0, 1, 2]
        diverged = outcomes["outcome"].isin(["soft-diverged", "hard-diverged"]).astype(float)
        assert list(trial.user_attrs["per_seed"].values()) == diverged.tolist()
        assert trial.value == pytest.approx(diverged.mean())
        assert trial.user_attrs["outcomes"] == outcomes["outcome"].value_counts().to_dict()
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["sweep"]["trial"] == trial.number
        assert summary["variants"][0]["settings"] == trial.params

    again, study = sweep(data, tmp_path, workers=2)
    assert states(study) == {"COMPLETE": 4}, "a finished grid resumes to nothing new"
    assert again.finished == 4

    changed = {**data, "sweep": {"objective": "final_sqrt_ve"}}
    with pytest.raises(SpecError, match=r"different sweep \(objective, spec_sha256 differ\)"):
        run_sweep(plan_sweep(parse_spec(changed)), tmp_path)
    for database in (tmp_path / "tiny").glob("optuna.db*"):  # with its write-ahead log
        database.unlink()
    with pytest.raises(SpecError, match=r"holds trial-00000, which study 'tiny' in .* does not"):
        run_sweep(plan_sweep(parse_spec(data)), tmp_path)


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_samplers_over_a_log_scale_float_reach_n_trials(ray_client, tmp_path, sampler):
    data = spec(
        env={"id": "triad/RandomWalk-v0"},
        agent={"name": "semi_gradient_td", "alpha": 0.01},
        triad={"off_policy": False},
        run={"steps": 100, "log_every": 50, "seeds": 4},
        grid={},
        sweep={
            "sampler": sampler,
            "n_trials": 5,
            "objective": "final_sqrt_ve",
            "aggregate": "iqm",
            "space": {
                "agent.alpha": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
                "triad.n_step": {"type": "int", "low": 1, "high": 3},
            },
        },
    )
    _, study = sweep(data, tmp_path, workers=2)
    complete = finished(study)
    assert states(study) == {"COMPLETE": 5}
    for trial in complete:
        assert 1e-3 <= trial.params["agent.alpha"] <= 0.1
        assert trial.distributions["agent.alpha"].log
        assert trial.params["triad.n_step"] in (1, 2, 3)
        per_seed = list(trial.user_attrs["per_seed"].values())
        assert len(per_seed) == 4
        assert trial.value == pytest.approx(trim_mean(per_seed, 0.25))
        outcomes = pd.read_parquet(Path(trial.user_attrs["results"]) / "outcomes.parquet")
        assert outcomes["final_sqrt_ve"].tolist() == pytest.approx(per_seed)


def test_divergence_pruner_ends_a_trial_at_its_first_hard_divergence(ray_client, tmp_path):
    data = spec(
        agent={"name": "semi_gradient_td", "alpha": 0.01, "initial_weights": BAIRD_W0},
        run={"steps": 1000, "log_every": 100, "seeds": 4},
        diagnostics={"hard_divergence_factor": 10},  # |w| beyond 10 x max |w0| = 100
        sweep={"prune_hard_diverged": True, "objective": "final_sqrt_ve"},
    )
    _, study = sweep(data, tmp_path, workers=2)
    [pruned] = finished(study, TrialState.PRUNED)
    [complete] = finished(study)
    assert pruned.params == {"triad.off_policy": True}
    assert seeds(pruned) == [0], "the remaining seeds never ran"
    assert pruned.user_attrs["outcomes"] == {"hard-diverged": 1}
    assert pruned.intermediate_values.keys() == {1}
    assert complete.params == {"triad.off_policy": False}
    assert seeds(complete) == [0, 1, 2, 3]
    assert sorted(complete.intermediate_values) == [1, 2, 3, 4]
    outcomes = pd.read_parquet(Path(pruned.user_attrs["results"]) / "outcomes.parquet")
    assert outcomes["seed"].tolist() == [0]


def test_median_pruner_stops_trials_worse_than_the_median_after_one_seed(ray_client, tmp_path):
    alphas = [0.05, 0.04, 0.03, 0.02, 0.01, 0.0005, 0.0002]
    data = spec(
        env={"id": "triad/RandomWalk-v0"},
        agent={"name": "semi_gradient_td", "alpha": 0.01},
        triad={"off_policy": False},
        run={"steps": 200, "log_every": 50, "seeds": 3},
        grid={"agent.alpha": alphas},
        sweep={"pruner": "median", "objective": "final_sqrt_ve"},
    )
    _, study = sweep(data, tmp_path, workers=1)
    by_alpha = {trial.params["agent.alpha"]: trial for trial in study.trials}
    assert [by_alpha[a].state.name for a in alphas] == ["COMPLETE"] * 5 + ["PRUNED"] * 2
    for alpha in alphas[5:]:
        assert seeds(by_alpha[alpha]) == [0]
    for alpha in alphas[:5]:
        assert sorted(by_alpha[alpha].intermediate_values) == [1, 2, 3]


@pytest.mark.parametrize("retries", [2, 0])
def test_killed_worker_loses_no_trial_and_counts_none_twice(ray_client, tmp_path, retries):
    """kill -9 of the Ray worker running a trial: Ray re-runs it, or the trial is failed and
    re-queued; either way each point completes exactly once."""
    steps = 100_000_000  # a few seconds: the worker is still running it when killed
    data = spec(
        env={"id": "triad/RandomWalk-v0"},
        agent={"name": "semi_gradient_td", "alpha": 0.01},
        triad={"off_policy": False},
        run={"steps": steps, "log_every": steps // 10, "seeds": 1},
        grid={"triad.n_step": [1, 2]},
        sweep={"retries": retries},
    )
    killed: list[int] = []

    def kill_first_worker() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            pids = worker_pids()
            if pids:  # its title is ray::run_trial_task only while it runs the trial
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.1)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    _, study = sweep(data, tmp_path, workers=2)
    killer.join()
    assert killed, "a worker was killed mid-trial"
    complete = finished(study)
    assert len(complete) == 2
    assert sorted(t.params["triad.n_step"] for t in complete) == [1, 2]
    failed = finished(study, TrialState.FAIL)
    if retries:
        assert failed == [], "Ray re-ran the task: the trial never failed"
    else:
        [lost] = failed
        assert "worker was lost" in lost.user_attrs["fail_reason"]
        assert not (tmp_path / "tiny" / "sweep-tiny" / f"trial-{lost.number:05d}").exists()
    trial_dirs = sorted((tmp_path / "tiny" / "sweep-tiny").glob("trial-*"))
    assert [d.name for d in trial_dirs] == [f"trial-{t.number:05d}" for t in complete]
    for trial in complete:
        metrics = pd.read_parquet(Path(trial.user_attrs["results"]) / "metrics.parquet")
        assert metrics["step"].max() == steps
        assert not math.isnan(trial.value)


def test_a_trial_asked_but_never_claimed_is_recovered_and_the_budget_finished(ray_client, tmp_path):
    """A launcher killed between Optuna's ask and its claim leaves a running trial that
    nobody owns; the next launcher waits out the claim grace, re-queues it and finishes."""
    data = spec(
        env={"id": "triad/RandomWalk-v0"},
        agent={"name": "semi_gradient_td", "alpha": 0.01},
        triad={"off_policy": False},
        run={"steps": 100, "log_every": 50, "seeds": 1},
        grid={},
        sweep={
            "sampler": "random",
            "n_trials": 2,
            "objective": "final_sqrt_ve",
            "space": {"agent.alpha": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
        },
    )
    _, study = sweep(data, tmp_path)
    orphan = study.ask(plan_sweep(parse_spec(data)).distributions)
    data["sweep"]["n_trials"] = 3
    report, study = sweep(data, tmp_path)
    assert report.finished == 3
    assert states(study) == {"COMPLETE": 3, "FAIL": 1}
    failed = finished(study, TrialState.FAIL)[0]
    assert failed.number == orphan.number
    assert "no launcher claimed it" in failed.user_attrs["fail_reason"]
    retry = next(t for t in finished(study) if t.user_attrs.get("retry_of") == orphan.number)
    assert retry.params == orphan.params
    assert any(f"trial {orphan.number} re-queued" in note for note in report.notes)


def test_a_fleet_trial_runs_its_seeds_as_one_fleet_in_its_ray_task(ray_client, tmp_path):
    """Each trial of a fleet sweep trains its seeds together on a worker: the published
    metrics are the bits of the same grid point run in-process."""
    data = spec(
        env={"id": "CartPole-v1"},
        agent={"name": "dqn", "backend": "fleet", "learning_starts": 100,
               "target_update_period": 100, "eval_episodes": 1},
        triad={},
        run={"steps": 300, "log_every": 150, "seeds": 2},
        grid={"agent.learning_rate": [1e-3, 1e-2]},
        sweep={"objective": "final_return"},
    )  # fmt: skip
    report, study = sweep(data, tmp_path, workers=1)
    assert report.finished == report.budget == 2
    for trial in finished(study):
        published = pd.read_parquet(Path(trial.user_attrs["results"]) / "metrics.parquet")
        point = parse_spec({**data, "grid": {}, "agent": {**data["agent"], **{
            "learning_rate": trial.params["agent.learning_rate"]}}})  # fmt: skip
        direct = run_trial(plan_trials(point)[0]).metrics
        assert seeds(trial) == [0, 1]
        assert set(direct.columns) < set(published.columns)  # published adds the grid point
        pd.testing.assert_frame_equal(
            published[list(direct.columns)].reset_index(drop=True),
            direct.reset_index(drop=True),
            check_exact=True,
        )
