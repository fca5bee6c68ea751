"""The triad cube on Baird's counterexample: only the all-on corner diverges."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlharness.runner import plan_trials, run_trial
from rlharness.spec import load_spec

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
ALL_ON = {"triad.features": "env", "triad.n_step": 1, "triad.off_policy": True}


def _outcomes_per_corner(file: str, steps: int, seeds: int) -> dict[tuple, set[str]]:
    spec = load_spec(EXPERIMENTS / file)
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"steps": steps})})
    corners = {}
    for trial in plan_trials(spec, seeds):
        result = run_trial(trial)
        corners[tuple(trial.settings.items())] = set(result.outcomes["outcome"])
    return corners


def test_expected_cube_diverges_only_with_all_three_ingredients() -> None:
    """Expected updates: DP vs on-policy weighting vs a Monte Carlo target vs one-hot features."""
    corners = _outcomes_per_corner("triad_cube_baird.yaml", steps=3000, seeds=3)
    assert len(corners) == 8
    for corner, outcomes in corners.items():
        expected = {"soft-diverged"} if dict(corner) == ALL_ON else {"converged"}
        assert outcomes == expected, corner


def test_sampled_cube_diverges_only_with_all_three_ingredients() -> None:
    """Sampled updates with the shipped settings (n = 10 as bootstrapping turned down, 1000 steps).

    The n = 10 corners stay bounded because their importance-sampling products
    are almost always 0, as the experiment file explains.
    """
    corners = _outcomes_per_corner("triad_cube_baird_sampled.yaml", steps=1000, seeds=10)
    for corner, outcomes in corners.items():
        settings = dict(corner)
        all_on = settings["triad.n_step"] == 1 and settings["triad.features"] == "env"
        all_on = all_on and settings["triad.off_policy"]
        assert outcomes == ({"soft-diverged"} if all_on else {"converged"}), corner


@pytest.mark.parametrize("knob", ["triad.features", "triad.n_step", "triad.off_policy"])
def test_switching_off_any_one_ingredient_prevents_divergence(knob: str) -> None:
    """From the diverging corner, each single switch alone restores stability (expected updates)."""
    off = {"triad.features": "tabular", "triad.n_step": "inf", "triad.off_policy": False}
    spec = load_spec(EXPERIMENTS / "triad_cube_baird.yaml")
    triad = {key.split(".")[1]: value for key, value in ALL_ON.items()}
    triad[knob.split(".")[1]] = off[knob]
    spec = spec.model_copy(
        update={
            "grid": {},
            "triad": spec.triad.model_copy(update=triad),
            "run": spec.run.model_copy(update={"steps": 3000}),
        }
    )
    (trial,) = plan_trials(spec, 2)
    result = run_trial(trial)
    assert set(result.outcomes["outcome"]) == {"converged"}
    per_seed = result.metrics.groupby("seed")["max_abs_value"]
    assert (per_seed.max() <= per_seed.first() + 1e-9).all()


def test_cube_run_draws_the_cube_figure(tmp_path: Path) -> None:
    from rlharness.local_run import run_experiment

    spec = load_spec(EXPERIMENTS / "triad_cube_baird.yaml")
    spec = spec.model_copy(
        update={"run": spec.run.model_copy(update={"steps": 50, "log_every": 25})}
    )
    run_dir, summary = run_experiment(spec, tmp_path, seeds=1)
    assert "plot_errors" not in summary
    for figure in ("triad_cube", "weights", "errors", "max_abs_value", "outcomes", "knob_effects"):
        assert (run_dir / "plots" / f"{figure}.png").read_bytes().startswith(b"\x89PNG"), figure
    assert (run_dir / "knob_effects.csv").exists()
