"""Bootstrap intervals of `rlharness compare` against rliable's stock functions, same data.

Baseline: `rliable.library.get_interval_estimates` with rliable's own metric
functions (mean and IQM through `scipy.stats.trim_mean`, probability of
improvement through `scipy.stats.mannwhitneyu`), called once per resample.
Measured: `rlharness.analysis.statistics`, which uses rliable's stratified
bootstrap classes with per-resample statistics that skip scipy's per-call
overhead (and also computes the median). Both draw the same resamples: the
global NumPy generator is seeded identically, so the bounds must agree.

Run from the repository root: ``.venv/bin/python benchmarks/bench_compare.py``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import numpy as np
from machine import facts_table, machine_facts
from rich.console import Console
from rich.table import Table

from rlharness.analysis.statistics import interval_estimates, probability_of_improvement


def _scores(groups: int, seeds: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2021)
    return {f"group {i}": rng.normal(loc=i / 4, size=(seeds, 1)) for i in range(groups)}


def _stock_intervals(scores: dict[str, np.ndarray], reps: int) -> dict[str, np.ndarray]:
    from rliable import library as rly
    from rliable import metrics

    def mean_and_iqm(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_mean(x), metrics.aggregate_iqm(x)])

    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, intervals = rly.get_interval_estimates(
            scores, mean_and_iqm, reps=reps, random_state=np.random.RandomState(0)
        )
    return intervals


def _stock_improvements(
    scores: dict[str, np.ndarray], pairs: list[tuple[str, str]], reps: int
) -> dict[str, np.ndarray]:
    from rliable import library as rly
    from rliable import metrics

    np.random.seed(0)
    keyed = {f"{x} > {y}": [scores[x], scores[y]] for x, y in pairs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, intervals = rly.get_interval_estimates(
            keyed,
            metrics.probability_of_improvement,
            reps=reps,
            random_state=np.random.RandomState(0),
        )
    return intervals


def _timed(call: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=8, help="groups compared (grid points)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per group")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median kept)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    scores = _scores(args.groups, args.seeds)
    names = list(scores)
    pairs = [(x, names[0]) for x in names[1:]]
    interval_estimates({"warm-up": scores[names[0]]}, reps=100)
    probability_of_improvement(scores, pairs[:1], reps=100)
    _stock_intervals({"warm-up": scores[names[0]]}, 100)

    stock_time, stock = _timed(lambda: _stock_intervals(scores, args.reps), args.repeats)
    ours_time, ours = _timed(lambda: interval_estimates(scores, reps=args.reps), args.repeats)
    stock_poi_time, stock_poi = _timed(
        lambda: _stock_improvements(scores, pairs, args.reps), args.repeats
    )
    ours_poi_time, ours_poi = _timed(
        lambda: probability_of_improvement(scores, pairs, reps=args.reps), args.repeats
    )

    interval_gap = max(
        abs(stock[name][bound][column] - getattr(ours[name][estimator], side))
        for name in names
        for column, estimator in enumerate(("mean", "iqm"))
        for bound, side in enumerate(("low", "high"))
    )
    poi_gap = max(
        abs(float(np.ravel(stock_poi[f"{x} > {y}"])[bound]) - getattr(ours_poi[(x, y)], side))
        for x, y in pairs
        for bound, side in enumerate(("low", "high"))
    )
    figures = {
        "groups": args.groups,
        "seeds": args.seeds,
        "reps": args.reps,
        "intervals_rliable_s": stock_time,
        "intervals_rlharness_s": ours_time,
        "intervals_speedup": stock_time / ours_time,
        "improvement_rliable_s": stock_poi_time,
        "improvement_rlharness_s": ours_poi_time,
        "improvement_speedup": stock_poi_time / ours_poi_time,
        "max_interval_bound_difference": interval_gap,
        "max_improvement_bound_difference": poi_gap,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    console = Console()
    console.print(facts_table(machine_facts(rliable=version("rliable"), scipy=version("scipy"))))
    table = Table(title=f"{args.groups} groups x {args.seeds} seeds, {args.reps} resamples")
    for column in ("statistic", "rliable stock (s)", "rlharness (s)", "speed-up", "max |diff|"):
        table.add_column(column, justify="right")
    table.add_row(
        "mean + IQM intervals",
        f"{stock_time:.2f}",
        f"{ours_time:.2f}",
        f"{stock_time / ours_time:.1f}x",
        f"{interval_gap:.1e}",
    )
    table.add_row(
        f"P(improvement), {len(pairs)} pairs",
        f"{stock_poi_time:.2f}",
        f"{ours_poi_time:.2f}",
        f"{stock_poi_time / ours_poi_time:.1f}x",
        f"{poi_gap:.1e}",
    )
    console.print(table)


if __name__ == "__main__":
    main()
