"""Sweep throughput: trials per minute with 1 and 2 Ray workers, and the sweep's per-trial overhead.

Four measurements in one run, on the same trials:

- direct: `run_trial` called in a plain loop on the same grid points (numba on
  one thread, as each sweep trial gets one CPU);
- plain pool, 2 processes: the same calls spread over a `ProcessPoolExecutor`
  (no Ray, no Optuna): how much two workers can gain on this machine at best;
- sweep, 1 worker and 2 workers: `run_sweep` on a local Ray started once
  (its start-up is timed separately and not counted), with the default
  SQLite study in a temporary results directory. This includes asking and
  telling Optuna, shipping the config and the result between processes and
  publishing each trial's results directory.

Trials are linear semi-gradient TD(0) on the 5-state random walk, on-policy,
one seed each: CPU-bound in numba (``--steps`` updates). The per-trial
overhead of the sweep machinery is measured twice: on these CPU-bound trials
(sweep wall time per trial with 1 worker minus the direct time per trial) and
on near-empty trials (``--tiny-steps`` updates), where it is nearly all of the time.

    .venv/bin/python benchmarks/bench_sweep.py [--trials 8] [--steps 30000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numba
import optuna
import ray
from machine import machine_facts

from rlharness.runner import TrialConfig, plan_trials, run_trial
from rlharness.spec import ExperimentSpec, parse_spec
from rlharness.sweep import run_sweep
from rlharness.sweep.search_space import plan_sweep


def experiment(name: str, trials: int, steps: int) -> ExperimentSpec:
    """``trials`` grid points (step sizes), one seed each, ``steps`` TD updates per trial."""
    alphas = [round(0.001 + 0.04 * k / max(trials - 1, 1), 6) for k in range(trials)]
    return parse_spec(
        {
            "name": name,
            "env": {"id": "triad/RandomWalk-v0"},
            "agent": {"name": "semi_gradient_td", "alpha": 0.01},
            "triad": {"off_policy": False},
            "run": {"steps": steps, "log_every": max(steps // 10, 1), "seeds": 1},
            "grid": {"agent.alpha": alphas},
        }
    )


def direct(spec: ExperimentSpec) -> list[float]:
    """Seconds of each `run_trial` call over the spec's grid points, one numba thread."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        times = []
        for config in plan_trials(spec):
            start = time.perf_counter()
            run_trial(config)
            times.append(time.perf_counter() - start)
        return times
    finally:
        numba.set_num_threads(previous)


def _one_thread_trial(config: TrialConfig) -> None:
    numba.set_num_threads(1)
    run_trial(config)


def direct_in_processes(spec: ExperimentSpec, processes: int) -> float:
    """Wall seconds of the spec's grid points spread over a plain process pool (no Ray, no Optuna).

    The machine's own parallel capacity: what ``processes`` workers can gain at best.
    """
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        warmup = plan_trials(experiment("bench_warmup", processes, 1000))
        list(pool.map(_one_thread_trial, warmup))  # imports and numba's cache, untimed
        start = time.perf_counter()
        list(pool.map(_one_thread_trial, plan_trials(spec)))
        return time.perf_counter() - start


def swept(spec: ExperimentSpec, workers: int, root: Path) -> float:
    """Wall seconds of a whole sweep of the spec's grid on the running Ray."""
    plan = plan_sweep(spec)
    start = time.perf_counter()
    report = run_sweep(plan, root / f"w{workers}", workers=workers)
    elapsed = time.perf_counter() - start
    if report.finished != plan.budget or report.error:
        raise SystemExit(f"sweep did not finish: {report.finished}/{plan.budget} {report.error}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per measurement")
    parser.add_argument("--steps", type=int, default=30_000_000, help="TD updates per trial")
    parser.add_argument("--tiny-steps", type=int, default=50, help="updates of a near-empty trial")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    heavy = experiment("bench_heavy", args.trials, args.steps)
    tiny = experiment("bench_tiny", args.trials, args.tiny_steps)
    direct(experiment("bench_warmup", 2, 1000))  # compile or load numba's cache, untimed
    direct_heavy, direct_tiny = direct(heavy), direct(tiny)
    pool_2 = direct_in_processes(heavy, 2)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    start = time.perf_counter()
    ray.init(
        num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
    )
    ray_start = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        swept(experiment("bench_warmup", 4, 1000), 2, root / "warmup")  # warm both workers
        sweep_1 = swept(heavy, 1, root / "heavy")
        sweep_2 = swept(heavy, 2, root / "heavy")
        tiny_1 = swept(tiny, 1, root / "tiny")
    ray.shutdown()

    n = args.trials
    per_trial_direct = statistics.fmean(direct_heavy)
    figures: dict[str, Any] = {
        "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "ray_start_s": ray_start,
        "direct_heavy_s": direct_heavy,
        "direct_tiny_s": direct_tiny,
        "direct_heavy_2_processes_s": pool_2,
        "sweep_heavy_1_worker_s": sweep_1,
        "sweep_heavy_2_workers_s": sweep_2,
        "sweep_tiny_1_worker_s": tiny_1,
        "trials_per_min": {
            "direct": 60 * n / sum(direct_heavy),
            "direct_2_processes": 60 * n / pool_2,
            "sweep_1_worker": 60 * n / sweep_1,
            "sweep_2_workers": 60 * n / sweep_2,
        },
        "speedup_2_vs_1_workers": sweep_1 / sweep_2,
        "speedup_2_processes_vs_direct": sum(direct_heavy) / pool_2,
        "overhead_per_trial_s": {
            "cpu_bound": sweep_1 / n - per_trial_direct,
            "tiny": tiny_1 / n - statistics.fmean(direct_tiny),
        },
        "machine": machine_facts(ray=ray.__version__, optuna=optuna.__version__),
    }
    rates = figures["trials_per_min"]
    overhead = figures["overhead_per_trial_s"]
    print(
        f"{n} trials of {args.steps:,} TD updates (1 seed); local Ray started in {ray_start:.1f} s"
    )
    print(f"{'':24}{'wall s':>9}{'s/trial':>9}{'trials/min':>12}")
    print(
        f"{'run_trial, direct':24}{sum(direct_heavy):9.2f}{per_trial_direct:9.3f}"
        f"{rates['direct']:12.1f}"
    )
    print(
        f"{'plain pool, 2 processes':24}{pool_2:9.2f}{pool_2 / n:9.3f}"
        f"{rates['direct_2_processes']:12.1f}"
    )
    print(f"{'sweep, 1 worker':24}{sweep_1:9.2f}{sweep_1 / n:9.3f}{rates['sweep_1_worker']:12.1f}")
    print(
        f"{'sweep, 2 workers':24}{sweep_2:9.2f}{sweep_2 / n:9.3f}{rates['sweep_2_workers']:12.1f}"
    )
    print(
        f"speed-up 2 vs 1 workers: {figures['speedup_2_vs_1_workers']:.2f}x "
        f"(plain 2-process pool vs direct: {figures['speedup_2_processes_vs_direct']:.2f}x)"
    )
    print(
        f"sweep overhead per trial: {1000 * overhead['cpu_bound']:.0f} ms (CPU-bound trials), "
        f"{1000 * overhead['tiny']:.0f} ms ({args.tiny_steps}-update trials: "
        f"{tiny_1 / n * 1000:.0f} ms swept vs {statistics.fmean(direct_tiny) * 1000:.1f} ms direct)"
    )
    print(f"load average {figures['machine']['load_average_1_5_15']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
