"""TensorBoard event streams: one per grid point x seed, written as each record is logged.

The SB3 / CleanRL convention: scalars tagged by metric name at the record's
env step, in ``<directory>/<label>/seed<k>/`` where the label is the grid
point's knobs (filesystem-safe). Each stream also carries its knobs as text and
as TensorBoard hparams. TensorBoard stores scalars as float32 (``simple_value``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

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


class EventStream:
    """One TensorBoard event file, appended to and closed at each write.

    It holds no open file or thread between writes, so a fleet of thousands of
    members has as many streams without running out of file descriptors, and each
    record is on disk (for TensorBoard to read) when `write` returns.
    """

    def __init__(self, directory: Path) -> None:
        """A new event file in ``directory``, named as TensorBoard's loaders expect."""
        directory.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = directory / name
        self._append(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, summary: Summary, step: int) -> None:
        """Append ``summary`` at ``step``."""
        self._append(Event(wall_time=time.time(), step=step, summary=summary))

    def _append(self, event: Event) -> None:
        with self.path.open("ab") as stream:
            RecordWriter(stream).write(event.SerializeToString())


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
        self.directory, self.points, self.context = directory, points, dict(context)
        self.labels = stream_labels(points, str(context.get("agent", "run")))
        self.streams: dict[tuple[int, int], EventStream] = {}
        self.stopped = False

    def clear(self, variants: Collection[int]) -> None:
        """Remove the streams of these grid points (an interrupted run's, before they rerun)."""
        for variant in variants:
            shutil.rmtree(self.directory / self.labels[variant], ignore_errors=True)

    def record(self, variant: int, seed: int, record: Mapping[str, float]) -> None:
        """Append the record's metrics at its step: one event holding every metric.

        A file that cannot be written (a full disk) stops the streams with one warning;
        training goes on, and the run's own files report what could not be written.
        """
        if self.stopped:
            return
        values = [
            Summary.Value(tag=name, simple_value=float(value))
            for name, value in record.items()
            if name != "step"
        ]
        try:
            stream = self.streams.get((variant, seed)) or self._open(variant, seed, record)
            stream.write(Summary(value=values), int(record["step"]))
        except OSError as error:
            self.stopped = True
            print(f"warning: TensorBoard streams stopped: {error}", file=sys.stderr)

    def finished(self, variant: int, seed: int) -> None:
        """Forget the seed's stream."""
        self.streams.pop((variant, seed), None)

    def _open(self, variant: int, seed: int, first: Mapping[str, float]) -> EventStream:
        """A new stream with the point's knobs as text and hparams (metrics: ``first``'s tags)."""
        from torch.utils.tensorboard.summary import hparams, text

        stream = EventStream(self.directory / self.labels[variant] / f"seed{seed}")
        knobs = {**self.context, **self.points[variant], "seed": seed}
        table = "\n".join(
            ["| knob | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in knobs.items())]
        )
        stream.write(text("knobs", table), 0)
        metrics = {name: 0.0 for name in first if name != "step"}
        for summary in hparams({k: hparam_value(v) for k, v in knobs.items()}, metrics):
            stream.write(summary, 0)
        self.streams[variant, seed] = stream
        return stream
