"""Linear updates per second of off-policy TD(0) on Baird: batched kernel vs a plain loop.

Both sides run the same rule, Sutton & Barto eq. 11.2, on ``triad/Baird-v0``
from w0 = (1,1,1,1,1,1,10,1) with alpha = 0.01:

    a ~ b(s), s' ~ P(s, a, .), rho = pi(a|s) / b(a|s),
    delta = r + gamma x(s')^T w - x(s)^T w,   w <- w + alpha rho delta x(s).

(a) rlharness's batched, numba-compiled ``semi_gradient_td`` over ``--seeds``
    seeds (one warm-up call to exclude compile time, then ``--repeats`` timed calls);
(b) a plain Python loop, one seed at a time, numpy per step, with an
    ``np.random.Generator`` per seed, over ``--loop-seeds`` seeds (timed
    ``--repeats`` times as well).

The two use different random streams, so they agree only statistically: the
script compares the mean final weights of the loop's seeds with the batched
mean over all seeds and prints z-scores.

Run: ``python benchmarks/bench_linear_td.py [--seeds 10000 --steps 1000
--loop-seeds 20 --repeats 5 --json PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numba
import numpy as np
from machine import facts_table, machine_facts
from rich.console import Console
from rich.table import Table

import rlharness_envs  # noqa: F401  (registers the triad/* ids)
from rlharness.agents.linear import Hyperparameters, LinearProblem, build_problem, logged_steps
from rlharness.agents.linear.sampling import cumulative
from rlharness.agents.linear.td import semi_gradient_td
from rlharness.agents.linear.types import FloatArray
from rlharness_envs.baird import INITIAL_WEIGHTS

ENV_ID = "triad/Baird-v0"
BAIRD_W0 = list(INITIAL_WEIGHTS)
ALPHA = 0.01
HARD_LIMIT = 1e10  # the default hard_divergence_factor 1e9 x max |w0| = 10
Z_LIMIT = 4.0  # |z| above this on any statistic fails the agreement check


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated runs that each perform ``updates`` linear updates."""

    updates: int
    seconds: list[float]

    @property
    def median_rate(self) -> float:
        """Updates per second at the median time."""
        return self.updates / statistics.median(self.seconds)

    @property
    def best_rate(self) -> float:
        """Updates per second at the fastest time."""
        return self.updates / min(self.seconds)


@dataclass(frozen=True)
class Agreement:
    """Loop-vs-batched z-scores of the mean final weights and of the mean final ||w||."""

    labels: list[str]
    loop_means: list[float]
    batched_means: list[float]
    z_scores: list[float]
    batched_diverged: int

    @property
    def passed(self) -> bool:
        """Whether every |z| is below `Z_LIMIT` and no batched seed hard-diverged."""
        return self.batched_diverged == 0 and all(abs(z) < Z_LIMIT for z in self.z_scores)


@dataclass(frozen=True)
class PlainModel:
    """The arrays the plain loop reads, drawn by inverse CDF like the compiled sampler."""

    features: FloatArray
    behaviour_cum: FloatArray
    transition_cum: FloatArray
    start_cum: FloatArray
    reward: FloatArray
    ratio: FloatArray
    terminal: np.ndarray
    gamma: float


def baird_problem() -> LinearProblem:
    """The prediction form of Baird's counterexample, off-policy, with the env's features."""
    model = gym.make(ENV_ID).unwrapped.model  # type: ignore[attr-defined]
    return build_problem(model, "env", off_policy=True, control=False)


def plain_model(problem: LinearProblem) -> PlainModel:
    """The arrays of ``problem`` that the plain loop needs."""
    model = problem.model
    return PlainModel(
        features=problem.state_features,
        behaviour_cum=cumulative(problem.behaviour_policy),
        transition_cum=cumulative(model.transition),
        start_cum=cumulative(model.start_distribution),
        reward=model.reward,
        ratio=problem.importance_ratio,
        terminal=model.terminal,
        gamma=model.gamma,
    )


def run_batched(problem: LinearProblem, w0: FloatArray, n_seeds: int, steps: int) -> FloatArray:
    """Final weights (seeds x features) of the batched kernel; NaN rows for hard-diverged seeds."""
    weights = np.tile(w0, (n_seeds, 1))
    marks = logged_steps(steps, steps)
    settings = Hyperparameters(alpha=ALPHA, beta=0.0, n_step=1, target_update_period=1)
    limits = np.full(n_seeds, HARD_LIMIT)
    trace = semi_gradient_td(problem, weights, list(range(n_seeds)), settings, marks, limits)
    return trace.weights[-1]


def _draw(cumulative_row: FloatArray, rng: np.random.Generator) -> int:
    """Sample an index from a row of cumulative probabilities."""
    return int(np.searchsorted(cumulative_row, rng.random(), side="right"))


def plain_td_seed(m: PlainModel, w0: FloatArray, seed: int, steps: int) -> FloatArray:
    """Run eq. 11.2 for one seed, one transition at a time; return the final weights."""
    rng = np.random.default_rng(seed)
    w = w0.copy()
    s = _draw(m.start_cum, rng)
    for _ in range(steps):
        a = _draw(m.behaviour_cum[s], rng)
        s_next = _draw(m.transition_cum[s, a], rng)
        x = m.features[s]
        delta = m.reward[s, a, s_next] + m.gamma * (m.features[s_next] @ w) - x @ w
        w += ALPHA * m.ratio[s, a] * delta * x
        s = _draw(m.start_cum, rng) if m.terminal[s_next] else s_next
    return w


def run_plain(m: PlainModel, w0: FloatArray, n_seeds: int, steps: int) -> FloatArray:
    """Final weights (seeds x features) of the plain loop over seeds 0..n_seeds-1."""
    return np.stack([plain_td_seed(m, w0, seed, steps) for seed in range(n_seeds)])


def time_calls(call: Callable[[], FloatArray], repeats: int) -> tuple[list[float], FloatArray]:
    """Seconds of ``repeats`` calls, and the result of the last one."""
    seconds = []
    result = np.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def check_agreement(loop_final: FloatArray, batched_final: FloatArray) -> Agreement:
    """z-scores of loop mean minus batched mean for each weight and for ||w||.

    Under the hypothesis that both sample the same distribution, the standard
    error of the difference is sd * sqrt(1/n_loop + 1/n_batched), with sd taken
    from the batched seeds (many more of them, so a far steadier estimate).
    """
    diverged = int(np.isnan(batched_final).any(axis=1).sum())
    batched = batched_final[~np.isnan(batched_final).any(axis=1)]
    loop_stats = np.column_stack([loop_final, np.linalg.norm(loop_final, axis=1)])
    batched_stats = np.column_stack([batched, np.linalg.norm(batched, axis=1)])
    scale = np.sqrt(1.0 / len(loop_stats) + 1.0 / len(batched_stats))
    difference = loop_stats.mean(axis=0) - batched_stats.mean(axis=0)
    z_scores = difference / (batched_stats.std(axis=0, ddof=1) * scale)
    labels = [f"w[{j + 1}]" for j in range(loop_final.shape[1])] + ["||w||"]
    return Agreement(
        labels=labels,
        loop_means=loop_stats.mean(axis=0).tolist(),
        batched_means=batched_stats.mean(axis=0).tolist(),
        z_scores=z_scores.tolist(),
        batched_diverged=diverged,
    )


def speed_table(batched: Timing, plain: Timing, args: argparse.Namespace) -> Table:
    """The throughput table: M updates/s of each implementation and the speed-up."""
    table = Table(title=f"Off-policy TD(0) on Baird, {args.steps} steps per seed")
    for column in ("implementation", "seeds", "updates", "median M/s", "best M/s", "runs"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    rows = (
        ("batched numba kernel", args.seeds, batched),
        ("plain Python loop", args.loop_seeds, plain),
    )
    for name, seeds, timing in rows:
        table.add_row(
            name,
            f"{seeds:,}",
            f"{timing.updates:,}",
            f"{timing.median_rate / 1e6:.3f}",
            f"{timing.best_rate / 1e6:.3f}",
            str(len(timing.seconds)),
        )
    median_ratio = batched.median_rate / plain.median_rate
    best_ratio = batched.best_rate / plain.best_rate
    table.add_row("speed-up", "", "", f"{median_ratio:,.0f}x", f"{best_ratio:,.0f}x", "")
    return table


def agreement_table(agreement: Agreement, args: argparse.Namespace) -> Table:
    """Loop vs batched mean final weights with z-scores."""
    table = Table(title=f"Mean final weights after {args.steps} steps")
    for column in ("statistic", "loop mean", "batched mean", "z"):
        table.add_column(column, justify="right")
    for label, loop, batched, z in zip(
        agreement.labels,
        agreement.loop_means,
        agreement.batched_means,
        agreement.z_scores,
        strict=True,
    ):
        table.add_row(label, f"{loop:.3f}", f"{batched:.3f}", f"{z:+.2f}")
    return table


def agreement_verdict(agreement: Agreement, args: argparse.Namespace) -> str:
    """One line: what was compared, the largest |z| and PASS or FAIL."""
    verdict = "[green]PASS[/]" if agreement.passed else "[red]FAIL[/]"
    worst = max(abs(z) for z in agreement.z_scores)
    return (
        f"agreement: {args.loop_seeds} loop seeds vs {args.seeds:,} batched seeds, "
        f"max |z| = {worst:.2f} (limit {Z_LIMIT:g}), "
        f"batched seeds hard-diverged: {agreement.batched_diverged} -> {verdict}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10_000, help="seeds of the batched kernel")
    parser.add_argument("--steps", type=int, default=1_000, help="transitions per seed")
    parser.add_argument("--loop-seeds", type=int, default=20, help="seeds of the plain loop")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each side")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if min(args.seeds, args.steps, args.loop_seeds, args.repeats) < 1:
        parser.error("--seeds, --steps, --loop-seeds and --repeats must be >= 1")
    if args.loop_seeds < 2:
        parser.error("--loop-seeds must be >= 2 for the agreement check")
    return args


def main(argv: list[str] | None = None) -> int:
    """Time both implementations, check they agree, print tables; 1 if the check fails."""
    args = parse_args(argv)
    problem = baird_problem()
    w0 = problem.initial_weights(BAIRD_W0)
    model = plain_model(problem)

    start = time.perf_counter()
    run_batched(problem, w0, args.seeds, args.steps)  # warm-up: load or compile the kernel
    warm_up = time.perf_counter() - start
    batched_seconds, batched_final = time_calls(
        lambda: run_batched(problem, w0, args.seeds, args.steps), args.repeats
    )
    plain_seconds, loop_final = time_calls(
        lambda: run_plain(model, w0, args.loop_seeds, args.steps), args.repeats
    )
    batched = Timing(args.seeds * args.steps, batched_seconds)
    plain = Timing(args.loop_seeds * args.steps, plain_seconds)
    agreement = check_agreement(loop_final, batched_final)
    facts = machine_facts(  # after a parallel kernel ran, so the threading layer is known
        numba_threads=numba.get_num_threads(),
        numba_threading_layer=numba.threading_layer(),
        numba=numba.__version__,
    )

    console = Console()
    console.print(speed_table(batched, plain, args))
    console.print(f"warm-up call (compile or cache load + one run): {warm_up:.2f} s")
    console.print(agreement_table(agreement, args))
    console.print(agreement_verdict(agreement, args))
    console.print(facts_table(facts))
    if args.json is not None:
        write_json(args, batched, plain, agreement, facts, warm_up)
        console.print(f"wrote {args.json}")
    return 0 if agreement.passed else 1


def write_json(
    args: argparse.Namespace,
    batched: Timing,
    plain: Timing,
    agreement: Agreement,
    facts: dict[str, Any],
    warm_up: float,
) -> None:
    """Write settings, timings, rates, speed-ups, the agreement check and machine facts."""

    def figures(timing: Timing) -> dict[str, Any]:
        return {
            "updates": timing.updates,
            "seconds": timing.seconds,
            "median_updates_per_s": timing.median_rate,
            "best_updates_per_s": timing.best_rate,
        }

    report = {
        "benchmark": "linear_td_baird",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {
            "env": ENV_ID,
            "alpha": ALPHA,
            "w0": BAIRD_W0,
            "seeds": args.seeds,
            "steps": args.steps,
            "loop_seeds": args.loop_seeds,
            "repeats": args.repeats,
        },
        "batched": figures(batched) | {"warm_up_seconds": warm_up},
        "plain_loop": figures(plain),
        "speedup_median": batched.median_rate / plain.median_rate,
        "speedup_best": batched.best_rate / plain.best_rate,
        "agreement": asdict(agreement) | {"passed": agreement.passed, "z_limit": Z_LIMIT},
        "machine": facts,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
