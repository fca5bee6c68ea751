"""The hypotheses of van Hasselt et al. (2018), "Deep Reinforcement Learning and the Deadly
Triad", tested on the outcomes of a grid over their knobs.

H1 is about unbounded (hard) divergence; its statistic is the hard-divergence
rate averaged over every cell (grid point) of the design. H2 to H6 compare two
levels of one knob by their matched-cell effect on soft divergence (a seed
whose max |Q| went beyond R_max / (1 - gamma) at some point: soft-diverged,
recovered or hard-diverged, the paper's measure): the mean over strata (every
combination of the other knobs, the environment included) of ``rate(treatment
cell) - rate(control cell)``, with a 95% stratified bootstrap interval that
resamples seeds within each cell (`rlharness.analysis.cells`). No interval
pools seeds of different cells.

Levels are read from the data: H4 compares the longest n with the shortest
(and, as secondary rows, each n between), H5 the largest width with the
smallest, H6 the largest priority exponent with the smallest (0: uniform).

Soft divergence is the paper's measure, but where it is rare the rates cannot
tell the knobs apart. Each primary contrast is therefore also measured on two
continuous quantities (`MEASURES`), with the same matched-cell effect and
interval: the peak max |Q| on the probe states (log10, so the effect is a
ratio: -0.3 halves the peak), and the calibrated over-estimation of van
Hasselt et al. (2016), the greedy policy's predicted Q minus the discounted
Monte Carlo return it obtains (`rlharness.agents.deep.overestimation`).

Verdict rule, checked in this order:

1. *inconclusive at this scale* if some cell compared has fewer than
   `MIN_SEEDS` seeds: with fewer, a cell whose seeds agree adds no width to a
   percentile bootstrap interval, which then understates the uncertainty;
2. *supported* if the interval lies entirely on the hypothesised side of 0
   (below 0 for "reduces", above for "increases");
3. *not supported* if it lies entirely on the opposite side (the effect goes
   the other way);
4. for soft divergence, *inconclusive at this scale* if the hypothesis says
   the treatment reduces it and the control's rate is below `MARGIN`: a
   reduction of a size that matters cannot happen (a floor effect);
5. for soft divergence, *not supported* if the interval lies entirely within
   +-`MARGIN` (0.10, ten percentage points): no effect of a size that matters;
6. otherwise *inconclusive at this scale*: the interval is too wide to tell
   (the continuous measures have no margin: their intervals either exclude 0
   or do not).

H1 is *supported* if the upper bound of its interval is below
`HARD_RATE_BOUND` (0.05), *not supported* if its lower bound is above it,
else inconclusive; the seed rule applies first. A comparison whose levels the
grid lacks (one width only, no inverse_double_q) is *not testable*, with the
reason. The paper's numbers appear only where they are certain: H3's soft
divergence of 0.33 for inverse double Q against 0.61 for Q-learning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from rlharness.analysis.cells import CellEstimate, CellSample, levels
from rlharness.analysis.statistics import CONFIDENCE, DEFAULT_REPS
from rlharness.errors import ResultsError

ENV = "env.id"
TARGET = "agent.bootstrap_target"
N_STEP = "agent.n_step"
WIDTH = "agent.network.width"
ALPHA = "agent.prioritized_replay.alpha"
STUDY_KNOBS = (ENV, TARGET, N_STEP, WIDTH, ALPHA)
"""The knobs of the study's design; each of their combinations is one cell."""
TARGETS = ("q_learning", "target_q", "inverse_double_q", "double_q")
"""The bootstrap targets in the paper's order: online, target network, and the two double forms."""

MARGIN = 0.10
"""An effect on the soft-divergence rate smaller than this either way does not matter."""
PEAK_COLUMN = "log10_peak_probe_max_abs_q"
"""log10 of each seed's peak max |Q| on the probe states, derived from the outcomes."""


@dataclass(frozen=True)
class Measure:
    """A per-seed quantity the hypotheses are tested on."""

    metric: str
    """A `rlharness.analysis.cells.metric_values` name."""
    name: str
    margin: float | None
    """Effects within +-margin do not matter (None: any effect that excludes 0 does)."""


SOFT_DIVERGENCE = Measure("diverged", "soft divergence", MARGIN)
MEASURES = (
    SOFT_DIVERGENCE,
    Measure(PEAK_COLUMN, "log10 peak max |Q|", None),
    Measure("final_overestimation", "over-estimation (Q - MC return)", None),
)
"""Soft divergence (the paper's measure, every contrast), then the continuous measures
(primary contrasts only)."""
HARD_RATE_BOUND = 0.05
"""H1: unbounded divergence is rare when its cell-averaged rate is below this."""
MIN_SEEDS = 5
"""Fewer seeds in a cell compared than this make any verdict inconclusive."""


class Verdict(StrEnum):
    """What an interval says about a hypothesis."""

    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    INCONCLUSIVE = "inconclusive at this scale"
    NOT_TESTABLE = "not testable"


@dataclass(frozen=True)
class Hypothesis:
    """One of the paper's hypotheses: a knob whose level changes the soft-divergence rate."""

    id: str
    statement: str
    knob: str
    direction: int
    """-1: the treatment level diverges less than the control; +1: more."""
    figure: str = ""
    """The paper's figure that shows it, where certain."""


@dataclass(frozen=True)
class Contrast:
    """Two levels of a hypothesis's knob, compared cell by cell."""

    role: str
    """``primary`` (the hypothesis's test) or ``secondary``."""
    treatment: str
    control: str
    paper: str = ""
    """The paper's rates of treatment and control, where certain."""


H1_STATEMENT = "Unbounded (hard) divergence is rare"
HYPOTHESES = (
    Hypothesis(
        "H2",
        "Bootstrapping on a separate (target) network reduces soft divergence",
        TARGET,
        -1,
        "Fig. 2",
    ),
    Hypothesis(
        "H3", "Correcting for over-estimation reduces soft divergence", TARGET, -1, "Fig. 2"
    ),
    Hypothesis("H4", "Longer multi-step returns reduce soft divergence", N_STEP, -1, "Fig. 2"),
    Hypothesis("H5", "Larger networks reduce soft divergence", WIDTH, -1),
    Hypothesis("H6", "Stronger prioritisation of replay increases soft divergence", ALPHA, +1),
)
NAMED_CONTRASTS = {
    "H2": (
        Contrast("primary", "target_q", "q_learning"),
        Contrast("secondary", "double_q", "inverse_double_q"),
    ),
    "H3": (
        Contrast("primary", "inverse_double_q", "q_learning", paper="0.33 vs 0.61"),
        Contrast("secondary", "double_q", "target_q"),
    ),
}
"""Contrasts of named bootstrap targets; the other hypotheses' come from the data's levels."""

COLUMNS = (
    "id",
    "role",
    "statement",
    "comparison",
    "metric",
    "treatment_rate",
    "control_rate",
    "estimate",
    "ci_low",
    "ci_high",
    "hypothesised",
    "paper",
    "paper_figure",
    "strata",
    "seeds_per_cell",
    "verdict",
    "reason",
)


def hypotheses(
    outcomes: pd.DataFrame,
    knobs: Sequence[str] = STUDY_KNOBS,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per test of H1 to H6 on ``outcomes`` (one row per grid point x seed with the
    ``knobs`` as columns and ``outcome``): the estimate, its interval, the verdict and why.

    ``knobs`` must hold `STUDY_KNOBS` and every other field the grid varies, so
    that each cell is one grid point. Raises `ResultsError` naming a missing knob.
    """
    unnamed = [knob for knob in STUDY_KNOBS if knob not in knobs]
    if unnamed:
        raise ResultsError(f"the knobs {list(knobs)} lack {', '.join(unnamed)}")
    absent = [knob for knob in knobs if knob not in outcomes.columns]
    if absent:
        raise ResultsError(
            f"these outcomes have no column {', '.join(absent)}: the hypotheses need a DQN "
            f"grid over {', '.join(STUDY_KNOBS)}"
        )
    hard = CellSample(outcomes, knobs, "hard_diverged", reps, seed, confidence)
    measured = with_log_peak(outcomes)
    samples = {
        measure: CellSample(measured, knobs, measure.metric, reps, seed, confidence)
        for measure in MEASURES
        if measure is SOFT_DIVERGENCE or measure.metric in measured.columns
    }
    rows = [_h1_row(hard.rate(), confidence)]
    for hypothesis in HYPOTHESES:
        try:
            tests = contrasts(outcomes, hypothesis)
        except ResultsError as error:
            rows.append(_header(hypothesis) | _untestable(error))
            continue
        for measure, sample in samples.items():
            for contrast in tests:
                if measure is SOFT_DIVERGENCE or contrast.role == "primary":
                    rows.append(_effect_row(sample, hypothesis, contrast, measure, confidence))
    table = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    table[["paper", "paper_figure"]] = table[["paper", "paper_figure"]].fillna("")
    return table.astype({"strata": "Int64"})


def with_log_peak(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The outcomes with `PEAK_COLUMN` added where they have ``peak_probe_max_abs_q``."""
    if "peak_probe_max_abs_q" not in outcomes.columns:
        return outcomes
    peak = pd.to_numeric(outcomes["peak_probe_max_abs_q"], errors="coerce").astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logged = np.log10(peak.where(peak > 0))
    return outcomes.assign(**{PEAK_COLUMN: logged})


def contrasts(outcomes: pd.DataFrame, hypothesis: Hypothesis) -> list[Contrast]:
    """The comparisons that test ``hypothesis``: named targets, or the extreme levels of a
    numeric knob (largest against smallest) and each level between against the smallest.

    Raises `ResultsError` when the knob has one level: there is nothing to compare.
    """
    if hypothesis.id in NAMED_CONTRASTS:
        return list(NAMED_CONTRASTS[hypothesis.id])
    ordered = levels(outcomes, hypothesis.knob)
    if len(ordered) < 2:
        raise ResultsError(
            f"{hypothesis.knob} has one level ({', '.join(ordered)}) in these outcomes: "
            "nothing to compare"
        )
    smallest, largest = ordered[0], ordered[-1]
    middle = [Contrast("secondary", level, smallest) for level in ordered[1:-1]]
    return [Contrast("primary", largest, smallest), *middle]


def effect_verdict(
    estimate: CellEstimate,
    direction: int,
    margin: float | None = MARGIN,
    min_seeds: int = MIN_SEEDS,
    confidence: float = CONFIDENCE,
) -> tuple[Verdict, str]:
    """The verdict on an effect hypothesised to be below 0 (``direction`` -1) or above (+1),
    and its reason, by the module's rule; ``margin`` None for a measure without one (no
    floor, no region of no effect)."""
    interval = _interval(estimate, confidence)
    few = _few_seeds(estimate, min_seeds)
    if few:
        return Verdict.INCONCLUSIVE, few
    hypothesised = "below" if direction < 0 else "above"
    opposite = "above" if direction < 0 else "below"
    if _beyond_zero(estimate, direction):
        return Verdict.SUPPORTED, f"{interval} lies {hypothesised} 0"
    if _beyond_zero(estimate, -direction):
        return Verdict.NOT_SUPPORTED, f"{interval} lies {opposite} 0: the opposite effect"
    if margin is None:
        return Verdict.INCONCLUSIVE, (
            f"{interval} holds 0; {estimate.strata} strata of {_seeds(estimate)} seeds per cell"
        )
    if direction < 0 and estimate.control < margin:
        return Verdict.INCONCLUSIVE, (
            f"the control diverges at {estimate.control:.2f}, below {margin:.2f}: too rarely "
            f"for a reduction that matters to show ({interval})"
        )
    if -margin <= estimate.low and estimate.high <= margin:
        return (
            Verdict.NOT_SUPPORTED,
            f"{interval} lies within +-{margin:.2f}: no effect of {margin:.2f} or more either way",
        )
    return Verdict.INCONCLUSIVE, (
        f"{interval} (width {estimate.high - estimate.low:.2f}) holds 0 and effects beyond "
        f"+-{margin:.2f}; {estimate.strata} strata of {_seeds(estimate)} seeds per cell"
    )


def rate_verdict(
    estimate: CellEstimate,
    bound: float = HARD_RATE_BOUND,
    min_seeds: int = MIN_SEEDS,
    confidence: float = CONFIDENCE,
) -> tuple[Verdict, str]:
    """The verdict on a rate hypothesised to be below ``bound`` (H1), and its reason."""
    interval = _interval(estimate, confidence)
    few = _few_seeds(estimate, min_seeds)
    if few:
        return Verdict.INCONCLUSIVE, few
    if estimate.high < bound:
        return Verdict.SUPPORTED, f"{interval} lies below {bound:.2f}"
    if estimate.low > bound:
        return Verdict.NOT_SUPPORTED, f"{interval} lies above {bound:.2f}"
    return Verdict.INCONCLUSIVE, f"{interval} holds {bound:.2f}"


def _h1_row(estimate: CellEstimate, confidence: float) -> dict[str, object]:
    verdict, reason = rate_verdict(estimate, confidence=confidence)
    return {
        "id": "H1",
        "role": "primary",
        "statement": H1_STATEMENT,
        "comparison": f"all {estimate.strata} cells",
        "metric": "hard divergence",
        "estimate": estimate.value,
        "ci_low": estimate.low,
        "ci_high": estimate.high,
        "hypothesised": f"< {HARD_RATE_BOUND:.2f}",
        "strata": estimate.strata,
        "seeds_per_cell": _seeds(estimate),
        "verdict": str(verdict),
        "reason": reason,
    }


def _header(
    hypothesis: Hypothesis, contrast: Contrast | None = None, measure: Measure = SOFT_DIVERGENCE
) -> dict[str, object]:
    """The columns of a hypothesis's row that do not depend on the outcomes."""
    short = hypothesis.knob.split(".")[-1]
    if contrast is None:
        comparison = f"{short}: no two levels"
    elif hypothesis.id in NAMED_CONTRASTS:
        comparison = f"{contrast.treatment} vs {contrast.control}"
    else:
        comparison = f"{short} {contrast.treatment} vs {contrast.control}"
    side, change = ("<", "less") if hypothesis.direction < 0 else (">", "more")
    return {
        "id": hypothesis.id,
        "role": "primary" if contrast is None else contrast.role,
        "statement": hypothesis.statement,
        "comparison": comparison,
        "metric": measure.name,
        "hypothesised": f"{side} 0 (the treatment diverges {change})",
        "paper": "" if contrast is None or measure is not SOFT_DIVERGENCE else contrast.paper,
        "paper_figure": hypothesis.figure if measure is SOFT_DIVERGENCE else "",
    }


def _untestable(error: ResultsError) -> dict[str, object]:
    return {"verdict": str(Verdict.NOT_TESTABLE), "reason": str(error)}


def _effect_row(
    sample: CellSample,
    hypothesis: Hypothesis,
    contrast: Contrast,
    measure: Measure,
    confidence: float,
) -> dict[str, object]:
    header = _header(hypothesis, contrast, measure)
    try:
        effect = sample.effect(hypothesis.knob, contrast.treatment, contrast.control)
    except ResultsError as error:
        return header | _untestable(error)
    verdict, reason = effect_verdict(
        effect, hypothesis.direction, measure.margin, confidence=confidence
    )
    return header | {
        "treatment_rate": effect.treatment,
        "control_rate": effect.control,
        "estimate": effect.value,
        "ci_low": effect.low,
        "ci_high": effect.high,
        "strata": effect.strata,
        "seeds_per_cell": _seeds(effect),
        "verdict": str(verdict),
        "reason": reason,
    }


def _beyond_zero(estimate: CellEstimate, direction: int) -> bool:
    """Whether the interval lies entirely below 0 (``direction`` < 0) or entirely above it."""
    return estimate.high < 0.0 if direction < 0 else estimate.low > 0.0


def _few_seeds(estimate: CellEstimate, min_seeds: int) -> str:
    """Why the seeds are too few for a verdict, or empty when they are enough."""
    if estimate.min_seeds >= min_seeds:
        return ""
    return (
        f"{_seeds(estimate)} seeds per cell, fewer than the {min_seeds} a verdict needs "
        f"(interval [{estimate.low:+.2f}, {estimate.high:+.2f}])"
    )


def _interval(estimate: CellEstimate, confidence: float) -> str:
    return f"the {confidence:.0%} CI [{estimate.low:+.2f}, {estimate.high:+.2f}]"


def _seeds(estimate: CellEstimate) -> str:
    if estimate.min_seeds == estimate.max_seeds:
        return str(estimate.min_seeds)
    return f"{estimate.min_seeds}-{estimate.max_seeds}"
