"""How a linear learner's seed ends: its value error judged against where it started.

On a task whose rewards are all zero (Baird's counterexample, w -> 2w,
Tsitsiklis and Van Roy's) every linear learner is linear in w0: scaling w0 by
c > 0 scales every later weight vector and value by c. A fixed threshold on
max |v| then labels a run by the scale of w0, not by what the learner does.
So errors are measured relative to their initial value (and, where rewards
are non-zero, to the largest realisable return), weights relative to their
initial scale:

    e_t   = max over non-terminal rows of |v_t(s) - v_pi(s)|   (q and q* for control)
    V     = the largest realisable return where some reward is non-zero, else 0:
            R_max / (1 - gamma), or R_max times the longest expected episode if gamma = 1
    e_ref = max(e_0, V)
    soft-diverged:  e_T > k e_ref,
                    or e_T > e_ref and e_T exp(b T) > k e_ref, b the least-squares slope
                    of ln e_t over the second half of the logged steps (at its current
                    rate the error passes k e_ref within another run as long),
                    or max |v_T| > B, B = soft_divergence_threshold, else V where V > 0;
    hard-diverged:  a weight (or secondary weight) non-finite or beyond F max(max |w0|, V),
                    at the step it happens;
    converged:      neither,

with k = ``diagnostics.divergence_factor`` and F = ``diagnostics.hard_divergence_factor``.
With zero rewards V = 0, so every test is invariant to the scale of w0; e_0 = 0
(w0 already gives v_pi) stays converged unless the error grows from 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from rlharness.agents.linear.types import FloatArray, LearnerTrace
from rlharness.outcomes import Outcome
from rlharness.spec import DiagnosticsSpec
from rlharness_envs.model import ExactModel


class DivergenceCriterion(NamedTuple):
    """The parameters of the criterion for one grid point (see the module docstring).

    ``return_bound`` is V (0 where every reward is zero); ``value_bound`` is B
    (None where no absolute bound applies); ``control`` says whether values are
    action values, compared with q* rather than v_pi.
    """

    divergence_factor: float
    hard_divergence_factor: float
    return_bound: float
    value_bound: float | None
    control: bool

    def hard_limits(self, w0: FloatArray) -> FloatArray:
        """The bound on |w| of each seed (rows of ``w0``): F max(max |w0|, V)."""
        return self.hard_divergence_factor * np.maximum(np.abs(w0).max(axis=1), self.return_bound)

    def statement(self) -> str:
        """The criterion in plain words, with its parameters."""
        k, bound = f"{self.divergence_factor:g}", self.return_bound
        value, truth = ("q(s, a)", "q*(s, a)") if self.control else ("v(s)", "v_pi(s)")
        reference = (
            f"max(e_0, {bound:g}), the larger of the error at step 0 and the largest "
            "realisable return"
            if bound > 0
            else "e_0, the error at step 0 (every reward is 0, so no return bound applies)"
        )
        text = (
            f"soft-diverged: the value error e = max |{value} - {truth}| over non-terminal "
            f"states ends above {k} x e_ref, or ends above e_ref while growing fast enough "
            "(a log-linear fit over the second half of the logged steps) to pass "
            f"{k} x e_ref within another run as long; e_ref = {reference}"
        )
        if self.value_bound is not None:
            text += f"; or max |{value}| ends above {self.value_bound:g}"
        scale = f"max(max |w0|, {bound:g})" if bound > 0 else "max |w0|"
        return (
            f"{text}. hard-diverged: a weight non-finite or beyond "
            f"{self.hard_divergence_factor:g} x the seed's {scale}; the seed stops at that "
            "step. converged: neither."
        )

    def record(self) -> dict[str, Any]:
        """The criterion as a run's summary records it: parameters and statement."""
        return {
            "error": "max over non-terminal rows of |v - v_pi| (|q - q*| for control)",
            "divergence_factor": self.divergence_factor,
            "hard_divergence_factor": self.hard_divergence_factor,
            "return_bound": self.return_bound,
            "soft_divergence_threshold": self.value_bound,
            "statement": self.statement(),
        }


def divergence_criterion(
    model: ExactModel, diagnostics: DiagnosticsSpec, control: bool
) -> DivergenceCriterion:
    """The criterion of a grid point: the spec's factors and bound and the model's rewards.

    Raises `numpy.linalg.LinAlgError` where rewards are non-zero and the model
    has no finite largest return (an episode that never ends).
    """
    return_bound = model.max_return(reward_floor=0.0) if model.reward_bound > 0 else 0.0
    value_bound = diagnostics.soft_divergence_threshold
    if value_bound is None and return_bound > 0:
        value_bound = return_bound
    return DivergenceCriterion(
        divergence_factor=diagnostics.divergence_factor,
        hard_divergence_factor=diagnostics.hard_divergence_factor,
        return_bound=return_bound,
        value_bound=value_bound,
        control=control,
    )


def classify_seeds(
    metrics: pd.DataFrame, trace: LearnerTrace, seeds: list[int], criterion: DivergenceCriterion
) -> pd.DataFrame:
    """The outcome of each seed, with the steps at which it diverged.

    ``hard_divergence_step`` is the step its weights crossed their limit;
    ``soft_divergence_step`` the first logged step beyond k e_ref or B (a seed
    labelled soft-diverged by its growth alone has none).
    """
    k = criterion.divergence_factor
    records = []
    for index, seed in enumerate(seeds):
        history = metrics[metrics["seed"] == seed]
        steps = history["step"].to_numpy()
        error = history["max_abs_error"].to_numpy()
        values = history["max_abs_value"].to_numpy()
        second_half = slice((len(history) - 1) // 2, None)
        growth = log_slope(steps[second_half], error[second_half])
        reference = max(float(error[0]), criterion.return_bound)
        beyond = error > k * reference
        if criterion.value_bound is not None:
            beyond |= values > criterion.value_bound
        hard_step = int(trace.hard_divergence_step[index])
        if hard_step >= 0:
            outcome = Outcome.HARD_DIVERGED
        elif beyond[-1] or _growing_past(error[-1], reference, growth, int(steps[-1]), k):
            outcome = Outcome.SOFT_DIVERGED
        else:
            outcome = Outcome.CONVERGED
        final = history.iloc[-1]
        records.append(
            {
                "seed": seed,
                "outcome": str(outcome),
                "hard_divergence_step": hard_step if hard_step >= 0 else None,
                "soft_divergence_step": int(steps[beyond][0]) if beyond.any() else None,
                "last_logged_step": int(final["step"]),
                "final_max_abs_value": float(final["max_abs_value"]),
                "final_sqrt_ve": float(final["sqrt_ve"]),
                "final_sqrt_pbe": float(final["sqrt_pbe"]),
                "final_weight_norm": float(final["weight_norm"]),
                "weight_norm_growth_rate": log_slope(
                    steps[second_half], history["weight_norm"].to_numpy()[second_half]
                ),
                "initial_max_abs_error": float(error[0]),
                "final_max_abs_error": float(error[-1]),
                "error_growth_rate": growth,
            }
        )
    return pd.DataFrame.from_records(records)


def _growing_past(error: float, reference: float, growth: float, steps: int, k: float) -> bool:
    """Whether an error above its reference grows fast enough to pass k x reference within
    another ``steps`` steps: error exp(growth steps) > k reference, compared in logs."""
    if not error > reference or not growth > 0:
        return False
    return bool(np.log(error) + growth * steps > np.log(k * reference))


def log_slope(steps: np.ndarray, values: np.ndarray) -> float:
    """The least-squares slope per step of ln(values) against steps (NaN without two positive
    values at distinct steps): the exponential growth rate, negative when shrinking."""
    keep = np.isfinite(values) & (values > 0)
    x, y = steps[keep].astype(float), np.log(values[keep])
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan")
    x -= x.mean()
    return float(x @ (y - y.mean()) / (x @ x))
