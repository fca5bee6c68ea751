"""Live observers: each logged record of a run, as it is logged, to whoever watches.

The backends call one `RecordSink` per seed at each log (the fleet's DQN and
PQN, sb3 and rllib as they train; the linear learners, which compute whole
trajectories in one vectorised call, once each batch of seeds finishes).
`run_trials` binds the sinks to an `Observer`, which receives the grid point
(its variant), the seed and the record, then `finished` when the seed ends.
Observers only watch: the metrics written at the end do not depend on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol

TENSORBOARD_DIR = "tensorboard"
"""Where a run's TensorBoard event streams live, inside its (staging, then final) directory."""
RecordSink = Callable[[Mapping[str, float]], None]
"""One seed's records, each ``step`` plus the metrics logged at that step."""


class Observer(Protocol):
    """Receives each record of each grid point x seed as it is logged."""

    def record(self, variant: int, seed: int, record: Mapping[str, float]) -> None:
        """One logged record of grid point ``variant``, seed ``seed``."""

    def finished(self, variant: int, seed: int) -> None:
        """Seed ``seed`` of grid point ``variant`` logs nothing more."""


class Observers:
    """Several observers as one (none: an observer that does nothing)."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def record(self, variant: int, seed: int, record: Mapping[str, float]) -> None:
        """Pass the record to each observer."""
        for observer in self.observers:
            observer.record(variant, seed, record)

    def finished(self, variant: int, seed: int) -> None:
        """Tell each observer the seed has ended."""
        for observer in self.observers:
            observer.finished(variant, seed)

    def close(self) -> None:
        """Close the observers that hold files or connections."""
        for observer in self.observers:
            close = getattr(observer, "close", None)
            if close is not None:
                close()


class PointObserver:
    """An observer bound to one grid point: what a backend sees of it."""

    def __init__(self, observer: Observer, variant: int) -> None:
        self.observer, self.variant = observer, variant

    def sink(self, seed: int) -> RecordSink:
        """Where seed ``seed`` of this grid point sends its records."""
        return partial(self.observer.record, self.variant, seed)

    def finished(self, seed: int) -> None:
        """Seed ``seed`` of this grid point has ended."""
        self.observer.finished(self.variant, seed)


NOBODY = Observers()
"""An observer that does nothing."""
SILENT = PointObserver(NOBODY, 0)
"""A grid point nobody watches."""
