"""Runs checked against their manifests: `rlharness verify`, and catalog/compare/report on
corrupted or tampered results, through the real CLI."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from rlharness.catalog import Catalog, UnverifiedRunWarning
from rlharness.local_run import run_experiment
from rlharness.spec import parse_spec
from tests.conftest import TINY_SPEC
from tests.test_cli import BAD_INPUT, cli

UNVERIFIED = 1
TAMPERED_SQRT_VE = 0.001


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results root with one run of ``tiny`` and one of ``other`` (the same tiny experiment)."""
    root = tmp_path_factory.mktemp("template")
    other = copy.deepcopy(TINY_SPEC) | {"name": "other"}
    run_experiment(parse_spec(copy.deepcopy(TINY_SPEC)), root)
    run_experiment(parse_spec(other), root)
    return root


@pytest.fixture
def results(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template root, free to corrupt."""
    return Path(shutil.copytree(template, tmp_path / "results"))


def tiny_run(root: Path) -> Path:
    (run,) = [path for path in (root / "tiny").iterdir() if not path.name.startswith(".")]
    return run


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str, str, bool]] = {
    # name: (what is done to the tiny run, file named, problem named, still readable)
    "truncated_parquet": (
        lambda run: truncate(run / "outcomes.parquet"),
        "outcomes.parquet",
        "not readable Parquet",
        False,
    ),
    "summary_is_a_list": (
        lambda run: (run / "summary.json").write_text("[]"),
        "summary.json",
        "not a mapping (holds a list)",
        False,
    ),
    "broken_config": (
        lambda run: (run / "config.yaml").write_text("name: [unclosed\n"),
        "config.yaml",
        "cannot be parsed",
        False,
    ),
    "deleted_metrics": (
        lambda run: (run / "metrics.parquet").unlink(),
        "metrics.parquet",
        "missing",
        False,
    ),
    "deleted_plot": (
        lambda run: (run / "plots" / "errors.png").unlink(),
        "plots/errors.png",
        "missing (the manifest lists it)",
        True,
    ),
    "edited_summary": (
        lambda run: (run / "summary.json").write_text(
            (run / "summary.json").read_text().replace("smoke test", "smoke-test")
        ),
        "summary.json",
        "contents differ from the manifest",
        True,
    ),
    "unlisted_file": (
        lambda run: (run / "extra.csv").write_text("a,b\n1,2\n"),
        "extra.csv",
        "not listed in the manifest",
        True,
    ),
    "deleted_manifest": (
        lambda run: (run / "manifest.json").unlink(),
        "manifest.json",
        "missing",
        True,
    ),
}


def assert_clean(completed, code: int) -> str:
    """The exit status, no traceback; stdout and stderr together."""
    output = completed.stdout + completed.stderr
    assert completed.returncode == code, output
    assert "Traceback" not in output
    return output


def test_verify_passes_on_untouched_results(results: Path) -> None:
    completed = cli("verify", results)
    assert_clean(completed, 0)
    assert completed.stdout.strip() == "2 run(s) checked: 2 verified, 0 not"


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_corrupted_run_is_named_by_verify_and_left_out_of_the_catalog(
    case: str, results: Path
) -> None:
    corrupt, file, problem, readable = CORRUPTIONS[case]
    run = tiny_run(results)
    corrupt(run)
    key = f"tiny/{run.name}"

    verified = cli("verify", results)
    assert_clean(verified, UNVERIFIED)
    state = "unverified" if readable else "unreadable"
    (line,) = [line for line in verified.stdout.splitlines() if key in line]
    assert line.startswith(f"{state}: {key}: ")
    assert f"{file}: {problem}" in line
    assert "2 run(s) checked: 1 verified, 1 not" in verified.stdout

    listed = cli("catalog", "--results", results, "--format", "csv")
    assert_clean(listed, 0)
    runs = pd.read_csv(pd.io.common.StringIO(listed.stdout))["run"].tolist()
    assert runs == [f"other/{tiny_run_of(results, 'other')}"]
    (warning,) = listed.stderr.strip().splitlines()
    assert warning.startswith(f"warning: run {key} excluded") and f"{file}: {problem}" in warning

    included = cli("catalog", "--results", results, "--format", "csv", "--include-unverified")
    assert_clean(included, 0)
    runs = pd.read_csv(pd.io.common.StringIO(included.stdout))["run"].tolist()
    assert (key in runs) == readable, "a run that cannot be read is left out even so"
    assert key in included.stderr


def tiny_run_of(root: Path, experiment: str) -> str:
    (run,) = [p.name for p in (root / experiment).iterdir() if not p.name.startswith(".")]
    return run


def tamper(run: Path) -> None:
    """The issue's case: other numbers in outcomes.parquet, the grid points' labels swapped."""
    outcomes = pd.read_parquet(run / "outcomes.parquet")
    outcomes["final_sqrt_ve"] = TAMPERED_SQRT_VE
    outcomes.to_parquet(run / "outcomes.parquet", index=False)
    summary = json.loads((run / "summary.json").read_text())
    first, second = summary["variants"]
    first["label"], second["label"] = second["label"], first["label"]
    (run / "summary.json").write_text(json.dumps(summary))


def test_tampered_results_are_excluded_by_compare_unless_asked(results: Path) -> None:
    run = tiny_run(results)
    honest = pd.read_parquet(run / "outcomes.parquet")["final_sqrt_ve"]
    assert (honest > 10 * TAMPERED_SQRT_VE).all(), "the tampered value is distinguishable"
    tamper(run)
    key = f"tiny/{run.name}"

    refused = cli("compare", "tiny", "--results", results, "--reps", "200")
    output = assert_clean(refused, BAD_INPUT)
    assert f"excluded as it does not verify (--include-unverified uses it): {key}" in output
    assert "outcomes.parquet: " in output and "the manifest says" in output
    assert "summary.json:" in output

    everything = cli("compare", "--results", results, "--reps", "200", "--format", "csv")
    assert_clean(everything, 0)
    assert f"warning: run {key} excluded" in everything.stderr
    assert "tiny" not in everything.stdout and "other" not in everything.stderr

    shown = cli(
        "compare", "tiny", "--results", results, "--reps", "200", "--format", "csv",
        "--include-unverified",
    )  # fmt: skip
    assert_clean(shown, 0)
    assert f"warning: run {key} included although it does not match its manifest" in shown.stderr
    table = pd.read_csv(pd.io.common.StringIO(shown.stdout))
    means = table[table["statistic"] == "mean_final_sqrt_ve"]["value"]
    assert means.tolist() == pytest.approx([TAMPERED_SQRT_VE] * 2)


def test_report_leaves_out_a_corrupted_run_and_reports_the_others(
    results: Path, tmp_path: Path
) -> None:
    run = tiny_run(results)
    (run / "summary.json").write_text("[]")
    key = f"tiny/{run.name}"

    refused = cli("report", "tiny", "--results", results, "--reps", "100")
    output = assert_clean(refused, BAD_INPUT)
    assert f"excluded as it does not verify: {key} (summary.json:" in output

    page = tmp_path / "other.html"
    written = cli("report", "other", "--results", results, "--reps", "100", "--html", page)
    assert_clean(written, 0)
    assert f"warning: run {key} excluded: its files cannot be read" in written.stderr
    assert "smoke test" in page.read_text()


def test_catalog_warns_in_python_and_counts_what_it_left_out(results: Path) -> None:
    tamper(tiny_run(results))
    with pytest.warns(UnverifiedRunWarning, match=r"run tiny/.* excluded"):
        catalog = Catalog(results)
    assert list(catalog.entries) == [f"other/{tiny_run_of(results, 'other')}"]
    assert list(catalog.excluded) == [f"tiny/{tiny_run(results).name}"]
    with pytest.warns(UnverifiedRunWarning, match="included although"):
        included = Catalog(results, include_unverified=True)
    assert set(included.outcomes()["final_sqrt_ve"].round(6)) >= {TAMPERED_SQRT_VE}
    assert list(included.unverified) == list(catalog.excluded)


def test_a_root_whose_every_run_is_corrupt_says_so(results: Path) -> None:
    for experiment in ("tiny", "other"):
        (results / experiment / tiny_run_of(results, experiment) / "summary.json").write_text("[]")
    listed = cli("catalog", "--results", results)
    output = assert_clean(listed, BAD_INPUT)
    assert "holds no usable runs: 2 excluded as they do not verify" in output


def test_verify_of_a_missing_root_is_bad_input(tmp_path: Path) -> None:
    completed = cli("verify", tmp_path / "absent")
    output = assert_clean(completed, BAD_INPUT)
    assert "does not exist" in output
