"""The one vocabulary of how a seed ends, shared by every agent family and the analysis.

Linear learners end `CONVERGED`, `SOFT_DIVERGED` or `HARD_DIVERGED`, judged
relative to where they started (`rlharness.agents.linear.criterion`): a seed
soft-diverges when its value error ends more than a factor above its initial
value (at least the largest realisable return, where rewards are non-zero) or
is growing fast enough to get there, or its values end beyond an absolute
bound where one applies; it hard-diverges when its weights become non-finite
or explode relative to w0, which ends it at that step. Deep agents
end `STABLE`, `SOFT_DIVERGED`, `RECOVERED` or `HARD_DIVERGED` (van Hasselt et
al. 2018: a seed soft-diverges when its estimates exceed the largest
realisable return; it recovers when they come back within it by the end; it
hard-diverges when values become non-finite or explode, which ends it at that
step). `DIVERGED` and `STABLE` are the two groupings every count uses.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How a seed ended."""

    CONVERGED = "converged"
    STABLE = "stable"
    SOFT_DIVERGED = "soft-diverged"
    RECOVERED = "soft-diverged-then-recovered"
    HARD_DIVERGED = "hard-diverged"


STABLE: tuple[str, ...] = (Outcome.CONVERGED, Outcome.STABLE)
"""Outcomes that never met their family's divergence criterion (a converged linear seed may have
passed it before the end)."""

DIVERGED: tuple[str, ...] = (Outcome.SOFT_DIVERGED, Outcome.RECOVERED, Outcome.HARD_DIVERGED)
"""Outcomes that met their family's divergence criterion (a deep seed: at some point)."""
