"""The one vocabulary of how a seed ends, shared by every agent family and the analysis.

Linear learners end `CONVERGED`, `SOFT_DIVERGED` or `HARD_DIVERGED`; deep
agents end `STABLE`, `SOFT_DIVERGED`, `RECOVERED` or `HARD_DIVERGED`
(van Hasselt et al. 2018: a seed soft-diverges when its estimates exceed the
largest realisable return; it recovers when they come back within it by the
end; it hard-diverges when values become non-finite or explode, which ends it
at that step). `DIVERGED` and `STABLE` are the two groupings every count uses.
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
"""Outcomes whose estimates stayed within the soft bound throughout."""

DIVERGED: tuple[str, ...] = (Outcome.SOFT_DIVERGED, Outcome.RECOVERED, Outcome.HARD_DIVERGED)
"""Outcomes whose estimates went beyond the soft bound at some point."""
