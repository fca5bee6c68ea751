"""Env steps per second of RLlib's DQN on CartPole-v1: RLlib's defaults vs rlharness's settings.

A ladder of variants, each trained for ``--steps`` env steps from seed 0 on
one local env runner with one env and a local learner (RLlib 2.60, new API
stack, CPU):

(a) plain RLlib DQN with its defaults: ``DQNConfig().environment("CartPole-v1")``
    with ``num_env_runners=0``. That is dueling double DQN on a [256, 256]
    tanh MLP, prioritised replay, one update of 32 transitions per env step
    (rollout fragment 1), lr 5e-4, learning from step 1,000, torch on its
    default thread count (two here);
(a1) (a) with torch on one thread;
(b) rlharness's mapping of the DQN spec below (``build_rllib_dqn_config``)
    but with RLlib's uniform ``EpisodeReplayBuffer`` and torch's default
    thread count: the spec's hyperparameters with none of the speed settings;
(c) (b) with torch on one thread;
(d) (c) with rlharness's replay buffer (``PrioritizedEpisodeReplayBuffer``
    with alpha = 0, which is uniform): exactly what ``run_rllib_dqn`` trains;
(e) ``run_rllib_dqn`` itself: (d) plus diagnostics every ``--log-every``
    steps with one greedy evaluation episode;
(ref) plain stable-baselines3 DQN with the same hyperparameters, torch on
    one thread, for scale.

The spec (as in bench_sb3_dqn.py): target_q, replay 50,000, n = 1, target
copy every 500 steps, MLP [64, 64] (ReLU), gamma 0.99, epsilon 1 -> 0.05 over
the first 10 %, lr 1e-3, batch 64, one update per 4 env steps, learning from
step 1,000, grad-norm clip 10.

RLlib's ``train()`` samples 1,000 env steps per call in (a) to (d), so the
script times the calls after step 1,000 separately: the *learning-phase*
rate is the main figure. The *overall* rate covers building the algorithm
and all ``--steps`` steps. Updates/s counts gradient steps: (a) makes four
times as many per env step, of half the batch, as the others. The repeats
interleave the variants (rotating their order).

Run: ``python benchmarks/bench_rllib_dqn.py [--steps 2000 --repeats 1
--log-every 1000 --variants a,a1,b,c,d,e,ref --json PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import ray
import stable_baselines3
import torch
from machine import facts_table, machine_facts
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
)
from rich.console import Console
from rich.table import Table
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

from rlharness.agents.deep.rllib_dqn import build_rllib_dqn_config, ensure_ray, run_rllib_dqn
from rlharness.spec import DQNAgentSpec, EnvSpec

ENV = EnvSpec(id="CartPole-v1")
SEED = 0
ITERATION_STEPS = 1_000  # RLlib's default env steps per train() call, kept in (a) to (d)
HARD_LIMIT = 1e10  # DiagnosticsSpec's default hard-divergence threshold


@dataclass(frozen=True)
class Sample:
    """One timed run: seconds overall (build included) and, where separable, of learning."""

    overall_seconds: float
    learning_seconds: float | None = None
    learning_steps: int = 0
    updates: int = 0


@dataclass(frozen=True)
class Variant:
    """A benchmarked configuration: a key, a description and how to train it once."""

    key: str
    label: str
    settings: str
    train: Callable[[DQNAgentSpec, int], Sample]


def agent_spec() -> DQNAgentSpec:
    """The DQN spec every variant but (a) trains (the values of bench_sb3_dqn.py)."""
    return DQNAgentSpec.model_validate(
        {
            "name": "dqn",
            "backend": "rllib",
            "bootstrap_target": "target_q",
            "replay_capacity": 50_000,
            "target_update_period": 500,
            "network": {"width": 64, "depth": 2},
            "exploration": {"initial_epsilon": 1.0, "final_epsilon": 0.05, "fraction": 0.1},
            "learning_rate": 1e-3,
            "batch_size": 64,
            "train_frequency": 4,
            "learning_starts": 1000,
            "max_grad_norm": 10.0,
            "eval_episodes": 1,
        }
    )


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch threads (None: leave the default), restoring it afterwards."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def plain_rllib_config() -> DQNConfig:
    """Variant (a): RLlib's DQN defaults on CartPole, one local env runner, seeded."""
    return (
        DQNConfig()
        .environment(ENV.id)
        .env_runners(num_env_runners=0)
        .debugging(seed=SEED, log_level="ERROR")
    )


def harness_config(agent: DQNAgentSpec, steps: int, uniform_buffer: bool) -> DQNConfig:
    """rlharness's config, optionally with RLlib's uniform ``EpisodeReplayBuffer`` instead."""
    config = build_rllib_dqn_config(agent, ENV, SEED, steps, ITERATION_STEPS)
    if uniform_buffer:
        buffer = {"type": "EpisodeReplayBuffer", "capacity": agent.replay_capacity}
        config = config.training(replay_buffer_config=buffer)
    return config


def time_algorithm(config: DQNConfig, steps: int, learning_starts: int) -> Sample:
    """Build ``config`` and call ``train()`` until ``steps`` env steps; time all and learning.

    The learning phase is the ``train()`` calls that start at or after ``learning_starts``.
    """
    start = time.perf_counter()
    algo = config.build_algo()
    sampled, calls = 0, []
    try:
        while sampled < steps:
            calls.append((time.perf_counter(), sampled))
            result = algo.train()
            sampled = int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])
        end = time.perf_counter()
        trained = float(result[LEARNER_RESULTS][ALL_MODULES][NUM_ENV_STEPS_TRAINED_LIFETIME])
    finally:
        algo.stop()
    learning_from, learning_step = next(call for call in calls if call[1] >= learning_starts)
    updates = round(trained / config.train_batch_size_per_learner)
    return Sample(end - start, end - learning_from, sampled - learning_step, updates)


def plain_trainer(threads: int | None) -> Callable[[DQNAgentSpec, int], Sample]:
    """(a) and (a1): RLlib's defaults with torch on the given number of threads."""

    def train(agent: DQNAgentSpec, steps: int) -> Sample:
        with torch_threads(threads):
            config = plain_rllib_config()
            return time_algorithm(config, steps, config.num_steps_sampled_before_learning_starts)

    return train


def harness_trainer(
    uniform_buffer: bool, threads: int | None
) -> Callable[[DQNAgentSpec, int], Sample]:
    """(b), (c) and (d): rlharness's config with the given buffer and torch threads."""

    def train(agent: DQNAgentSpec, steps: int) -> Sample:
        with torch_threads(threads):
            config = harness_config(agent, steps, uniform_buffer)
            return time_algorithm(config, steps, agent.learning_starts)

    return train


def full_trainer(log_every: int) -> Callable[[DQNAgentSpec, int], Sample]:
    """(e) run_rllib_dqn with its diagnostics (overall time only)."""

    def train(agent: DQNAgentSpec, steps: int) -> Sample:
        start = time.perf_counter()
        trace = run_rllib_dqn(agent, ENV, SEED, steps, log_every, HARD_LIMIT)
        if trace.hard_divergence_step is not None:
            raise RuntimeError(f"run_rllib_dqn hard-diverged: {trace.hard_divergence_reason}")
        return Sample(time.perf_counter() - start)

    return train


class _LearningClock(BaseCallback):
    """Notes the time at which SB3 has taken ``learning_starts`` env steps."""

    def __init__(self, learning_starts: int) -> None:
        super().__init__()
        self.learning_starts = learning_starts
        self.learning_from = time.perf_counter()

    def _on_step(self) -> bool:
        if self.num_timesteps == self.learning_starts:
            self.learning_from = time.perf_counter()
        return True


def train_sb3(agent: DQNAgentSpec, steps: int) -> Sample:
    """(ref) Plain stable-baselines3 DQN with the spec's hyperparameters, one torch thread."""
    with torch_threads(1):
        start = time.perf_counter()
        model = DQN(
            "MlpPolicy",
            gym.make(ENV.id),
            learning_rate=agent.learning_rate,
            buffer_size=agent.replay_capacity,
            learning_starts=agent.learning_starts,
            batch_size=agent.batch_size,
            gamma=agent.gamma,
            train_freq=agent.train_frequency,
            target_update_interval=agent.target_update_period,
            exploration_fraction=agent.exploration.fraction,
            exploration_final_eps=agent.exploration.final_epsilon,
            max_grad_norm=agent.max_grad_norm,
            policy_kwargs={"net_arch": [agent.network.width] * agent.network.depth},
            seed=SEED,
            device="cpu",
        )
        clock = _LearningClock(agent.learning_starts)
        model.learn(total_timesteps=steps, callback=clock)
        end = time.perf_counter()
    if model.env is not None:
        model.env.close()
    learning_steps = steps - agent.learning_starts
    return Sample(end - start, end - clock.learning_from, learning_steps, model._n_updates)


def variants(log_every: int) -> list[Variant]:
    """The benchmarked variants, in their first-repeat order."""
    return [
        Variant(
            "a",
            "(a) RLlib defaults",
            "dueling [256,256] tanh, PER, 1 upd/step",
            plain_trainer(None),
        ),
        Variant("a1", "(a1) + 1 torch thread", "(a) on one torch thread", plain_trainer(1)),
        Variant("b", "(b) spec on RLlib", "EpisodeReplayBuffer", harness_trainer(True, None)),
        Variant("c", "(c) + 1 torch thread", "EpisodeReplayBuffer", harness_trainer(True, 1)),
        Variant("d", "(d) + rlharness buffer", "PER buffer, alpha 0", harness_trainer(False, 1)),
        Variant("e", "(e) run_rllib_dqn", f"(d) + logs every {log_every}", full_trainer(log_every)),
        Variant("ref", "(ref) SB3 DQN", "the spec, 1 torch thread", train_sb3),
    ]


def run_repeats(
    chosen: list[Variant], agent: DQNAgentSpec, steps: int, repeats: int, console: Console
) -> dict[str, list[Sample]]:
    """``repeats`` rounds, each training every variant once, rotating the order per round."""
    samples: dict[str, list[Sample]] = {variant.key: [] for variant in chosen}
    for round_index in range(repeats):
        shift = round_index % len(chosen)
        for variant in chosen[shift:] + chosen[:shift]:
            sample = variant.train(agent, steps)
            samples[variant.key].append(sample)
            console.log(f"round {round_index + 1}: {variant.label}: {sample}")
    return samples


def median_learning_rate(samples: list[Sample], updates: bool = False) -> float | None:
    """Median env steps (or updates) per second of the learning phase; None if not timed."""
    rates = []
    for sample in samples:
        if sample.learning_seconds is None:
            return None
        count = sample.updates if updates else sample.learning_steps
        rates.append(count / sample.learning_seconds)
    return statistics.median(rates)


def summarise(
    chosen: list[Variant], samples: dict[str, list[Sample]], steps: int
) -> dict[str, dict[str, Any]]:
    """Per variant: settings, every timing, median rates, and ratios to (a)."""
    summary: dict[str, dict[str, Any]] = {}
    for variant in chosen:
        runs = samples[variant.key]
        summary[variant.key] = {
            "label": variant.label,
            "settings": variant.settings,
            "samples": [asdict(s) for s in runs],
            "learning_steps_per_s": median_learning_rate(runs),
            "learning_updates_per_s": median_learning_rate(runs, updates=True),
            "overall_steps_per_s": steps / statistics.median(s.overall_seconds for s in runs),
        }
    base, sb3 = summary["a"], summary.get("ref", {})
    for row in summary.values():
        row["learning_vs_a"] = _ratio(row["learning_steps_per_s"], base["learning_steps_per_s"])
        row["overall_vs_a"] = _ratio(row["overall_steps_per_s"], base["overall_steps_per_s"])
        row["learning_vs_ref"] = _ratio(
            row["learning_steps_per_s"], sb3.get("learning_steps_per_s")
        )
    return summary


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None else value / base


def _cell(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def speed_table(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> Table:
    """Median learning-phase and overall rates per variant, with ratios to (a)."""
    table = Table(title=f"DQN on {ENV.id}, {args.steps:,} env steps per run, median rates")
    for name in ("variant", "settings"):
        table.add_column(name)
    for name in ("learning steps/s", "updates/s", "x (a)", "x (ref)", "overall steps/s"):
        table.add_column(name, justify="right")
    for row in summary.values():
        table.add_row(
            row["label"],
            row["settings"],
            _cell(row["learning_steps_per_s"], ",.0f"),
            _cell(row["learning_updates_per_s"], ",.0f"),
            _cell(row["learning_vs_a"], ".1f"),
            _cell(row["learning_vs_ref"], ".3f"),
            _cell(row["overall_steps_per_s"], ",.0f"),
        )
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2_000, help="env steps per run (> 1,000)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over all variants")
    parser.add_argument("--log-every", type=int, default=1_000, help="(e)'s logging period")
    parser.add_argument(
        "--variants", default="a,a1,b,c,d,e,ref", help="comma-separated keys of the variants to run"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.steps <= ITERATION_STEPS or min(args.repeats, args.log_every) < 1:
        parser.error("--steps must exceed 1,000 and --repeats, --log-every be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Time the interleaved rounds, print the table (and save the figures)."""
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*Overriding environment")
    logging.getLogger("ray").setLevel(logging.ERROR)
    keys = args.variants.split(",")
    chosen = [variant for variant in variants(args.log_every) if variant.key in keys]
    if not any(variant.key == "a" for variant in chosen):
        raise SystemExit("--variants must include the baseline, a")
    console = Console(width=max(Console().width, 132))
    ensure_ray()
    load_before = os.getloadavg()
    samples = run_repeats(chosen, agent_spec(), args.steps, args.repeats, console)
    summary = summarise(chosen, samples, args.steps)
    facts = machine_facts(
        load_average_before=tuple(round(x, 2) for x in load_before),
        torch_default_threads=torch.get_num_threads(),
        ray=ray.__version__,
        torch=torch.__version__,
        stable_baselines3=stable_baselines3.__version__,
        gymnasium=gym.__version__,
    )
    console.print(speed_table(summary, args))
    console.print(
        "learning: the train() calls from step 1,000 on ((ref): SB3's steps after 1,000); "
        "x (a), x (ref): learning-phase rate over (a)'s and over SB3's; overall: build + all "
        "steps, (e) with its diagnostics and evaluation episodes"
    )
    console.print(facts_table(facts))
    if args.json is not None:
        report = {
            "benchmark": "rllib_dqn_cartpole",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "settings": {"env": ENV.id, "seed": SEED, **vars(args), "json": str(args.json)},
            "agent": agent_spec().model_dump(),
            "variants": summary,
            "machine": facts,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
