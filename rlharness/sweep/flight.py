"""A trial in flight: its seeds in chunks (one Ray task each), and the results of those done.

A pruned sweep runs a trial's seeds ``sweep.seeds_per_step`` at a time, so
that the pruner can judge it after each chunk; otherwise a trial is one
chunk. `Flight.merged` is the trial's result over the seeds run so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
import pandas as pd

from rlharness.runner import TrialConfig, TrialResult


@dataclass
class Flight:
    """A trial in flight: its remaining seed chunks and the results so far."""

    trial: optuna.Trial
    config: TrialConfig
    chunks: list[tuple[int, ...]]
    results: list[TrialResult] = field(default_factory=list)

    @classmethod
    def start(cls, trial: optuna.Trial, config: TrialConfig, seeds_per_chunk: int) -> Flight:
        """``config``'s seeds in chunks of ``seeds_per_chunk``, none run yet."""
        seeds = config.seeds
        chunks = [seeds[i : i + seeds_per_chunk] for i in range(0, len(seeds), seeds_per_chunk)]
        return cls(trial, config, chunks)

    @property
    def done(self) -> bool:
        """Whether every chunk has its result."""
        return len(self.results) == len(self.chunks)

    def next_chunk(self) -> TrialConfig:
        """The trial's config over the seeds of the first chunk without a result."""
        seeds = self.chunks[len(self.results)]
        return TrialConfig(self.config.spec, seeds, self.trial.number, self.config.settings)

    def merged(self) -> TrialResult:
        """The results of the chunks so far as one result over the seeds they ran."""
        results = self.results
        seeds = tuple(seed for result in results for seed in result.config.seeds)
        config = TrialConfig(self.config.spec, seeds, self.trial.number, self.config.settings)
        return TrialResult(
            config,
            pd.concat([r.metrics for r in results], ignore_index=True),
            pd.concat([r.outcomes for r in results], ignore_index=True),
            results[0].soft_divergence_threshold,
            results[0].divergence_criterion,
        )
