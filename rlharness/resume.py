"""Resumable runs: each finished grid point is staged as it finishes and loaded back to publish.

A run's staging dir (`rlharness.results.RunWriter`) holds ``.run.json``, the
run record: the resolved experiment, each grid point's seeds, the provenance
of the process that started it and one entry per resume; and
``.trials/v<variant>/`` for each finished grid point: its ``metrics.parquet``,
``outcomes.parquet`` and ``trial.json`` (what `TrialResult` holds besides).
``rlharness run SPEC --resume`` finds the latest unfinished run of the
experiment (`find_unfinished`), takes it over (`take_over`) if it is the same
experiment, runs only the grid points not staged, and publishes every grid
point from its staged files, as an uninterrupted run also does, so that both
publish the same bytes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from rlharness.errors import SpecError, short
from rlharness.integrity import find_partials, read_partial
from rlharness.live import TENSORBOARD_DIR
from rlharness.results import PARTIAL_SUFFIX, RUN_RECORD, STAGED_TRIALS, RunWriter
from rlharness.runner import TrialConfig, TrialResult
from rlharness.spec import ExperimentSpec

TRIAL_RECORD = "trial.json"
AGENTS = "agents"
"""A staged grid point's saved networks: agents/seed<k>/<file> (`TrialResult.agents`)."""


def run_record(
    spec: ExperimentSpec, configs: list[TrialConfig], origin: dict[str, Any]
) -> dict[str, Any]:
    """What a resume must match (the experiment, each grid point's seeds) and who started it."""
    return {
        "experiment": spec.model_dump(mode="json"),
        "seeds": [list(config.seeds) for config in configs],
        "provenance": origin,
        "resumed": [],
    }


def read_run_record(staging_dir: Path) -> dict[str, Any]:
    """The run record of an unfinished run."""
    record: dict[str, Any] = json.loads((staging_dir / RUN_RECORD).read_text())
    return record


def stage_trial(writer: RunWriter, result: TrialResult) -> None:
    """Stage one finished grid point as ``.trials/v<variant>/``, all its files at once."""
    details = {
        "variant": result.config.variant,
        "seeds": list(result.config.seeds),
        "soft_divergence_threshold": result.soft_divergence_threshold,
        "divergence_criterion": result.divergence_criterion,
    }
    networks = {
        f"{AGENTS}/seed{seed}/{name}": data
        for seed, files in result.agents.items()
        for name, data in files.items()
    }
    writer.write_directory(
        f"{STAGED_TRIALS}/v{result.config.variant}",
        {
            "metrics.parquet": _parquet_bytes(result.metrics),
            "outcomes.parquet": _parquet_bytes(result.outcomes),
            **networks,
            TRIAL_RECORD: (json.dumps(details, indent=2) + "\n").encode(),
        },
    )


def load_trials(staging_dir: Path, configs: list[TrialConfig]) -> dict[int, TrialResult]:
    """The staged results of ``configs``, by variant; a grid point not staged is absent."""
    staged = {}
    for config in configs:
        directory = staging_dir / STAGED_TRIALS / f"v{config.variant}"
        if not (directory / TRIAL_RECORD).is_file():
            continue
        details = json.loads((directory / TRIAL_RECORD).read_text())
        if details["seeds"] != list(config.seeds):
            raise ValueError(f"{directory} holds seeds {details['seeds']}, not {config.seeds}")
        staged[config.variant] = TrialResult(
            config,
            pd.read_parquet(directory / "metrics.parquet"),
            pd.read_parquet(directory / "outcomes.parquet"),
            details["soft_divergence_threshold"],
            details["divergence_criterion"],
            agents=_staged_agents(directory / AGENTS, config.seeds),
        )
    return staged


def _staged_agents(directory: Path, seeds: tuple[int, ...]) -> dict[int, dict[str, bytes]]:
    """The saved networks staged with a grid point (`TrialResult.agents`; none for linear)."""
    if not directory.is_dir():
        return {}
    return {
        seed: {
            path.name: path.read_bytes() for path in sorted((directory / f"seed{seed}").iterdir())
        }
        for seed in seeds
        if (directory / f"seed{seed}").is_dir()
    }


def find_unfinished(root: Path, spec: ExperimentSpec) -> Path | None:
    """The staging dir of the latest unfinished (resumable) run of ``spec`` under ``root``.

    Run ids sort by their start time; sweep trials are not runs and are never resumed.
    """
    staging_dirs = sorted(
        partial.path
        for partial in find_partials(root)
        if partial.path.parent == root / spec.name and (partial.path / RUN_RECORD).is_file()
    )
    return staging_dirs[-1] if staging_dirs else None


def take_over(
    staging_dir: Path, spec: ExperimentSpec, configs: list[TrialConfig], origin: dict[str, Any]
) -> tuple[RunWriter, dict[str, Any]]:
    """Continue the unfinished run in ``staging_dir`` as this process; its updated run record.

    Raises `SpecError` if its writer may still run, or if ``spec`` or the seeds
    differ from the run's: each differing field named with both values.
    """
    keep_reason = read_partial(staging_dir).keep_reason()
    if keep_reason is not None:
        raise SpecError("--resume", [f"the unfinished run {staging_dir} is {keep_reason}"])
    record = read_run_record(staging_dir)
    _check_same_experiment(staging_dir, record, spec, configs)
    writer = RunWriter.take_over(staging_dir)
    for name in writer.written():  # a publication the interruption cut short: redone in full
        if not name.startswith(f"{TENSORBOARD_DIR}/"):  # the finished points' streams stay
            writer.path(name).unlink()
    staged = len(list((staging_dir / STAGED_TRIALS).glob("v*")))
    record["resumed"].append({**origin, "grid_points_staged": staged})
    return writer, record


def _check_same_experiment(
    staging_dir: Path, record: dict[str, Any], spec: ExperimentSpec, configs: list[TrialConfig]
) -> None:
    """Raise `SpecError` naming each field where ``spec`` differs from the run's experiment."""
    run_id = staging_dir.name.removeprefix(".").removesuffix(PARTIAL_SUFFIX)
    staged_seeds = record["seeds"][0] if record["seeds"] else []
    seeds = list(configs[0].seeds) if configs else []
    if staged_seeds != seeds:
        raise SpecError(
            "--seeds",
            [
                f"the unfinished run {run_id} has {len(staged_seeds)} seed(s) "
                f"({short(staged_seeds)}), this command {len(seeds)} ({short(seeds)}); "
                f"resume it with --seeds {len(staged_seeds)}, or run without --resume"
            ],
        )
    staged = _fields(record["experiment"])
    current = _fields(spec.model_dump(mode="json"))
    problems = [
        f"{path}: {short(staged.get(path))} in the unfinished run {run_id}, "
        f"{short(current.get(path))} now"
        for path in sorted(staged.keys() | current.keys())
        if staged.get(path) != current.get(path)
    ]
    if problems or record["seeds"] != [list(config.seeds) for config in configs]:
        problems.append(
            "the experiment file changed since the run started; run without --resume "
            "to start a new run"
        )
        raise SpecError("--resume", problems)


def _fields(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``section.field`` paths (lists kept whole)."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_fields(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet, written as `rlharness.results.atomic_write_parquet` writes it."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()
