"""The catalog and `rlharness compare` on known runs: tables, statistics, formats, bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import trim_mean

from rlharness.analysis.compare import compare, rounded
from rlharness.catalog import Catalog
from rlharness.errors import ResultsError
from rlharness.local_run import run_experiment
from rlharness.spec import parse_spec
from tests.helpers import BAIRD_W0

RLHARNESS = Path(sys.executable).parent / "rlharness"
BAD_INPUT = 2
SEEDS = 4


def baird(name: str, agent: dict[str, object], grid: dict[str, list[object]] | None = None):
    return parse_spec(
        {
            "name": name,
            "env": {"id": "triad/Baird-v0"},
            "agent": {
                "initial_weights": BAIRD_W0,
                "initial_weight_noise": 0.1,
                "update": "expected",
                **agent,
            },
            "run": {"steps": 1000, "log_every": 50, "seeds": SEEDS},
            "grid": grid or {},
        }
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Semi-gradient DP (diverges on Baird), TDC (converges), and a grid with mixed n_step."""
    root = tmp_path_factory.mktemp("results")
    run_experiment(baird("baird_dp", {"name": "semi_gradient_dp", "alpha": 0.01}), root)
    run_experiment(baird("baird_tdc", {"name": "tdc", "alpha": 0.005, "beta": 0.05}), root)
    cube = baird("cube", {"name": "semi_gradient_dp", "alpha": 0.01}, {"triad.n_step": ["inf", 1]})
    run_experiment(cube, root)
    return root


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [str(RLHARNESS), *map(str, args)], capture_output=True, text=True, timeout=120, env=env
    )


def outcomes_of(root: Path, experiment: str) -> pd.DataFrame:
    (path,) = (root / experiment).glob("*/outcomes.parquet")
    return pd.read_parquet(path)


def test_catalog_lists_every_run_with_its_knobs(results: Path) -> None:
    catalog = Catalog(results)
    runs = catalog.runs
    assert sorted(runs["experiment"]) == ["baird_dp", "baird_tdc", "cube"]
    assert set(runs["kind"]) == {"run"}
    assert set(runs["env"]) == {"triad/Baird-v0"}
    tdc = runs[runs["experiment"] == "baird_tdc"].iloc[0]
    assert (tdc["agent"], tdc["agent.alpha"], tdc["agent.beta"]) == ("tdc", 0.005, 0.05)
    # A grid field is a column of the grid point (outcomes), not of the run.
    assert pd.isna(runs.loc[runs["experiment"] == "cube", "triad.n_step"].iloc[0])
    outcomes = catalog.outcomes()
    assert len(outcomes) == SEEDS * 4
    cube = outcomes[outcomes["experiment"] == "cube"]
    assert sorted(set(cube["triad.n_step"])) == ["1", "inf"]
    assert set(outcomes.loc[outcomes["experiment"] == "baird_tdc", "triad.n_step"]) == {"1"}


def test_catalog_sql_joins_runs_outcomes_and_metrics(results: Path) -> None:
    catalog = Catalog(results)
    counts = catalog.sql(
        "SELECT experiment, agent, count(*) AS seeds FROM outcomes GROUP BY ALL ORDER BY 1"
    )
    assert counts.to_dict(orient="records") == [
        {"experiment": "baird_dp", "agent": "semi_gradient_dp", "seeds": SEEDS},
        {"experiment": "baird_tdc", "agent": "tdc", "seeds": SEEDS},
        {"experiment": "cube", "agent": "semi_gradient_dp", "seeds": 2 * SEEDS},
    ]
    steps = catalog.sql(
        "SELECT m.run, count(*) AS rows, max(step) AS last FROM metrics m "
        "JOIN runs r USING (run) WHERE r.agent = 'tdc' GROUP BY ALL"
    )
    (path,) = (results / "baird_tdc").glob("*/metrics.parquet")
    assert steps["rows"].tolist() == [len(pd.read_parquet(path))]
    assert steps["last"].tolist() == [1000]


def test_catalog_skips_unpublished_runs_and_reports_empty_roots(
    results: Path, tmp_path: Path
) -> None:
    shutil.copytree(results, tmp_path / "results")
    published = next((tmp_path / "results" / "baird_dp").iterdir())
    shutil.copytree(published, published.parent / ".20990101-000000-abcdef.partial")
    (published.parent / "20990101-000000-unfinished").mkdir()
    assert len(Catalog(tmp_path / "results").runs) == 3
    with pytest.raises(ResultsError, match="does not exist"):
        Catalog(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="holds no published runs"):
        Catalog(tmp_path / "empty")


def test_compare_two_known_runs_against_independent_statistics(results: Path) -> None:
    comparison = compare(Catalog(results), ["baird_dp", "baird_tdc"], "final_max_abs_value")
    table = comparison.table().set_index("group")
    assert list(table.index) == ["baird_dp", "baird_tdc"]
    for experiment in ("baird_dp", "baird_tdc"):
        values = outcomes_of(results, experiment)["final_max_abs_value"].to_numpy()
        row = table.loc[experiment]
        assert row["seeds"] == SEEDS
        assert row["iqm"] == pytest.approx(trim_mean(values, 0.25), rel=1e-12)
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["median"] == pytest.approx(np.median(values), rel=1e-12)
        assert row["iqm_low"] <= row["iqm"] <= row["iqm_high"]
    # Semi-gradient DP diverges on Baird (S&B Figure 11.2); TDC does not (Figure 11.5).
    assert table.loc["baird_dp", "diverged"] == SEEDS
    assert table.loc["baird_tdc", "diverged"] == 0
    assert table.loc["baird_dp", "diverged_low"] > 0.5
    assert not comparison.higher_is_better
    improvement = comparison.improvement_table().iloc[0]
    assert (improvement["x"], improvement["y"]) == ("baird_tdc", "baird_dp")
    assert improvement["probability"] == 1.0


def test_compare_groups_grid_points_and_by_knobs(results: Path) -> None:
    catalog = Catalog(results)
    by_point = compare(catalog, ["cube"], "final_sqrt_ve", reps=200)
    assert [g.name for g in by_point.groups] == ["n_step=inf", "n_step=1"]
    pooled = compare(catalog, [], "final_sqrt_ve", by=["agent"], reps=200)
    assert {g.name: len(g.rows) for g in pooled.groups} == {
        "agent=semi_gradient_dp": 3 * SEEDS,
        "agent=tdc": SEEDS,
    }
    filtered = compare(
        catalog, [], "final_sqrt_ve", where="\"triad.n_step\" = 'inf'", by=["experiment"], reps=200
    )
    assert [g.name for g in filtered.groups] == ["experiment=cube"]
    assert len(filtered.groups[0].rows) == SEEDS


def test_compare_is_reproducible_and_prints_every_format(results: Path) -> None:
    args = ("compare", "baird_dp", "baird_tdc", "--results", results, "--reps", "300")
    first = cli(*args, "--format", "json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == cli(*args, "--format", "json").stdout
    document = json.loads(first.stdout)
    assert document["metric"] == "final_sqrt_ve"
    assert [g["group"] for g in document["groups"]] == ["baird_dp", "baird_tdc"]
    assert document["groups"][0]["diverged_rate"]["value"] == 1.0
    csv = pd.read_csv(io.StringIO(cli(*args, "--format", "csv").stdout))
    assert set(csv["statistic"]) == {
        "mean_final_sqrt_ve",
        "median_final_sqrt_ve",
        "iqm_final_sqrt_ve",
        "diverged_rate",
        "probability_of_improvement",
    }
    iqm = csv[(csv["group"] == "baird_tdc") & (csv["statistic"] == "iqm_final_sqrt_ve")]
    assert iqm["value"].iloc[0] == pytest.approx(document["groups"][1]["iqm"]["value"])
    markdown = cli(*args, "--format", "markdown").stdout
    assert "| group | envs | seeds | mean [95% CI] | median [95% CI] | IQM [95% CI] |" in markdown
    assert "| baird_dp | triad/Baird-v0 | 4 |" in markdown
    table = cli(*args)
    assert table.returncode == 0 and "probability of improvement" in table.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("compare", "baird_dp", "--results", "{absent}"), "does not exist"),
        (("compare", "baird_dp", "--results", "{empty}"), "holds no published runs"),
        (
            ("compare", "nope", "--results", "{results}"),
            "experiments: baird_dp, baird_tdc, cube",
        ),
        (
            ("compare", "baird_dp", "--metric", "final_return", "--results", "{results}"),
            "metrics they all have: final_max_abs_value, final_sqrt_ve",
        ),
        (
            ("compare", "--by", "agent.gamma", "--results", "{results}"),
            "cannot group by agent.gamma",
        ),
        (("catalog", "--sql", "SELECT nope FROM runs", "--results", "{results}"), "nope"),
    ],
)
def test_bad_input_names_what_is_available(
    results: Path, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"absent": tmp_path / "absent", "empty": tmp_path / "empty", "results": results}
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    done = cli(*(arg.format(**paths) for arg in args))
    assert done.returncode == BAD_INPUT
    assert expected in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == before


def test_runs_that_measure_different_metrics_are_refused(results: Path, tmp_path: Path) -> None:
    root = tmp_path / "results"
    shutil.copytree(results, root)
    deep = parse_spec(
        {
            "name": "dqn_tiny",
            "env": {"id": "CartPole-v1"},
            "agent": {"name": "dqn", "learning_starts": 100, "eval_episodes": 1},
            "run": {"steps": 300, "log_every": 300, "seeds": 1},
        }
    )
    run_experiment(deep, root)
    done = cli("compare", "baird_dp", "dqn_tiny", "--results", root)
    assert done.returncode == BAD_INPUT
    assert "share none" in done.stderr
    assert "final_eval_return" in done.stderr and "final_sqrt_ve" in done.stderr
    assert "Traceback" not in done.stderr


def test_compare_by_agent_groups_each_grid_point_by_its_own_agent(tmp_path: Path) -> None:
    """A grid over agent.name: `--by agent` gives one group per agent, each its own seeds."""
    agents = ["semi_gradient_td", "semi_gradient_dp"]
    spec = parse_spec(
        {
            "name": "two_agents",
            "env": {"id": "triad/Baird-v0"},
            "agent": {"name": agents[0], "alpha": 0.01, "initial_weights": BAIRD_W0},
            "run": {"steps": 200, "log_every": 50, "seeds": SEEDS},
            "grid": {"agent.name": agents},
        }
    )
    run_experiment(spec, tmp_path)
    figures = tmp_path / "figures"
    done = cli(
        "compare", "two_agents", "--by", "agent", "--format", "json", "--results", tmp_path,
        "--plots", figures, "--pdf",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    groups = json.loads(done.stdout)["groups"]
    assert [group["group"] for group in groups] == [f"agent={name}" for name in agents]
    assert [group["seeds"] for group in groups] == [SEEDS, SEEDS]
    outcomes = outcomes_of(tmp_path, "two_agents")
    for variant, (group, name) in enumerate(zip(groups, agents, strict=True)):
        assert set(outcomes.loc[outcomes["variant"] == variant, "agent.name"]) == {name}
        scores = outcomes.loc[outcomes["variant"] == variant, "final_sqrt_ve"].to_numpy()
        assert group["mean"]["value"] == pytest.approx(scores.mean())
    written = sorted(path.name for path in figures.iterdir())
    assert written == [
        f"{n}.{e}" for n in ("iqm_intervals", "profile") for e in ("pdf", "png", "svg")
    ]
    assert min(Image.open(figures / "profile.png").info["dpi"]) >= 199.99


def test_group_names_round_sampled_numbers_and_leave_other_text() -> None:
    name = "trial 3: alpha=0.0012345678, beta=0.30000000000000004, env=v1.2.30, n=-2.5e-07"
    assert rounded(name) == "trial 3: alpha=0.001235, beta=0.3, env=v1.2.30, n=-2.5e-07"
