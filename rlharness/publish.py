"""Publish a run: its results, summary, knob effects and figures, written atomically as one run.

`publish_run` writes the trials' results of an experiment through a
`RunWriter` and renames the run into place only when every file is written;
both an in-process run (`rlharness.local_run`) and each finished sweep trial
(by the sweep's driver) are published through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rlharness.analysis.knobs import knob_effects
from rlharness.errors import ResultsWriteError
from rlharness.outcomes import STABLE
from rlharness.results import RunWriter
from rlharness.runner import TrialResult
from rlharness.spec import ExperimentSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LINEAR_SUMMARY = ("max_abs_value", "sqrt_ve", "sqrt_pbe", "weight_norm")
DEEP_SUMMARY = ("eval_return", "probe_max_abs_q", "loss", "param_norm")


def publish_run(
    writer: RunWriter,
    spec: ExperimentSpec,
    results: list[TrialResult],
    origin: dict[str, Any],
    plots: bool = True,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write ``results`` of ``spec`` as one run through ``writer`` and publish it atomically.

    ``origin`` is the run's provenance; ``extra`` is added to the summary.
    ``plots=False`` skips the figures (a sweep's trials, where they would
    dominate the time). Returns the run directory and the summary.

    Raises `ResultsWriteError` when a file cannot be written (a full disk):
    the files written until then stay in the staging dir, which the error names.
    """
    try:
        resolved = spec.model_dump(mode="json")
        resolved["run"]["seeds"] = len(results[0].config.seeds)
        summary = summarise(spec, writer.run_id, results)
        summary.update(extra or {})
        writer.write_yaml("config.yaml", resolved)
        writer.write_json("provenance.json", origin)
        # Per-seed outcomes first: on a full disk they are what is most worth keeping.
        writer.write_parquet("outcomes.parquet", _stack(results, "outcomes"))
        writer.write_parquet("metrics.parquet", _stack(results, "metrics"))
        _write_agents(writer, results)
        if spec.grid:
            effects = knob_effects(_stack(results, "outcomes"), list(spec.grid))
            summary["knob_effects"] = effects.to_dict(orient="records")
            writer.write_text("knob_effects.csv", effects.to_csv(index=False))
        failed = _write_plots(writer, spec, results) if plots else {}
        if failed:
            summary["plot_errors"] = failed
        writer.write_json("summary.json", summary)
        return writer.finish(), summary
    except ResultsWriteError as error:
        writer.salvage(error)
        raise
    except BaseException:
        if not writer.holds_trials():  # staged grid points are kept for a resume
            writer.abandon()
        raise


def agent_path(variant: int, seed: int, name: str) -> str:
    """Where a run keeps a saved network: ``agents/variant<i>/seed<k>/<name>``.

    The grid point is named by its variant number (summary.json maps it to its label): labels
    hold characters a path must not (an env id's ``/``) and can be long.
    """
    return f"agents/variant{variant}/seed{seed}/{name}"


def _write_agents(writer: RunWriter, results: list[TrialResult]) -> None:
    """Stage every deep agent's saved networks (`TrialResult.agents`)."""
    for result in results:
        for seed, networks in result.agents.items():
            for name, data in networks.items():
                writer.write_bytes(agent_path(result.config.variant, seed, name), data)


def summarise(spec: ExperimentSpec, run_id: str, results: list[TrialResult]) -> dict[str, Any]:
    """Outcome counts and median final metrics per grid point, JSON-ready (NaN as null).

    Each grid point records its absolute soft-divergence bound (null where it
    has none) and, for linear learners, the divergence criterion that labelled
    its seeds: its parameters and its statement in words.
    """
    variants = []
    for result in results:
        config = result.config
        outcomes = result.outcomes
        last = result.metrics.groupby("seed").tail(1)
        names = DEEP_SUMMARY if "eval_return" in last.columns else LINEAR_SUMMARY
        variant: dict[str, Any] = {
            "variant": config.variant,
            "label": config.label,
            "settings": config.settings,
            "soft_divergence_threshold": result.soft_divergence_threshold,
            "seeds": len(config.seeds),
            "outcome_counts": outcomes["outcome"].value_counts().to_dict(),
            "diverged_fraction": float((~outcomes["outcome"].isin(STABLE)).mean()),
            "median_final": {name: _finite(last[name].median()) for name in names},
            "per_seed": [
                {key: _finite(value) for key, value in record.items()}
                for record in outcomes.to_dict(orient="records")
            ],
        }
        if result.divergence_criterion is not None:
            variant["divergence_criterion"] = result.divergence_criterion
        variants.append(variant)
    return {
        "experiment": spec.name,
        "run_id": run_id,
        "description": spec.description,
        "agent": spec.agent.name,
        "env": spec.env.id,
        "steps": spec.run.steps,
        "variants": variants,
    }


def _stack(results: list[TrialResult], table: str) -> pd.DataFrame:
    """One table over all grid points with ``variant`` and one column per grid field."""
    frames = []
    for result in results:
        frame = getattr(result, table).copy()
        frame.insert(0, "variant", result.config.variant)
        for position, (path, value) in enumerate(result.config.settings.items(), start=1):
            frame.insert(position, path, value)
        frames.append(frame)
    stacked = pd.concat(frames, ignore_index=True)
    for path in results[0].config.settings:
        if stacked[path].map(type).nunique() > 1:
            stacked[path] = stacked[path].astype(str)
    return stacked


def _write_plots(
    writer: RunWriter, spec: ExperimentSpec, results: list[TrialResult]
) -> dict[str, str]:
    """Draw and stage every figure (PNG and SVG); a figure that fails is reported, not fatal."""
    from rlharness.analysis import plots
    from rlharness.analysis.style import FORMATS, figure_bytes

    metrics = _stack(results, "metrics")
    outcomes = _stack(results, "outcomes")
    labels = {result.config.variant: result.config.label for result in results}
    thresholds = {
        r.config.variant: r.soft_divergence_threshold
        for r in results
        if r.soft_divergence_threshold is not None
    }
    name = spec.name
    figures: dict[str, Callable[[], Figure]]
    if "eval_return" in metrics.columns:
        figures = {
            "returns": lambda: plots.metric_curves(
                metrics, labels, "eval_return", "greedy evaluation return", f"{name}: returns"
            ),
            "max_abs_q": lambda: plots.max_abs_value_curves(
                metrics, labels, thresholds, name, column="probe_max_abs_q"
            ),
            "loss": lambda: plots.metric_curves(
                metrics, labels, "loss", "Huber loss", f"{name}: loss"
            ),
        }
    else:
        figures = {
            "weights": lambda: plots.weight_components(metrics, labels, name),
            "errors": lambda: plots.error_curves(metrics, labels, name),
            "max_abs_value": lambda: plots.max_abs_value_curves(metrics, labels, thresholds, name),
        }
    figures["outcomes"] = lambda: plots.outcome_fractions(outcomes, labels, name)
    if spec.grid:
        effects = knob_effects(outcomes, list(spec.grid))
        figures["knob_effects"] = lambda: plots.knob_effects(effects, name)
    if plots.is_triad_cube(spec.grid):
        settings = {r.config.variant: r.config.settings for r in results}
        figures["triad_cube"] = lambda: plots.triad_cube(outcomes, settings, name)
    failed = {}
    for figure_name, draw in figures.items():
        try:
            figure = draw()
        except Exception as error:  # a broken figure must not discard computed results
            failed[figure_name] = f"{type(error).__name__}: {error}"
            continue
        for extension in FORMATS:
            writer.write_bytes(f"plots/{figure_name}.{extension}", figure_bytes(figure, extension))
        plots.plt.close(figure)
    return failed


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _finite(value.item())
    return value
