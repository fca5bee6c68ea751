"""TensorBoard event streams: one per grid point x seed, written as each record is logged.

The SB3 / CleanRL convention: scalars tagged by metric name at the record's
env step, in ``<directory>/<label>/seed<k>/`` where the label is the grid
point's knobs (filesystem-safe). Each stream also carries its knobs as text and
as TensorBoard hparams. TensorBoard stores scalars as float32 (``simple_value``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.writer import FileWriter

LABEL_LIMIT = 120
"""Longest knob label used as a directory name; longer or clashing ones are numbered."""


def stream_labels(points: Mapping[int, Mapping[str, Any]], default: str) -> dict[int, str]:
    """A filesystem-safe directory name per grid point: its knobs, ``key=value`` joined by ``,``.

    A point without knobs is ``default`` (the agent's name); labels that clash or are too
    long are prefixed with the point's index.
    """
    labels = {
        variant: ",".join(f"{path.split('.')[-1]}={value}" for path, value in knobs.items())
        or default
        for variant, knobs in points.items()
    }
    safe = {variant: re.sub(r"[^A-Za-z0-9._=,+-]", "_", label) for variant, label in labels.items()}
    counts = list(safe.values())
    return {
        variant: label
        if counts.count(label) == 1 and len(label) <= LABEL_LIMIT
        else f"point{variant}-{label[:LABEL_LIMIT]}"
        for variant, label in safe.items()
    }


def hparam_value(value: Any) -> bool | int | float | str:
    """A knob as TensorBoard's hparams take it: a number, bool or string."""
    return value if isinstance(value, bool | int | float | str) else str(value)


class TensorBoardStreams:
    """An `rlharness.live.Observer` writing one TensorBoard event stream per grid point x seed."""

    def __init__(
        self,
        directory: Path,
        points: Mapping[int, Mapping[str, Any]],
        context: Mapping[str, Any],
    ) -> None:
        """Streams under ``directory`` for the grid points ``points`` (variant -> knobs);
        ``context`` (agent, env) is recorded beside each point's knobs."""
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401 (fail early if missing)

        self.directory, self.points, self.context = directory, points, dict(context)
        self.labels = stream_labels(points, str(context.get("agent", "run")))
        self.writers: dict[tuple[int, int], SummaryWriter] = {}

    def record(self, variant: int, seed: int, record: Mapping[str, float]) -> None:
        """Write the record's metrics at its step and flush, so TensorBoard sees them now."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        writer = self.writers.get((variant, seed)) or self._open(variant, seed, record)
        # one event holding every metric of the record: as add_scalar per metric writes, faster
        values = [
            Summary.Value(tag=name, simple_value=float(value))
            for name, value in record.items()
            if name != "step"
        ]
        self._events(writer).add_summary(Summary(value=values), int(record["step"]))
        writer.flush()

    def finished(self, variant: int, seed: int) -> None:
        """Close the seed's stream."""
        writer = self.writers.pop((variant, seed), None)
        if writer is not None:
            writer.close()

    def close(self) -> None:
        """Close every open stream."""
        for key in list(self.writers):
            self.finished(*key)

    def _open(self, variant: int, seed: int, first: Mapping[str, float]) -> SummaryWriter:
        """A new stream with the point's knobs as text and hparams (metrics: ``first``'s tags)."""
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        path = self.directory / self.labels[variant] / f"seed{seed}"
        writer = SummaryWriter(log_dir=str(path))
        knobs = {**self.context, **self.points[variant], "seed": seed}
        table = "\n".join(
            ["| knob | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in knobs.items())]
        )
        writer.add_text("knobs", table, 0)
        metrics = {name: 0.0 for name in first if name != "step"}
        for summary in hparams({k: hparam_value(v) for k, v in knobs.items()}, metrics):
            self._events(writer).add_summary(summary)
        self.writers[variant, seed] = writer
        return writer

    @staticmethod
    def _events(writer: SummaryWriter) -> FileWriter:
        """The writer's event file (SummaryWriter opens it on construction)."""
        events = writer.file_writer
        assert events is not None
        return events
