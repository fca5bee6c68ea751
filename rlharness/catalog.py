"""The catalog: every published run and sweep trial under a results root, as tables.

Derived from the results files alone (the source of truth) and rebuilt on
every open, so it cannot go stale. Three tables:

- ``runs``: one row per run or sweep trial: ``run`` (its key,
  ``<experiment>/<run-id>`` or ``<experiment>/sweep-<study>/trial-<n>``),
  experiment, kind (``run`` or ``trial``), study, trial, env, agent, backend,
  seeds, steps, commit, path, and every field of its experiment file as a
  dotted column (``agent.alpha``, ``triad.n_step``, ...).
- ``outcomes``: one row per grid point x seed of every run: the run's
  columns, the grid point (``variant``, ``label``, the grid fields overriding
  the file's values, also in ``env``, ``agent`` and ``backend``), ``seed``,
  ``outcome`` and the final metrics.
- ``metrics``: one row per logged step, read lazily from the Parquet files.

`Catalog.sql` answers SQL over the three tables with DuckDB.

Each run is verified against its manifest as it is loaded
(`rlharness.integrity.check_run`). A run that does not verify is left out,
with an `UnverifiedRunWarning` naming the run, the file and the problem,
unless ``include_unverified`` is set; a run whose files cannot be read at all
is left out even then.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from rlharness.errors import ResultsError
from rlharness.integrity import RunCheck, check_runs

SKIPPED_SECTIONS = ("name", "description", "grid", "sweep")
RESOLVED = {"env": "env.id", "agent": "agent.name", "backend": "agent.backend"}
"""Run columns a grid can vary: each grid point's own value (its outcomes' grid column) wins."""


class UnverifiedRunWarning(UserWarning):
    """A run whose files do not match its manifest: left out, or included as asked."""


@dataclass(frozen=True)
class RunEntry:
    """One published run or sweep trial: where it is and what it was."""

    key: str
    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def kind(self) -> str:
        return "trial" if "sweep" in self.summary else "run"

    def record(self) -> dict[str, Any]:
        """This run's row of the ``runs`` table."""
        sweep = self.summary.get("sweep", {})
        agent = self.config.get("agent", {})
        git = self.provenance.get("git", {}) or {}
        return {
            "run": self.key,
            "experiment": self.config.get("name", self.path.parent.name),
            "kind": self.kind,
            "study": sweep.get("study"),
            "trial": sweep.get("trial"),
            "run_id": self.summary.get("run_id", self.path.name),
            "env": self.config.get("env", {}).get("id"),
            "agent": agent.get("name"),
            "backend": agent.get("backend"),
            "seeds": self.config.get("run", {}).get("seeds"),
            "steps": self.config.get("run", {}).get("steps"),
            "commit": git.get("commit"),
            "path": str(self.path),
            **{
                name: value
                for name, value in knob_columns(self.config).items()
                if name not in self.config.get("grid", {})
            },
        }


def knob_columns(config: dict[str, Any]) -> dict[str, Any]:
    """Every setting of an experiment file as ``section.field`` columns (lists as JSON text)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list):
            flat[prefix] = json.dumps(value)
        else:
            flat[prefix] = value

    for section, value in config.items():
        if section not in SKIPPED_SECTIONS:
            walk(section, value)
    return flat


def _entry(check: RunCheck) -> RunEntry:
    return RunEntry(check.key, check.path, check.config, check.summary, check.provenance)


def _warn(check: RunCheck, included: bool) -> None:
    """Warn that ``check``'s run did not verify, and whether it is used anyway."""
    if included:
        what = "included although it does not match its manifest (--include-unverified)"
    elif check.readable:
        what = "excluded: its files do not match its manifest (--include-unverified uses it)"
    else:
        what = "excluded: its files cannot be read"
    warnings.warn(f"run {check.key} {what}: {check.describe()}", UnverifiedRunWarning, stacklevel=3)


class Catalog:
    """All runs and trials under a results root; raises `ResultsError` if there are none.

    Runs that do not verify against their manifests are in ``excluded`` (and
    left out) or, with ``include_unverified``, in ``unverified`` (and used);
    each gives an `UnverifiedRunWarning`.
    """

    def __init__(self, root: Path, include_unverified: bool = False) -> None:
        if not root.is_dir():
            raise ResultsError(f"results directory {root} does not exist")
        self.root = root
        self.excluded: dict[str, RunCheck] = {}
        self.unverified: dict[str, RunCheck] = {}
        self.entries: dict[str, RunEntry] = {}
        for check in check_runs(root):
            if check.verified:
                self.entries[check.key] = _entry(check)
                continue
            included = include_unverified and check.readable
            _warn(check, included)
            if included:
                self.unverified[check.key] = check
                self.entries[check.key] = _entry(check)
            else:
                self.excluded[check.key] = check
        if self.excluded and not self.entries:
            listed = "; ".join(f"{k} ({c.describe()})" for k, c in self.excluded.items())
            raise ResultsError(
                f"results directory {root} holds no usable runs: "
                f"{len(self.excluded)} excluded as they do not verify: {listed}"
            )
        if not self.entries:
            raise ResultsError(
                f"results directory {root} holds no published runs "
                "(expected <experiment>/<run-id>/ with manifest.json; run `rlharness run SPEC`)"
            )

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per run or trial, oldest experiment and run id first."""
        frame = pd.DataFrame.from_records([entry.record() for entry in self.entries.values()])
        return _uniform(frame).sort_values(["experiment", "run"], ignore_index=True)

    @cached_property
    def _loaded(self) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
        """All outcomes with their run's columns, and each run's own outcome columns and dtypes."""
        frames, own = [], {}
        for key, entry in self.entries.items():
            outcomes = _read_parquet(entry, "outcomes.parquet")
            own[key] = dict(outcomes.dtypes.items())
            frames.append(_with_run_columns(entry, outcomes))
        columns = list(dict.fromkeys(column for frame in frames for column in frame.columns))
        filled = [frame.dropna(axis=1, how="all") for frame in frames]
        return _uniform(pd.concat(filled, ignore_index=True).reindex(columns=columns)), own

    @property
    def _outcomes(self) -> pd.DataFrame:
        return self._loaded[0]

    def outcome_columns(self, run: str) -> dict[str, Any]:
        """The columns of one run's own outcomes file, with their dtypes."""
        return self._loaded[1][run]

    def latest_run(self, experiment: str) -> str | None:
        """The key of the newest plain run (not a sweep trial) of ``experiment``, or None."""
        runs = self.runs
        chosen = runs[(runs["experiment"] == experiment) & (runs["kind"] == "run")]
        if chosen.empty:
            return None
        return str(chosen.sort_values("run_id")["run"].iloc[-1])

    def outcomes(self, runs: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per grid point x seed of the given runs (all runs if None)."""
        if runs is None:
            return self._outcomes.copy()
        keys = list(runs)
        return self._outcomes[self._outcomes["run"].isin(keys)].reset_index(drop=True)

    def metrics(self, runs: Iterable[str], columns: Iterable[str] | None = None) -> pd.DataFrame:
        """Logged metrics of the given runs with ``run``, ``variant``, ``seed`` and ``step``."""
        frames = []
        wanted = None if columns is None else list(columns)
        for key in runs:
            entry = self.entries[key]
            frame = _read_parquet(entry, "metrics.parquet")
            keep = ["variant", "seed", "step"]
            keep += [c for c in frame.columns if c not in keep and (wanted is None or c in wanted)]
            frame = frame[keep]
            frame.insert(0, "run", key)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["run", "variant", "seed", "step"])
        return pd.concat(frames, ignore_index=True)

    def sql(self, query: str) -> pd.DataFrame:
        """Run DuckDB SQL over the tables ``runs``, ``outcomes`` and ``metrics``."""
        import duckdb

        connection = duckdb.connect()
        try:
            connection.register("runs", self.runs)
            connection.register("outcomes", self._outcomes)
            files = [str(entry.path / "metrics.parquet") for entry in self.entries.values()]
            keys = {str(entry.path / "metrics.parquet"): key for key, entry in self.entries.items()}
            connection.register(
                "metric_files", pd.DataFrame({"filename": list(keys), "run": list(keys.values())})
            )
            listed = ", ".join("'" + file.replace("'", "''") + "'" for file in files)
            connection.execute(
                "CREATE VIEW metrics AS SELECT f.run, m.* EXCLUDE (filename) FROM "
                f"read_parquet([{listed}], union_by_name = true, filename = true) m "
                "JOIN metric_files f USING (filename)"
            )
            return connection.execute(query).df()
        except duckdb.Error as error:
            raise ResultsError(f"query failed: {str(error).splitlines()[0]}") from None
        finally:
            connection.close()


def _with_run_columns(entry: RunEntry, outcomes: pd.DataFrame) -> pd.DataFrame:
    """One run's outcomes with its ``runs`` columns and each grid point's label in front."""
    if "variant" not in outcomes.columns:
        outcomes.insert(0, "variant", 0)
    labels = {v["variant"]: v.get("label") for v in entry.summary.get("variants", [])}
    record = entry.record()
    base = {name: value for name, value in record.items() if name not in outcomes.columns}
    gridded = {name: field for name, field in RESOLVED.items() if field in outcomes.columns}
    frame = pd.DataFrame({name: [value] * len(outcomes) for name, value in base.items()})
    frame.insert(frame.columns.get_loc("path"), "label", outcomes["variant"].map(labels))
    for name, field in gridded.items():
        frame[name] = outcomes[field].to_numpy()
    return pd.concat([frame, outcomes], axis=1)


def _uniform(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns whose values mix types across runs become text, so SQL and grouping can use them."""
    for column in frame.columns:
        kinds = {type(value) for value in frame[column] if not _missing(value)}
        if len(kinds) > 1 and not kinds <= {int, float}:
            frame[column] = [None if _missing(v) else str(v) for v in frame[column]]
    return frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _read_parquet(entry: RunEntry, name: str) -> pd.DataFrame:
    """One of a run's tables; `ResultsError` naming the run and file if it cannot be read."""
    try:
        return pd.read_parquet(entry.path / name)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ResultsError(f"run {entry.key}: {name} cannot be read ({first})") from None
