"""Sutton & Barto (2nd ed.), chapter 11: the book's statements beside what the runs measured.

`reproductions` finds the latest run of each chapter-11 experiment in a
catalog and checks it against the book: one row per statement, with the
section or figure it comes from, the number measured here, and whether the
two agree. Statements are paraphrased from the book; the numbers they name
(step sizes, initial weights, growth factors) are the book's, and the turning
points of Figure 11.6, which the book only draws, are those of the book's
reference code (Zhang, reinforcement-learning-an-introduction,
chapter11/counterexample.py). Only the experiments present are checked. The
matching figures are drawn by `rlharness.analysis.chapter11_figures`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rlharness.catalog import Catalog
from rlharness.outcomes import DIVERGED

COLUMNS = ("experiment", "run", "source", "book", "measured", "value", "agrees")
FACTOR_RTOL = 1e-6
"""Relative tolerance between a measured and an analytic growth factor (both are exact)."""
TDC_PBE_LIMIT = {"expected": 0.01, "sampled": 0.2}
"""sqrt(PBE) after 1000 steps counted as 'fallen to zero' (from 8.22 at w0)."""
TDC_VE_TOLERANCE = 0.25
"""How far sqrt(VE) may be from 2 to count as 'almost 2'."""
ETD_PEAK, ETD_PEAK_SWEEP = 10.656, 26
"""Figure 11.6: sqrt(VE) rises from sqrt(198/7) = 5.32 to this peak at this sweep."""
ETD_PEAK_RTOL = 0.01
"""Relative tolerance of the measured peak of sqrt(VE) (a log between sweeps lowers it)."""
ETD_TURNS = {"w8 highest": 22, "w1..w6 highest": 48, "w7 lowest": 71, "w8 lowest": 102}
"""Figure 11.6: the sweep at which each weight component reverses."""
ETD_W8_NEGATIVE_SWEEP = 52
"""Figure 11.6: the first sweep at which w8 is negative."""
ETD_BELOW_ONE_SWEEP = 99
"""Figure 11.6: the first sweep at which sqrt(VE) is below 1."""
ETD_LOG_INTERVAL = 5
"""The coarsest log interval (sweeps) at which Figure 11.6's turning points are placed."""
ETD_SETTLED = 1e-6
"""sqrt(VE) counted as 'gone to zero' (Figure 11.6's trajectory is at 5e-13 after 1000 sweeps)."""


@dataclass(frozen=True)
class RunData:
    """One run's tables, as a check reads them."""

    key: str
    config: dict[str, Any]
    outcomes: pd.DataFrame
    metrics: pd.DataFrame
    settings: dict[int, dict[str, Any]]

    def variant_value(self, variant: int, path: str) -> Any:
        """A setting of a grid point: its grid value, else the experiment file's value."""
        if path in self.settings[variant]:
            return self.settings[variant][path]
        value: Any = self.config
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def env_argument(self, variant: int, name: str) -> float:
        """An environment argument of a grid point, falling back to the environment's default."""
        value = self.variant_value(variant, f"env.kwargs.{name}")
        if value is None:
            from rlharness.environments import env_creator

            creator = env_creator(self.config["env"]["id"])
            value = inspect.signature(creator).parameters[name].default
        return float(value)

    def final(self, variant: int) -> pd.Series:
        """The median over seeds of each metric at the last logged step of a grid point."""
        rows = self.metrics[self.metrics["variant"] == variant]
        return rows[rows["step"] == rows["step"].max()].median(numeric_only=True)

    def diverged(self, *variants: int) -> tuple[int, int]:
        """Seeds of the grid points that diverged, and all their seeds."""
        outcome = self.outcomes.loc[self.outcomes["variant"].isin(variants), "outcome"]
        return int(outcome.isin(DIVERGED).sum()), len(outcome)


@dataclass(frozen=True)
class Reproduction:
    """One statement of the book checked against one run."""

    source: str
    book: str
    measured: str
    value: float
    agrees: bool


def reproductions(catalog: Catalog) -> pd.DataFrame:
    """One row per checked statement, for the chapter-11 experiments present in ``catalog``.

    Columns: ``experiment``, ``run`` (the latest run's key), ``source`` (section or
    figure of Sutton & Barto, 2nd ed.), ``book`` (the statement), ``measured`` (in
    words), ``value`` (the measured number) and ``agrees``.
    """
    rows = []
    for experiment, check in CHECKS.items():
        key = catalog.latest_run(experiment)
        if key is None:
            continue
        for found in check(run_data(catalog, key)):
            rows.append({"experiment": experiment, "run": key, **found.__dict__})
    return pd.DataFrame.from_records(rows, columns=list(COLUMNS))


def run_data(catalog: Catalog, key: str) -> RunData:
    """The tables of run ``key`` that the checks and figures read."""
    entry = catalog.entries[key]
    settings = {v["variant"]: v.get("settings") or {} for v in entry.summary["variants"]}
    return RunData(key, entry.config, catalog.outcomes([key]), catalog.metrics([key]), settings)


def _diverged_text(diverged: int, seeds: int) -> str:
    """Seeds diverged by the run's own criterion (for linear learners: relative to the initial
    value error, `rlharness.agents.linear.criterion`)."""
    return f"{diverged}/{seeds} seeds diverged"


def _growth_per_step(data: RunData, variant: int, period: int = 1) -> tuple[float, int]:
    """(|w_last| / |w_first|) ** (1 / steps) of w_0 over logged steps a multiple of ``period``
    apart, and the number of steps it spans."""
    rows = data.metrics[(data.metrics["variant"] == variant) & (data.metrics["seed"] == 0)]
    rows = rows.sort_values("step")
    first = rows.iloc[0]
    spaced = rows[(rows["step"] - first["step"]) % period == 0]
    last = spaced.iloc[-1]
    span = int(last["step"] - first["step"])
    return float(abs(last["w_0"] / first["w_0"]) ** (1 / span)), span


def w_to_2w_factor(alpha: float, gamma: float) -> float:
    """Section 11.2: the factor one off-policy TD(0) update multiplies w by in w -> 2w."""
    return 1 + alpha * (2 * gamma - 1)


def tsitsiklis_van_roy_factor(epsilon: float, gamma: float) -> float:
    """Example 11.1: the factor one least-squares DP iteration multiplies w by."""
    return (6 - 4 * epsilon) * gamma / 5


def _close(measured: float, analytic: float) -> bool:
    return bool(abs(measured - analytic) <= FACTOR_RTOL * abs(analytic))


def check_baird_td_dp(data: RunData) -> list[Reproduction]:
    """Figure 11.2: semi-gradient TD(0) and DP on Baird's counterexample diverge."""
    found = []
    for variant in sorted(data.settings):
        name = data.variant_value(variant, "agent.name")
        diverged, seeds = data.diverged(variant)
        final = data.final(variant)
        rows = data.metrics[data.metrics["variant"] == variant]
        initial = float(rows.loc[rows["step"] == rows["step"].min(), "max_abs_value"].median())
        steps = int(data.metrics["step"].max())
        rates = data.outcomes.loc[data.outcomes["variant"] == variant, "weight_norm_growth_rate"]
        growing = bool((rates > 0).all())
        # v_pi = 0 on Baird, so max|v| is the value error the divergence criterion judges
        measured = (
            f"{_diverged_text(diverged, seeds)}; max|v| after {steps} steps "
            f"{final['max_abs_value']:.4g} (median), {final['max_abs_value'] / initial:.3g} "
            f"times its {initial:.4g} at the start"
        )
        if name == "semi_gradient_dp":
            upper = [final[f"w_{j}"] for j in range(6)]
            together = np.ptp(upper) <= 1e-9 * abs(upper[0])
            shape = bool(together and final["w_7"] > upper[0] > abs(final["w_6"]))
            found.append(
                Reproduction(
                    "Figure 11.2 (right), section 11.2, eq. 11.9",
                    "Semi-gradient DP, the expected update of off-policy TD(0) over every state "
                    "at once (eq. 11.9), alpha = 0.01, also diverges, deterministically: "
                    "w1..w6 move together, w8 rises above them and w7 stays small.",
                    f"{measured}; w1..w6 = {upper[0]:.4g}, w7 = {final['w_6']:.4g}, "
                    f"w8 = {final['w_7']:.4g}",
                    float(final["max_abs_value"]),
                    diverged == seeds and growing and shape,
                )
            )
        else:
            found.append(
                Reproduction(
                    "Figure 11.2 (left), section 11.2",
                    "Semi-gradient off-policy TD(0) on Baird's counterexample with alpha = 0.01 "
                    "from w = (1,1,1,1,1,1,10,1): the weights diverge to infinity.",
                    measured,
                    float(final["max_abs_value"]),
                    diverged == seeds and growing,
                )
            )
    return found


def check_baird_tdc(data: RunData) -> list[Reproduction]:
    """Figure 11.5: TDC drives sqrt(PBE) to zero while sqrt(VE) stays near 2."""
    found = []
    for variant in sorted(data.settings):
        update = data.variant_value(variant, "agent.update") or "sampled"
        final = data.final(variant)
        pbe, ve = float(final["sqrt_pbe"]), float(final["sqrt_ve"])
        side = "right" if update == "expected" else "left"
        found.append(
            Reproduction(
                f"Figure 11.5 ({side}), section 11.7",
                f"TDC ({update} updates, alpha = 0.005, beta = 0.05) on Baird's counterexample: "
                "the PBE falls to zero, but the VE remains almost 2 after 1000 steps.",
                f"median final sqrt(PBE) {pbe:.3g}, sqrt(VE) {ve:.3g}",
                pbe,
                pbe < TDC_PBE_LIMIT[update] and abs(ve - 2.0) < TDC_VE_TOLERANCE,
            )
        )
    return found


def check_baird_emphatic_td(data: RunData) -> list[Reproduction]:
    """Figure 11.6: expected emphatic TD's sqrt(VE) rises, peaks, the weights reverse, VE -> 0.

    Sweeps are measured at the logged steps, so each agrees within one log interval,
    which must be at most `ETD_LOG_INTERVAL` sweeps to tell the turning points apart.
    """
    found = []
    for variant in sorted(data.settings):
        rows = data.metrics[data.metrics["variant"] == variant]
        medians = rows.groupby("step").median(numeric_only=True)
        sweeps = medians.index.to_numpy()
        interval = int(np.diff(sweeps).max(initial=1))
        ve = medians["sqrt_ve"].to_numpy()
        peak = int(np.argmax(ve))
        turns = {
            "w8 highest": int(sweeps[np.argmax(medians["w_7"])]),
            "w1..w6 highest": int(sweeps[np.argmax(medians["w_0"])]),
            "w7 lowest": int(sweeps[np.argmin(medians["w_6"])]),
            "w8 lowest": int(sweeps[np.argmin(medians["w_7"])]),
        }
        w8_negative = _first_sweep(sweeps, medians["w_7"].to_numpy() < 0)
        below_one = _first_sweep(sweeps, ve < 1)
        final = float(ve[-1])
        logged = f" (logged every {interval} sweeps)"
        found += [
            Reproduction(
                "Figure 11.6, section 11.8",
                "One-step emphatic TD in expectation on Baird's counterexample, alpha = 0.03, "
                "from w = (1,1,1,1,1,1,10,1) and the emphasis at 0: sqrt(VE) first rises, "
                f"from sqrt(198/7) = 5.32 to a peak of {ETD_PEAK:.4g} at sweep {ETD_PEAK_SWEEP}.",
                f"sqrt(VE) {ve[0]:.3g} at the start, peak {ve[peak]:.4g} at sweep "
                f"{sweeps[peak]}{logged}",
                float(ve[peak]),
                bool(
                    len(ve) > 1
                    and ve[1] > ve[0]
                    and abs(ve[peak] - ETD_PEAK) <= ETD_PEAK_RTOL * ETD_PEAK
                    and _near(int(sweeps[peak]), ETD_PEAK_SWEEP, interval)
                ),
            ),
            Reproduction(
                "Figure 11.6, section 11.8",
                "The weights then reverse: "
                + ", ".join(f"{name} at sweep {sweep}" for name, sweep in ETD_TURNS.items())
                + f"; w8 turns negative at sweep {ETD_W8_NEGATIVE_SWEEP}.",
                ", ".join(f"{name} at sweep {sweep}" for name, sweep in turns.items())
                + f"; w8 negative from sweep {_sweep_text(w8_negative)}{logged}",
                float("nan") if w8_negative is None else float(w8_negative),
                all(_near(turns[name], sweep, interval) for name, sweep in ETD_TURNS.items())
                and _near(w8_negative, ETD_W8_NEGATIVE_SWEEP, interval),
            ),
            Reproduction(
                "Figure 11.6, section 11.8",
                f"sqrt(VE) then falls below 1 at sweep {ETD_BELOW_ONE_SWEEP} and goes to zero: "
                "the weights settle where every state's value is exact (v_pi = 0).",
                f"sqrt(VE) below 1 from sweep {_sweep_text(below_one)}, {final:.2g} after "
                f"{sweeps[-1]} sweeps{logged}",
                final,
                _near(below_one, ETD_BELOW_ONE_SWEEP, interval) and final < ETD_SETTLED,
            ),
        ]
    return found


def _first_sweep(sweeps: np.ndarray, condition: np.ndarray) -> int | None:
    """The first logged sweep at which ``condition`` holds, or None if it never does."""
    return int(sweeps[np.argmax(condition)]) if condition.any() else None


def _near(measured: int | None, book: int, interval: int) -> bool:
    """Whether a sweep measured at the logged steps is the book's, within one log interval."""
    return (
        measured is not None and interval <= ETD_LOG_INTERVAL and abs(measured - book) <= interval
    )


def _sweep_text(sweep: int | None) -> str:
    return "never" if sweep is None else str(sweep)


def check_two_state_w2w(data: RunData) -> list[Reproduction]:
    """Section 11.2: each w -> 2w update multiplies w by 1 + alpha (2 gamma - 1)."""
    found = []
    for variant in sorted(data.settings):
        gamma = data.env_argument(variant, "gamma")
        alpha = float(data.variant_value(variant, "agent.alpha"))
        analytic = w_to_2w_factor(alpha, gamma)
        per_step, span = _growth_per_step(data, variant, period=2)
        factor = per_step**2  # one w -> 2w update every two steps; the reset does not update
        found.append(
            Reproduction(
                "Section 11.2 (the w -> 2w example)",
                f"Off-policy TD(0) multiplies w by 1 + alpha (2 gamma - 1) = {analytic:.4g} on "
                f"each w -> 2w transition (alpha = {alpha:g}, gamma = {gamma:g}): unstable "
                "exactly when gamma > 0.5.",
                f"w grew by {factor:.10g} per update over {span // 2} updates",
                factor,
                _close(factor, analytic) and (factor > 1 + FACTOR_RTOL) == (gamma > 0.5),
            )
        )
    return found


def check_tsitsiklis_van_roy(data: RunData) -> list[Reproduction]:
    """Example 11.1: least-squares DP multiplies w by (6 - 4 epsilon) gamma / 5 per iteration."""
    found = []
    for variant in sorted(data.settings):
        if data.variant_value(variant, "triad.off_policy") is False:
            continue  # the book's statement is about the uniform (off-policy) weighting
        epsilon = data.env_argument(variant, "epsilon")
        gamma = data.env_argument(variant, "gamma")
        analytic = tsitsiklis_van_roy_factor(epsilon, gamma)
        factor, span = _growth_per_step(data, variant)
        found.append(
            Reproduction(
                "Example 11.1 (Tsitsiklis and Van Roy's counterexample), section 11.2",
                "Least-squares DP with the states weighted uniformly gives w_{k+1} = "
                f"(6 - 4 epsilon) gamma / 5 w_k = {analytic:.4g} w_k (epsilon = {epsilon:g}, "
                f"gamma = {gamma:g}), which diverges when gamma > 5 / (6 - 4 epsilon).",
                f"w grew by {factor:.10g} per iteration over {span} iterations",
                factor,
                _close(factor, analytic)
                and (factor > 1 + FACTOR_RTOL) == (gamma > 5 / (6 - 4 * epsilon)),
            )
        )
    return found


def _triad_on(settings: dict[str, Any]) -> tuple[bool, bool, bool]:
    """Which ingredients a triad-cube corner turns on: approximation, bootstrapping, off-policy."""
    return (
        settings["triad.features"] != "tabular",
        str(settings["triad.n_step"]) != "inf",
        bool(settings["triad.off_policy"]),
    )


def check_triad_cube_baird(data: RunData) -> list[Reproduction]:
    """Section 11.3: only the corner with all three ingredients diverges."""
    corners = {variant: _triad_on(point) for variant, point in data.settings.items()}
    deadly = [variant for variant, on in corners.items() if all(on)]
    safe = [variant for variant, on in corners.items() if not all(on)]
    k, n = data.diverged(*deadly)
    k_safe, n_safe = data.diverged(*safe)
    k_on, n_on = data.diverged(*(v for v, on in corners.items() if on == (True, True, False)))
    return [
        Reproduction(
            "Section 11.3 (the deadly triad)",
            "Instability arises when function approximation, bootstrapping and off-policy "
            "training are all combined; any two without the third avoid it.",
            f"all three on: {_diverged_text(k, n)}; the other {len(safe)} corners: "
            f"{_diverged_text(k_safe, n_safe)}",
            k / n if n else float("nan"),
            n > 0 and k == n and k_safe == 0,
        ),
        Reproduction(
            "Section 11.2 (after Figure 11.2)",
            "Altering only the distribution of DP updates in Baird's counterexample, from "
            "uniform to the on-policy distribution, makes it converge.",
            f"features and bootstrapping on, on-policy weighting: {_diverged_text(k_on, n_on)}",
            k_on / n_on if n_on else float("nan"),
            n_on > 0 and k_on == 0,
        ),
    ]


def check_random_walk_td(data: RunData) -> list[Reproduction]:
    """Section 9.4: on-policy linear TD converges (the contrast to chapter 11's divergence)."""
    diverged, seeds = data.diverged(*data.settings)
    first = data.metrics[data.metrics["step"] == data.metrics["step"].min()]
    initial = float(first["sqrt_ve"].median())
    finals = [float(data.final(variant)["sqrt_ve"]) for variant in sorted(data.settings)]
    return [
        Reproduction(
            "Section 9.4 (the on-policy contrast of section 11.3)",
            "Semi-gradient TD with linear features under the on-policy distribution is stable "
            "and converges to the TD fixed point (here v_pi, which the features represent).",
            f"{_diverged_text(diverged, seeds)}; median final sqrt(VE) "
            f"{min(finals):.3g}-{max(finals):.3g} (from {initial:.3g})",
            max(finals),
            diverged == 0 and max(finals) < 0.5 * initial,
        )
    ]


CHECKS: dict[str, Callable[[RunData], list[Reproduction]]] = {
    "baird_td_dp": check_baird_td_dp,
    "baird_tdc": check_baird_tdc,
    "baird_emphatic_td": check_baird_emphatic_td,
    "two_state_w2w": check_two_state_w2w,
    "tsitsiklis_van_roy": check_tsitsiklis_van_roy,
    "triad_cube_baird": check_triad_cube_baird,
    "random_walk_td": check_random_walk_td,
}
"""Each chapter-11 experiment (by name, as in experiments/) and its check."""
