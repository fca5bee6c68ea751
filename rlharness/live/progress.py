"""Progress in logged steps: a bar that advances within a seed, not only when it ends."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def logs_per_seed(steps: int, log_every: int) -> int:
    """How many records a seed logs: step 0, every ``log_every`` steps, and the last step."""
    return steps // log_every + 1 + (steps % log_every != 0)


class LoggedSteps:
    """An `rlharness.live.Observer` counting records against the total the run will log.

    A seed counts at most its expected records (a fleet adds one where a member's
    loss turns non-finite) and counts them all once it ends (a diverged seed stops
    early), so the count reaches the total exactly when every seed has ended.
    """

    def __init__(
        self,
        expected: Mapping[int, tuple[int, int]],
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        """``expected``: per grid point, (seeds, records per seed); ``on_progress(done, total)``
        is called at each change."""
        self.expected = {variant: per_seed for variant, (_, per_seed) in expected.items()}
        self.total = sum(seeds * per_seed for seeds, per_seed in expected.values())
        self.counted: dict[tuple[int, int], int] = {}
        self.done = 0
        self.on_progress = on_progress

    def record(self, variant: int, seed: int, record: Mapping[str, float]) -> None:
        """Count one record of the seed, up to its expected number."""
        self._count(variant, seed, 1)

    def finished(self, variant: int, seed: int) -> None:
        """Count the seed's records that it will not log."""
        self._count(variant, seed, self.expected[variant])

    def _count(self, variant: int, seed: int, records: int) -> None:
        counted = self.counted.get((variant, seed), 0)
        added = min(records, self.expected[variant] - counted)
        if added <= 0:
            return
        self.counted[variant, seed] = counted + added
        self.done += added
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
