"""Weights & Biases, when installed and asked for (``--wandb PROJECT``): one W&B run per
grid point x seed, grouped by the rlharness run, each record logged at its step."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from rlharness.live.tensorboard import stream_labels

INSTALL_HINT = "wandb is not installed; `pip install wandb` to stream to W&B"


def wandb_missing() -> bool:
    """Whether the wandb package is absent."""
    return importlib.util.find_spec("wandb") is None


class WandbRuns:
    """An `rlharness.live.Observer` logging each record to a W&B run of its grid point x seed."""

    def __init__(
        self,
        project: str,
        group: str,
        points: Mapping[int, Mapping[str, Any]],
        context: Mapping[str, Any],
    ) -> None:
        """Runs in W&B project ``project``, grouped as ``group`` (the rlharness run id)."""
        self.project, self.group, self.points, self.context = project, group, points, context
        self.labels = stream_labels(points, str(context.get("agent", "run")))
        self.runs: dict[tuple[int, int], Any] = {}

    def record(self, variant: int, seed: int, record: Mapping[str, float]) -> None:
        """Log the record's metrics at its step."""
        run = self.runs.get((variant, seed)) or self._open(variant, seed)
        run.log({k: v for k, v in record.items() if k != "step"}, step=int(record["step"]))

    def finished(self, variant: int, seed: int) -> None:
        """Finish the seed's W&B run."""
        run = self.runs.pop((variant, seed), None)
        if run is not None:
            run.finish()

    def close(self) -> None:
        """Finish every open W&B run."""
        for key in list(self.runs):
            self.finished(*key)

    def _open(self, variant: int, seed: int) -> Any:
        import wandb

        run = wandb.init(
            project=self.project,
            group=self.group,
            name=f"{self.labels[variant]}/seed{seed}",
            config={**self.context, **self.points[variant], "seed": seed},
            reinit="create_new",
        )
        self.runs[variant, seed] = run
        return run
