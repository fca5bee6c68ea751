"""Cell rates, matched-cell effects and their stratified bootstrap, the hypotheses' verdicts,
the per-knob table, and ``rlharness hypotheses`` on a real run and on bad input."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlharness.analysis.cells import (
    CellEstimate,
    CellSample,
    cell_rates,
    levels,
    marginal_effect,
    marginal_rates,
)
from rlharness.analysis.hypotheses import (
    ALPHA,
    ENV,
    HYPOTHESES,
    N_STEP,
    STUDY_KNOBS,
    TARGET,
    WIDTH,
    Verdict,
    contrasts,
    effect_verdict,
    hypotheses,
    rate_verdict,
)
from rlharness.analysis.knobs import knob_effects
from rlharness.errors import ResultsError
from rlharness.local_run import run_experiment
from rlharness.spec import parse_spec
from tests.conftest import TINY_SPEC
from tests.test_cli import assert_bad_input, cli

KNOBS = [ENV, TARGET]
"""The design of the small hand-made grids: an environment and a bootstrap target."""
STUDY_FIGURES = ("soft_divergence", "max_q_against_return", "overestimation")


def seeds(env: str, target: str, diverged: int, total: int) -> list[dict[str, object]]:
    """``total`` seeds of one cell, the first ``diverged`` of them soft-diverged."""
    outcomes = ["soft-diverged"] * diverged + ["stable"] * (total - diverged)
    return [
        {ENV: env, TARGET: target, "seed": seed, "outcome": outcome}
        for seed, outcome in enumerate(outcomes)
    ]


def frame(*cells: Iterable[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame([row for cell in cells for row in cell])


def test_matched_cell_effect_is_the_mean_of_per_stratum_differences() -> None:
    outcomes = frame(
        seeds("A", "q_learning", 3, 4),
        seeds("A", "target_q", 1, 4),
        seeds("B", "q_learning", 2, 10),
        seeds("B", "target_q", 0, 5),
    )
    effect = marginal_effect(outcomes, TARGET, "target_q", "q_learning", KNOBS, reps=500)
    # A: 1/4 - 3/4 = -0.5; B: 0/5 - 2/10 = -0.2; the mean over the two strata is -0.35
    assert effect.value == pytest.approx(-0.35)
    assert (effect.treatment, effect.control) == pytest.approx((0.125, 0.475))
    assert (effect.strata, effect.min_seeds, effect.max_seeds) == (2, 4, 10)
    assert effect.low <= effect.value <= effect.high
    rates = marginal_rates(outcomes, TARGET, KNOBS, reps=500).set_index("value")
    assert rates.loc["q_learning", "rate"] == pytest.approx(0.475)
    assert rates.loc["target_q", ["cells", "seeds"]].tolist() == [2, 9]


def test_the_interval_is_the_point_when_every_cells_seeds_agree() -> None:
    outcomes = frame(
        seeds("A", "q_learning", 4, 4),
        seeds("A", "target_q", 0, 6),
        seeds("B", "q_learning", 0, 3),
        seeds("B", "target_q", 5, 5),
    ).assign(final_overestimation=lambda f: np.where(f[ENV] == "A", 2.5, -1.0))
    effect = marginal_effect(outcomes, TARGET, "target_q", "q_learning", KNOBS)
    assert effect.low == effect.value == effect.high == pytest.approx(0.0)
    rate = CellSample(outcomes, KNOBS, "diverged").rate({TARGET: "q_learning"})
    assert rate.low == rate.value == rate.high == 0.5
    continuous = CellSample(outcomes, KNOBS, "final_overestimation").rate()
    assert continuous.low == pytest.approx(continuous.high) == pytest.approx(0.75)


def test_the_interval_has_the_width_of_the_binomial_standard_error() -> None:
    """Four strata, each with 10 of 20 seeds diverged at both levels: every cell's resampled
    rate has variance 0.5 * 0.5 / 20, so the effect's is 2 * 0.0125 / 4 and its 95% interval
    is about 2 * 1.96 * sqrt(0.00625) = 0.31 wide."""
    strata = [f"env{i}" for i in range(4)]
    outcomes = frame(*(seeds(env, target, 10, 20) for env in strata for target in ("q", "t")))
    effect = marginal_effect(outcomes, TARGET, "t", "q", KNOBS, reps=4000, seed=3)
    assert effect.value == 0.0
    assert effect.high - effect.low == pytest.approx(2 * 1.96 * math.sqrt(0.00625), rel=0.1)
    # A continuous metric is resampled by index: values 0..9 have plug-in variance 8.25.
    values = frame(seeds("A", "q", 0, 10)).assign(final_eval_return=np.arange(10.0))
    mean = CellSample(values, KNOBS, "final_eval_return", reps=4000, seed=3).rate()
    assert mean.value == 4.5
    assert mean.high - mean.low == pytest.approx(2 * 1.96 * math.sqrt(0.825), rel=0.1)


def test_the_bootstrap_depends_on_its_seed_not_on_the_order_of_rows() -> None:
    outcomes = frame(
        seeds("A", "q", 2, 5), seeds("A", "t", 1, 5), seeds("B", "q", 4, 5), seeds("B", "t", 2, 5)
    ).assign(final_eval_return=lambda f: np.arange(len(f), dtype=float))
    shuffled = outcomes.sample(frac=1.0, random_state=1)
    for metric in ("diverged", "final_eval_return"):
        first = CellSample(outcomes, KNOBS, metric, seed=7)
        again = CellSample(shuffled, KNOBS, metric, seed=7)
        assert np.array_equal(first.replicates, again.replicates), metric
        assert not np.array_equal(
            first.replicates, CellSample(outcomes, KNOBS, metric, seed=8).replicates
        )
    effect = marginal_effect(outcomes, TARGET, "t", "q", KNOBS, seed=7)
    assert marginal_effect(shuffled, TARGET, "t", "q", KNOBS, seed=7) == effect


def test_matched_cells_see_no_effect_where_pooling_the_seeds_would() -> None:
    """Simpson's paradox: in each environment both targets diverge at the same rate, but
    target_q has most of its seeds where divergence is common."""
    outcomes = frame(
        seeds("A", "q_learning", 9, 10),
        seeds("A", "target_q", 18, 20),
        seeds("B", "q_learning", 2, 20),
        seeds("B", "target_q", 1, 10),
    )
    pooled = outcomes.assign(diverged=outcomes["outcome"] == "soft-diverged")
    pooled_rates = pooled.groupby(TARGET)["diverged"].mean()
    assert pooled_rates["target_q"] - pooled_rates["q_learning"] == pytest.approx(8 / 30)
    effect = marginal_effect(outcomes, TARGET, "target_q", "q_learning", KNOBS)
    assert effect.value == pytest.approx(0.0)
    assert effect.low < 0.0 < effect.high


@pytest.mark.parametrize(
    ("estimate", "direction", "verdict", "reason"),
    [
        ((-0.30, -0.40, -0.20), -1, Verdict.SUPPORTED, "lies below 0"),
        ((0.20, 0.10, 0.30), +1, Verdict.SUPPORTED, "lies above 0"),
        ((0.30, 0.20, 0.40), -1, Verdict.NOT_SUPPORTED, "the opposite effect"),
        ((0.01, -0.05, 0.08), -1, Verdict.NOT_SUPPORTED, "no effect of 0.10 or more"),
        ((-0.05, -0.08, -0.02), -1, Verdict.SUPPORTED, "lies below 0"),
        ((-0.10, -0.30, 0.10), -1, Verdict.INCONCLUSIVE, "(width 0.40) holds 0"),
    ],
)
def test_effect_verdicts(
    estimate: tuple[float, float, float], direction: int, verdict: Verdict, reason: str
) -> None:
    found, why = effect_verdict(
        CellEstimate(*estimate, strata=12, min_seeds=5, max_seeds=8), direction
    )
    assert found is verdict
    assert reason in why


def test_a_reduction_from_a_rate_below_the_margin_is_a_floor_effect() -> None:
    rare = CellEstimate(-0.01, -0.02, 0.0, strata=12, min_seeds=5, max_seeds=5, control=0.02)
    verdict, why = effect_verdict(rare, -1)
    assert verdict is Verdict.INCONCLUSIVE
    assert "control diverges at 0.02, below 0.10" in why
    # an increase from the same floor can be refuted
    assert effect_verdict(rare, +1)[0] is Verdict.NOT_SUPPORTED


def test_a_measure_without_a_margin_needs_its_interval_to_exclude_zero() -> None:
    small = CellEstimate(-0.01, -0.02, -0.005, strata=12, min_seeds=5, max_seeds=5)
    assert effect_verdict(small, -1, margin=None)[0] is Verdict.SUPPORTED
    around = CellEstimate(0.01, -0.02, 0.03, strata=12, min_seeds=5, max_seeds=5)
    assert effect_verdict(around, -1, margin=None) == (
        Verdict.INCONCLUSIVE,
        "the 95% CI [-0.02, +0.03] holds 0; 12 strata of 5 seeds per cell",
    )


def test_continuous_measures_test_the_primary_contrasts() -> None:
    """Peak max |Q| 10x higher and over-estimation 2 higher for Q-learning in every cell: the
    log10 ratio of target_q to q_learning is -1 and the over-estimation effect -2."""
    grid = study_grid()
    online = grid[TARGET] == "q_learning"
    grid = grid.assign(
        peak_probe_max_abs_q=np.where(online, 50.0, 5.0),
        final_overestimation=np.where(online, 3.0, 1.0),
    )
    table = hypotheses(grid, reps=200).set_index(["id", "metric", "comparison"])
    peak = table.loc[("H2", "log10 peak max |Q|", "target_q vs q_learning")]
    assert peak["estimate"] == pytest.approx(-1.0)
    assert peak["verdict"] == Verdict.SUPPORTED
    over = table.loc[("H2", "over-estimation (Q - MC return)", "target_q vs q_learning")]
    assert over["estimate"] == pytest.approx(-2.0)
    rows = table.reset_index()
    measured = rows[~rows["metric"].isin(["soft divergence", "hard divergence"])]
    assert set(measured["role"]) == {"primary"}
    assert len(measured) == 2 * 5  # two measures x the five primary contrasts of H2-H6


def test_few_seeds_make_any_verdict_inconclusive() -> None:
    clear = CellEstimate(-0.9, -1.0, -0.8, strata=12, min_seeds=3, max_seeds=5)
    assert effect_verdict(clear, -1) == (
        Verdict.INCONCLUSIVE,
        "3-5 seeds per cell, fewer than the 5 a verdict needs (interval [-1.00, -0.80])",
    )
    assert rate_verdict(clear)[0] is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [
        ((0.01, 0.00, 0.04), Verdict.SUPPORTED),
        ((0.20, 0.10, 0.30), Verdict.NOT_SUPPORTED),
        ((0.04, 0.01, 0.08), Verdict.INCONCLUSIVE),
    ],
)
def test_hard_divergence_rate_verdicts(
    interval: tuple[float, float, float], verdict: Verdict
) -> None:
    assert rate_verdict(CellEstimate(*interval, strata=72, min_seeds=5, max_seeds=5))[0] is verdict


def study_grid(
    widths: Iterable[object] = (128, 32, 64), alphas: Iterable[object] = (1.0, 0.0, 0.5)
) -> pd.DataFrame:
    """The study's full grid, 5 seeds a cell: Q-learning and inverse double Q always
    soft-diverge, the two targets that evaluate with the target network never."""
    rows = []
    for env, target, n, width, alpha in itertools.product(
        ("MinAtar/Breakout-v1", "MinAtar/Asterix-v1"),
        ("q_learning", "target_q", "inverse_double_q", "double_q"),
        (10, 1, 3),
        widths,
        alphas,
    ):
        outcome = "soft-diverged" if target in ("q_learning", "inverse_double_q") else "stable"
        point = {ENV: env, TARGET: target, N_STEP: n, WIDTH: width, ALPHA: alpha}
        rows.extend(point | {"seed": seed, "outcome": outcome} for seed in range(5))
    return pd.DataFrame(rows)


def test_hypotheses_on_a_grid_with_known_answers() -> None:
    table = hypotheses(study_grid(), reps=200).set_index(["id", "role", "comparison"])
    expected = {
        ("H1", "primary", "all 216 cells"): (0.0, Verdict.SUPPORTED),
        ("H2", "primary", "target_q vs q_learning"): (-1.0, Verdict.SUPPORTED),
        ("H2", "secondary", "double_q vs inverse_double_q"): (-1.0, Verdict.SUPPORTED),
        ("H3", "primary", "inverse_double_q vs q_learning"): (0.0, Verdict.NOT_SUPPORTED),
        # neither target diverges: a reduction cannot show (a floor effect)
        ("H3", "secondary", "double_q vs target_q"): (0.0, Verdict.INCONCLUSIVE),
        ("H4", "primary", "n_step 10 vs 1"): (0.0, Verdict.NOT_SUPPORTED),
        ("H4", "secondary", "n_step 3 vs 1"): (0.0, Verdict.NOT_SUPPORTED),
        ("H5", "primary", "width 128 vs 32"): (0.0, Verdict.NOT_SUPPORTED),
        ("H5", "secondary", "width 64 vs 32"): (0.0, Verdict.NOT_SUPPORTED),
        ("H6", "primary", "alpha 1 vs 0"): (0.0, Verdict.NOT_SUPPORTED),
        ("H6", "secondary", "alpha 0.5 vs 0"): (0.0, Verdict.NOT_SUPPORTED),
    }
    assert list(table.index) == list(expected)
    for key, (estimate, verdict) in expected.items():
        row = table.loc[key]
        assert (row["estimate"], row["ci_low"], row["ci_high"]) == (estimate,) * 3, key
        assert row["verdict"] == verdict, key
    h3 = table.loc[("H3", "primary", "inverse_double_q vs q_learning")]
    assert (h3["treatment_rate"], h3["control_rate"], h3["paper"]) == (1.0, 1.0, "0.33 vs 0.61")
    assert table["strata"].tolist() == [216] + [54] * 4 + [72] * 2 + [72] * 4


def test_levels_are_read_numerically_from_the_data() -> None:
    grid = study_grid(widths=("128", 32.0, 64), alphas=("1", 0.0, "0.5"))
    assert levels(grid, WIDTH) == ["32", "64", "128"]
    assert levels(grid, ALPHA) == ["0", "0.5", "1"]
    assert levels(grid, TARGET) == ["q_learning", "target_q", "inverse_double_q", "double_q"]
    cells = cell_rates(grid, list(STUDY_KNOBS))
    assert cells[N_STEP].drop_duplicates().tolist() == ["1", "3", "10"], "not 1, 10, 3"
    (h5,) = (h for h in HYPOTHESES if h.knob == WIDTH)
    found = [(c.role, c.treatment, c.control) for c in contrasts(grid, h5)]
    assert found == [("primary", "128", "32"), ("secondary", "64", "32")]


def test_a_missing_knob_or_level_is_named() -> None:
    grid = study_grid()
    with pytest.raises(ResultsError, match=r"no column agent\.network\.width"):
        hypotheses(grid.drop(columns=WIDTH))
    with pytest.raises(ResultsError, match=r"agent\.network\.width has no level '256'; levels: "):
        marginal_effect(grid, WIDTH, 256, 32, STUDY_KNOBS)
    with pytest.raises(ResultsError, match="no column width in these outcomes"):
        marginal_rates(grid, "width", [*STUDY_KNOBS, "width"])
    one_width = hypotheses(grid[grid[WIDTH] == 32], reps=100).set_index("id")
    assert one_width.loc["H5", "verdict"] == Verdict.NOT_TESTABLE
    assert "agent.network.width has one level (32)" in one_width.loc["H5", "reason"]
    no_double = hypotheses(grid[grid[TARGET] != "double_q"], reps=100)
    untestable = no_double[no_double["verdict"] == Verdict.NOT_TESTABLE]
    assert untestable["comparison"].tolist() == [
        "double_q vs inverse_double_q",
        "double_q vs target_q",
    ]
    assert untestable["reason"].str.contains("has no level 'double_q'").all()


def test_cell_rates_summarise_each_cell() -> None:
    outcomes = frame(seeds("A", "q", 1, 4), seeds("A", "t", 0, 2)).assign(
        final_eval_return=[1.0, 2.0, 3.0, np.nan, 5.0, 6.0],
        final_overestimation=[4.0, 0.0, np.nan, 2.0, -1.0, -1.0],
    )
    outcomes.loc[0, "outcome"] = "hard-diverged"
    table = cell_rates(outcomes, KNOBS)
    assert table.columns.tolist() == [
        ENV,
        TARGET,
        "seeds",
        "diverged",
        "hard_diverged",
        "median_final_eval_return",
        "mean_final_overestimation",
    ]
    # a NaN metric leaves its seed out of that metric's summary only
    assert table.drop(columns=KNOBS).to_numpy().tolist() == [
        [4, 0.25, 0.25, 2.0, 2.0],
        [2, 0.0, 0.0, 5.5, -1.0],
    ]


def test_knob_effects_average_grid_points_not_seeds() -> None:
    outcomes = frame(
        seeds("A", "q_learning", 9, 10),
        seeds("A", "target_q", 18, 20),
        seeds("B", "q_learning", 2, 20),
        seeds("B", "target_q", 1, 10),
    ).assign(final_eval_return=1.0)
    effects = knob_effects(outcomes, KNOBS, reps=500).set_index(["knob", "value"])
    q = effects.loc[(TARGET, "q_learning")]
    assert q[["grid_points", "runs", "diverged"]].tolist() == [2, 30, 11]
    assert q["diverged_fraction"] == pytest.approx(0.5), "(0.9 + 0.1) / 2, not 11 / 30"
    assert q["ci_low"] < 0.5 < q["ci_high"]
    assert effects.loc[(ENV, "A"), "diverged_fraction"] == pytest.approx(0.9)
    certain = knob_effects(study_grid(), list(STUDY_KNOBS), reps=200).set_index(["knob", "value"])
    assert (
        certain.loc[(TARGET, "target_q"), ["diverged_fraction", "ci_low", "ci_high"]].tolist()
        == [0.0] * 3
    )


def test_hypotheses_command_on_a_real_run(tiny_study: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    shown = cli("hypotheses", "--results", tiny_study, "--reps", "200", "--out", out)
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr
    for hypothesis in ("H1", "H2", "H3", "H4", "H5", "H6"):
        assert f"{hypothesis} primary (" in shown.stdout
    assert "inconclusive at this scale: 2 seeds per cell" in shown.stdout
    assert (
        "H5 primary (soft divergence): Larger networks reduce soft divergence; not testable"
        in shown.stdout
    )
    figures = {f"{name}.{kind}" for name in STUDY_FIGURES for kind in ("png", "svg")}
    tables = {"hypotheses.csv", "knob_rates.csv", "cells.csv"}
    assert {path.name for path in out.iterdir()} == figures | tables
    assert len(pd.read_csv(out / "cells.csv")) == 16, "2 envs x 2 targets x 2 n x 2 alphas"
    as_csv = cli("hypotheses", "deadly_triad_minatar", "--results", tiny_study, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    ids = pd.read_csv(io.StringIO(as_csv.stdout))["id"]
    assert list(dict.fromkeys(ids)) == ["H1", "H2", "H3", "H4", "H5", "H6"]


def test_hypotheses_command_on_bad_input(tiny_study: Path, tmp_path: Path) -> None:
    assert_bad_input(
        cli("hypotheses", "no_such_experiment", "--results", tiny_study),
        "nothing in",
        "experiments: deadly_triad_minatar",
    )
    assert_bad_input(cli("hypotheses", "--results", tmp_path / "absent"), "absent")
    run_experiment(parse_spec(TINY_SPEC), tmp_path / "linear")
    assert_bad_input(
        cli("hypotheses", "tiny", "--results", tmp_path / "linear"),
        "has no agent.bootstrap_target, agent.n_step",
    )
