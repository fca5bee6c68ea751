"""The remedies study's analysis: labels, per-remedy rates and effects, onsets and leads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlharness.analysis.remedies import (
    GAME,
    MAX_Q,
    NONE,
    REMEDY,
    label_remedies,
    lead_summary,
    member_traces,
    onsets,
    remedy_name,
    remedy_table,
    warning_correlations,
)
from tests.test_cli import assert_bad_input, cli


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"agent.bootstrap_target": "q_learning", "agent.n_step": 1}, NONE),
        ({"agent.bootstrap_target": "target_q"}, "target network"),
        ({"agent.bootstrap_target": "double_q", "agent.n_step": 3}, "double Q + 3-step"),
        (
            {
                "agent.bootstrap_target": "q_learning",
                "agent.network.layer_norm": True,
                "agent.l2": 0.01,
            },
            "LayerNorm + L2",
        ),
        ({"agent.bootstrap_target": "q_learning", "agent.l2": 0.0}, NONE),
        ({"agent.name": "pqn", "agent.network.layer_norm": True}, "PQN + LayerNorm"),
        ({"agent.name": "pqn", "agent.network.layer_norm": False, "agent.l2": 1e-4}, "PQN + L2"),
        ({"agent.name": "pqn"}, "PQN + LayerNorm"),
    ],
)
def test_remedy_names_list_the_stabilisers(settings: dict[str, object], name: str) -> None:
    assert remedy_name(settings) == name


def _outcomes() -> pd.DataFrame:
    """Two games; q_learning diverges in 3 of 4 seeds on each, target_q in 1 of 4 on one."""
    rows = []
    for game in ("A", "B"):
        for variant, (target, diverged) in enumerate(
            (("q_learning", [1, 1, 1, 0]), ("target_q", [1 if game == "A" else 0, 0, 0, 0]))
        ):
            for seed, flag in enumerate(diverged):
                rows.append(
                    {
                        "run": f"run-{game}",
                        "variant": variant,
                        "seed": seed,
                        GAME: game,
                        "agent.bootstrap_target": target,
                        "agent.n_step": 1,
                        "outcome": "soft-diverged" if flag else "stable",
                        "peak_probe_max_abs_q": 1000.0 if flag else 10.0,
                        "final_eval_return": float(seed),
                    }
                )
    return pd.DataFrame(rows)


def test_remedy_table_averages_games_and_matches_cells() -> None:
    table = label_remedies(_outcomes()).pipe(remedy_table, reps=200)
    soft = table[table["measure"] == "soft divergence"].set_index("remedy")
    assert soft.loc[NONE, "value"] == pytest.approx(0.75)
    assert soft.loc["target network", "value"] == pytest.approx(0.125)
    assert soft.loc["target network", "effect_vs_none"] == pytest.approx(0.125 - 0.75)
    assert math.isnan(soft.loc[NONE, "effect_vs_none"])
    peak = table[table["measure"] == "log10 peak max |Q|"].set_index("remedy")
    assert peak.loc[NONE, "value"] == pytest.approx(0.75 * 3 + 0.25 * 1)
    assert peak.loc["target network", "ci_low"] <= peak.loc["target network", "value"]


def _traces() -> tuple[pd.DataFrame, pd.DataFrame]:
    """One cell: three healthy members and one, inside their range until then, whose srank
    falls at step 300 and max |Q| rises at step 500 (logs every 100 steps)."""
    steps = np.arange(0, 1000, 100)
    rows, outcomes = [], []
    for seed in range(4):
        diverging = seed == 3
        for step in steps:
            rows.append(
                {
                    "run": "r",
                    "variant": 0,
                    "seed": seed,
                    "step": step,
                    MAX_Q: (100.0 if diverging and step >= 500 else 1.0 + 0.1 * (seed % 3)),
                    "feature_srank": (5.0 if diverging and step >= 300 else 20.0 + seed % 3),
                    "feature_cosine": 0.5 + 0.01 * (seed % 3),
                }
            )
        outcomes.append(
            {
                "run": "r",
                "variant": 0,
                "seed": seed,
                GAME: "A",
                REMEDY: NONE,
                "outcome": "soft-diverged" if diverging else "stable",
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(outcomes)


def test_onsets_and_leads_count_logged_steps() -> None:
    metrics, outcomes = _traces()
    traces = member_traces(metrics, outcomes)
    table = onsets(traces, ["feature_srank", "feature_cosine"])
    assert len(table) == 1
    assert table.loc[0, f"onset_{MAX_Q}"] == 500
    assert table.loc[0, "onset_feature_srank"] == 300
    assert math.isnan(table.loc[0, "onset_feature_cosine"])
    leads = lead_summary(table, log_every=100, reps=100).set_index("warning")
    assert leads.loc["feature_srank", "earlier"] == 1
    assert leads.loc["feature_srank", "median_lead_logs"] == 2
    assert leads.loc["feature_cosine", "never"] == 1


def test_an_onset_needs_a_persistent_departure() -> None:
    metrics, outcomes = _traces()
    blip = (metrics["seed"] == 3) & (metrics["step"] == 100)
    metrics.loc[blip, MAX_Q] = 1000.0  # one log beyond the envelope, then back
    table = onsets(member_traces(metrics, outcomes), ["feature_srank"])
    assert table.loc[0, f"onset_{MAX_Q}"] == 500


def test_warning_correlation_is_plus_or_minus_one_for_monotone_relations() -> None:
    """Two cells logging at different steps (DQN and PQN do): each at its own middle step."""
    rows = []
    for variant, (remedy, steps) in enumerate([(NONE, (0, 100, 200)), ("PQN", (0, 128, 256))]):
        for seed in range(6):
            for step in steps:
                rows.append(
                    {
                        "run": "r",
                        "variant": variant,
                        "seed": seed,
                        "step": step,
                        GAME: "A",
                        REMEDY: remedy,
                        "diverged": False,
                        MAX_Q: 10.0 ** (seed if step == steps[-1] else 0),
                        "feature_srank": 30.0 - seed,
                        "feature_cosine": 0.1 * seed,
                    }
                )
    table = warning_correlations(pd.DataFrame(rows), reps=100).set_index("warning")
    assert table.loc["feature_srank", "spearman"] == pytest.approx(-1.0)
    assert table.loc["feature_cosine", "spearman"] == pytest.approx(1.0)
    assert table.loc["feature_srank", "cells"] == 2 and table.loc["feature_srank", "step"] == 114


def test_remedies_command_on_a_real_run(tiny_study: Path, tmp_path: Path) -> None:
    out = tmp_path / "remedies"
    shown = cli(
        "remedies", "deadly_triad_minatar", "--results", tiny_study, "--reps", "100", "--out", out
    )
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr
    table = pd.read_csv(out / "remedies.csv")
    assert {"none", "3-step"} <= set(table["remedy"]), "the tiny study varies n and the target"
    assert set(table["measure"]) >= {"soft divergence", "final return"}
    figures = {f"{name}.{kind}" for name in ("remedies", "warnings") for kind in ("png", "svg")}
    tables = {f"{name}.csv" for name in ("remedies", "leads", "onsets", "correlations")}
    assert {path.name for path in out.iterdir()} == figures | tables


def test_remedies_command_on_bad_input(tiny_study: Path, tmp_path: Path) -> None:
    assert_bad_input(
        cli("remedies", "--results", tiny_study), "no deep run of an experiment named what_stops_it"
    )
    assert_bad_input(cli("remedies", "no_such_run", "--results", tiny_study), "nothing in")
