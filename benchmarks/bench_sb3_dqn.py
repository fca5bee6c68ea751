"""Env steps per second of DQN on CartPole-v1: plain stable-baselines3 vs rlharness's TriadDQN.

Every variant trains the same DQN (SB3's defaults adapted: lr 1e-3, replay
50,000, learning_starts 1,000, batch 64, train_freq 4, one gradient step,
hard target copy every 500 steps, epsilon 1 -> 0.05 over the first 10 %,
MLP [64, 64], gamma 0.99, Huber loss, grad-norm clip 10, 1-step targets,
uniform replay) from the same seed, with torch on one thread:

(a)  plain ``stable_baselines3.DQN("MlpPolicy", ...)`` with SB3's default
     ``ReplayBuffer`` (what SB3 picks for n_steps = 1);
(a') the same with ``NStepReplayBuffer(n_steps=1)``, the buffer rlharness
     always uses: the like-for-like baseline;
(b)  rlharness's ``TriadDQN`` from ``build_sb3_dqn`` with
     ``bootstrap_target="target_q"`` (the same maths), ``learn()`` with no callback;
(c)  rlharness's full ``run_sb3_dqn``: diagnostics every ``--log-every`` steps,
     including one greedy evaluation episode per log. Evaluation episodes are
     extra env steps the baselines do not take; the rate counts training steps only,
     and the evaluation time is also reported separately.

Each timing covers building the model and ``learn()``. The repeats interleave
the variants (rotating their order) so that machine noise hits all alike.

Run: ``python benchmarks/bench_sb3_dqn.py [--steps 20000 --repeats 3
--log-every 1000 --warmup-steps 1500 --json PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from machine import facts_table, machine_facts
from rich.console import Console
from rich.table import Table
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer

from rlharness.agents.deep import sb3_dqn
from rlharness.agents.deep.sb3_dqn import build_sb3_dqn, run_sb3_dqn
from rlharness.spec import DQNAgentSpec, EnvSpec, ExplorationSpec, NetworkSpec

ENV_ID = "CartPole-v1"
SEED = 0
HARD_LIMIT = 1e10  # DiagnosticsSpec's default hard-divergence threshold
BASELINE_KEY = "a_nstep"  # the like-for-like baseline: the replay buffer rlharness uses
TARGET_OVERHEAD = 5.0  # percent; (b) should cost at most this much over the baseline


@dataclass(frozen=True)
class Sample:
    """One timed training run: wall and process-CPU seconds, and the evaluation share for (c)."""

    seconds: float
    cpu_seconds: float
    eval_seconds: float = 0.0
    eval_cpu_seconds: float = 0.0
    eval_steps: int = 0
    eval_episodes: int = 0
    final_parameters: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Variant:
    """A benchmarked implementation: a key, a description, and how to train it once."""

    key: str
    label: str
    replay: str
    train: Callable[[DQNAgentSpec, int], Sample]


@dataclass
class EvalTimer:
    """Accumulates the time and env steps of the diagnostics callback's evaluations."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    steps: int = 0
    episodes: int = 0


def agent_spec(eval_episodes: int) -> DQNAgentSpec:
    """The rlharness spec of the shared hyperparameters (target_q, uniform replay, n = 1)."""
    return DQNAgentSpec(
        name="dqn",
        bootstrap_target="target_q",
        replay_capacity=50_000,
        n_step=1,
        target_update_period=500,
        target_update_tau=1.0,
        network=NetworkSpec(width=64, depth=2),
        gamma=0.99,
        reward_clip=1.0,  # the harness default; a no-op on CartPole's +1 rewards
        exploration=ExplorationSpec(initial_epsilon=1.0, final_epsilon=0.05, fraction=0.1),
        learning_rate=1e-3,
        batch_size=64,
        train_frequency=4,
        gradient_steps=1,
        learning_starts=1000,
        max_grad_norm=10.0,
        eval_episodes=eval_episodes,
    )


def baseline_kwargs(agent: DQNAgentSpec) -> dict[str, Any]:
    """Plain SB3 DQN keyword arguments carrying the same values as ``agent``."""
    return {
        "learning_rate": agent.learning_rate,
        "buffer_size": agent.replay_capacity,
        "learning_starts": agent.learning_starts,
        "batch_size": agent.batch_size,
        "tau": agent.target_update_tau,
        "gamma": agent.gamma,
        "train_freq": agent.train_frequency,
        "gradient_steps": agent.gradient_steps,
        "target_update_interval": agent.target_update_period,
        "exploration_fraction": agent.exploration.fraction,
        "exploration_initial_eps": agent.exploration.initial_epsilon,
        "exploration_final_eps": agent.exploration.final_epsilon,
        "max_grad_norm": agent.max_grad_norm,
        "policy_kwargs": {"net_arch": [agent.network.width] * agent.network.depth},
        "seed": SEED,
        "device": "cpu",
        "verbose": 0,
    }


def build_baseline(agent: DQNAgentSpec, nstep_buffer: bool) -> DQN:
    """Plain SB3 DQN on CartPole-v1, with SB3's ReplayBuffer or NStepReplayBuffer(n=1)."""
    kwargs = baseline_kwargs(agent)
    if nstep_buffer:
        kwargs["replay_buffer_class"] = NStepReplayBuffer
        kwargs["replay_buffer_kwargs"] = {"n_steps": agent.n_step, "gamma": agent.gamma}
    return DQN("MlpPolicy", gym.make(ENV_ID), **kwargs)


def hyperparameters(model: DQN) -> dict[str, Any]:
    """The training settings a built model actually holds, to check the variants agree."""
    return {
        "learning_rate": model.learning_rate,
        "buffer_size": model.buffer_size,
        "learning_starts": model.learning_starts,
        "batch_size": model.batch_size,
        "tau": model.tau,
        "gamma": model.gamma,
        "train_freq": str(model.train_freq),
        "gradient_steps": model.gradient_steps,
        "target_update_interval": model.target_update_interval,
        "exploration": (
            model.exploration_initial_eps,
            model.exploration_final_eps,
            model.exploration_fraction,
        ),
        "max_grad_norm": model.max_grad_norm,
        "q_net": str(model.q_net),
    }


def flat_parameters(model: DQN) -> np.ndarray:
    """The online Q-network's parameters as one float64 vector."""
    with torch.no_grad():
        return torch.cat([p.reshape(-1) for p in model.q_net.parameters()]).double().numpy()


def close_env(model: DQN) -> None:
    """Close a model's training env, if it has one."""
    if model.env is not None:
        model.env.close()


def time_learn(build: Callable[[], DQN], steps: int) -> Sample:
    """Build a model and train it for ``steps`` env steps without callbacks; time both."""
    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    model = build()
    model.learn(total_timesteps=steps)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    close_env(model)
    return Sample(seconds, cpu_seconds, final_parameters=flat_parameters(model))


def train_sb3_default(agent: DQNAgentSpec, steps: int) -> Sample:
    """Variant (a): plain SB3 DQN with its default ReplayBuffer."""
    return time_learn(lambda: build_baseline(agent, nstep_buffer=False), steps)


def train_sb3_nstep(agent: DQNAgentSpec, steps: int) -> Sample:
    """Variant (a'): plain SB3 DQN with NStepReplayBuffer(n_steps=1), as rlharness."""
    return time_learn(lambda: build_baseline(agent, nstep_buffer=True), steps)


def train_triad(agent: DQNAgentSpec, steps: int) -> Sample:
    """Variant (b): rlharness's TriadDQN from build_sb3_dqn, no diagnostics callback."""
    return time_learn(lambda: build_sb3_dqn(agent, EnvSpec(id=ENV_ID), SEED), steps)


@contextmanager
def timed_evaluations() -> Iterator[EvalTimer]:
    """Patch the diagnostics callback's ``evaluate_policy`` to time and count its episodes."""
    original = sb3_dqn.evaluate_policy
    timer = EvalTimer()

    def timed(*args: Any, **kwargs: Any) -> tuple[float, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        kwargs["return_episode_rewards"] = True
        returns, lengths = original(*args, **kwargs)
        timer.seconds += time.perf_counter() - start
        timer.cpu_seconds += time.process_time() - cpu_start
        episode_lengths = np.atleast_1d(np.asarray(lengths))
        timer.steps += int(episode_lengths.sum())
        timer.episodes += len(episode_lengths)
        return float(np.mean(returns)), float(np.std(returns))

    sb3_dqn.evaluate_policy = timed
    try:
        yield timer
    finally:
        sb3_dqn.evaluate_policy = original


def make_train_full(log_every: int) -> Callable[[DQNAgentSpec, int], Sample]:
    """Variant (c): rlharness's run_sb3_dqn with diagnostics every ``log_every`` steps."""

    def train_full(agent: DQNAgentSpec, steps: int) -> Sample:
        gc.collect()
        with timed_evaluations() as timer:
            start, cpu_start = time.perf_counter(), time.process_time()
            trace = run_sb3_dqn(agent, EnvSpec(id=ENV_ID), SEED, steps, log_every, HARD_LIMIT)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        if trace.hard_divergence_step is not None:
            raise RuntimeError(f"run_sb3_dqn hard-diverged: {trace.hard_divergence_reason}")
        return Sample(
            seconds, cpu_seconds, timer.seconds, timer.cpu_seconds, timer.steps, timer.episodes
        )

    return train_full


def variants(log_every: int) -> list[Variant]:
    """The four benchmarked variants, in their first-repeat order."""
    return [
        Variant("a_default", "(a) SB3 DQN", "ReplayBuffer", train_sb3_default),
        Variant("a_nstep", "(a') SB3 DQN", "NStep(n=1)", train_sb3_nstep),
        Variant("b_triad", "(b) TriadDQN", "NStep(n=1)", train_triad),
        Variant("c_full", "(c) run_sb3_dqn", "NStep(n=1)", make_train_full(log_every)),
    ]


def check_same_settings(agent: DQNAgentSpec) -> None:
    """Raise if the variants differ in training settings or use unexpected replay buffers."""
    built = [
        build_baseline(agent, nstep_buffer=False),
        build_baseline(agent, nstep_buffer=True),
        build_sb3_dqn(agent, EnvSpec(id=ENV_ID), SEED),
    ]
    settings = [hyperparameters(model) for model in built]
    buffers = [type(model.replay_buffer) for model in built]
    for model in built:
        close_env(model)
    if buffers != [ReplayBuffer, NStepReplayBuffer, NStepReplayBuffer]:
        raise RuntimeError(f"unexpected replay buffers: {[b.__name__ for b in buffers]}")
    for other in settings[1:]:
        if other != settings[0]:
            diff = {k: (settings[0][k], other[k]) for k in other if other[k] != settings[0][k]}
            raise RuntimeError(f"variants differ in their settings: {diff}")


def run_repeats(
    chosen: list[Variant], agent: DQNAgentSpec, steps: int, repeats: int
) -> dict[str, list[Sample]]:
    """``repeats`` rounds, each training every variant once, rotating the order per round."""
    samples: dict[str, list[Sample]] = {variant.key: [] for variant in chosen}
    for round_index in range(repeats):
        shift = round_index % len(chosen)
        for variant in chosen[shift:] + chosen[:shift]:
            samples[variant.key].append(variant.train(agent, steps))
    return samples


def seconds_of(sample: Sample, cpu: bool = False, exclude_eval: bool = False) -> float:
    """Wall (or process-CPU) seconds of a run, optionally less its evaluation episodes."""
    if cpu:
        return sample.cpu_seconds - (sample.eval_cpu_seconds if exclude_eval else 0.0)
    return sample.seconds - (sample.eval_seconds if exclude_eval else 0.0)


def median_rate(
    samples: list[Sample], steps: int, cpu: bool = False, exclude_eval: bool = False
) -> float:
    """Training env steps per (wall or CPU) second at the median time."""
    return steps / statistics.median(seconds_of(s, cpu, exclude_eval) for s in samples)


def best_rate(samples: list[Sample], steps: int) -> float:
    """Training env steps per wall second at the fastest run."""
    return steps / min(s.seconds for s in samples)


def overhead(rate: float, baseline_rate: float) -> float:
    """Extra time per training env step relative to the baseline, in percent."""
    return (baseline_rate / rate - 1.0) * 100.0


def paired_overheads(samples: list[Sample], baseline: list[Sample]) -> list[float]:
    """Per-round wall-time overhead (against the baseline's run in the same round), in percent."""
    return [(s.seconds / b.seconds - 1.0) * 100.0 for s, b in zip(samples, baseline, strict=True)]


def parity(samples: dict[str, list[Sample]]) -> float | None:
    """Max |difference| of final Q-network parameters between (a') and (b), or None."""
    if BASELINE_KEY not in samples or "b_triad" not in samples:
        return None
    first = samples[BASELINE_KEY][0].final_parameters
    second = samples["b_triad"][0].final_parameters
    assert first is not None and second is not None
    return float(np.max(np.abs(first - second)))


def summarise_variant(
    runs: list[Sample], base: list[Sample], default: list[Sample], steps: int
) -> dict[str, Any]:
    """One variant's timings, rates and overheads (wall and CPU) against (a') and (a)."""
    rate = median_rate(runs, steps)
    cpu_rate = median_rate(runs, steps, cpu=True)
    return {
        "seconds": [s.seconds for s in runs],
        "cpu_seconds": [s.cpu_seconds for s in runs],
        "median_steps_per_s": rate,
        "best_steps_per_s": best_rate(runs, steps),
        "median_steps_per_cpu_s": cpu_rate,
        "overhead_vs_a_nstep_pct": overhead(rate, median_rate(base, steps)),
        "overhead_vs_a_default_pct": overhead(rate, median_rate(default, steps)),
        "cpu_overhead_vs_a_nstep_pct": overhead(cpu_rate, median_rate(base, steps, cpu=True)),
        "paired_overhead_vs_a_nstep_pct": paired_overheads(runs, base),
    }


def summarise_eval(runs: list[Sample], base: list[Sample], steps: int) -> dict[str, Any]:
    """The evaluation share of (c)'s runs, and (c)'s rates and overheads without it."""
    rate = median_rate(runs, steps, exclude_eval=True)
    cpu_rate = median_rate(runs, steps, cpu=True, exclude_eval=True)
    return {
        "eval_seconds": [s.eval_seconds for s in runs],
        "eval_cpu_seconds": [s.eval_cpu_seconds for s in runs],
        "eval_steps": [s.eval_steps for s in runs],
        "eval_episodes": [s.eval_episodes for s in runs],
        "median_steps_per_s_excluding_eval": rate,
        "median_steps_per_cpu_s_excluding_eval": cpu_rate,
        "overhead_excluding_eval_vs_a_nstep_pct": overhead(rate, median_rate(base, steps)),
        "cpu_overhead_excluding_eval_vs_a_nstep_pct": overhead(
            cpu_rate, median_rate(base, steps, cpu=True)
        ),
    }


def summarise(
    chosen: list[Variant], samples: dict[str, list[Sample]], steps: int
) -> dict[str, dict[str, Any]]:
    """Per variant: label, buffer, timings, rates and overheads (plus evaluation for (c))."""
    base, default = samples[BASELINE_KEY], samples["a_default"]
    summary: dict[str, dict[str, Any]] = {}
    for variant in chosen:
        runs = samples[variant.key]
        summary[variant.key] = {"label": variant.label, "replay_buffer": variant.replay}
        summary[variant.key] |= summarise_variant(runs, base, default, steps)
        if any(s.eval_episodes for s in runs):
            summary[variant.key] |= summarise_eval(runs, base, steps)
    return summary


def speed_table(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> Table:
    """Median and best training env steps/s per variant, with overheads in percent."""
    table = Table(title=f"DQN on {ENV_ID}, {args.steps:,} training env steps per run")
    columns = (
        ("variant", "left"),
        ("replay buffer", "left"),
        ("median steps/s", "right"),
        ("best steps/s", "right"),
        ("vs (a')", "right"),
        ("round range", "right"),
        ("vs (a)", "right"),
        ("steps/CPU-s", "right"),
        ("CPU vs (a')", "right"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in summary.values():
        paired = row["paired_overhead_vs_a_nstep_pct"]
        table.add_row(
            row["label"],
            row["replay_buffer"],
            f"{row['median_steps_per_s']:,.0f}",
            f"{row['best_steps_per_s']:,.0f}",
            f"{row['overhead_vs_a_nstep_pct']:+.1f} %",
            f"{min(paired):+.0f}..{max(paired):+.0f} %",
            f"{row['overhead_vs_a_default_pct']:+.1f} %",
            f"{row['median_steps_per_cpu_s']:,.0f}",
            f"{row['cpu_overhead_vs_a_nstep_pct']:+.1f} %",
        )
    return table


def eval_lines(summary: dict[str, dict[str, Any]]) -> list[str]:
    """What the evaluation episodes of (c) cost, and (c)'s rate without them."""
    row = summary.get("c_full")
    if row is None or "eval_seconds" not in row:
        return []
    return [
        f"(c) evaluation per run (medians): {statistics.median(row['eval_episodes']):.0f} "
        f"episodes, {statistics.median(row['eval_steps']):,.0f} extra env steps (not counted "
        f"as training steps), {statistics.median(row['eval_seconds']):.2f} s",
        f"(c) without the evaluation time: "
        f"{row['median_steps_per_s_excluding_eval']:,.0f} steps/s "
        f"({row['overhead_excluding_eval_vs_a_nstep_pct']:+.1f} % vs (a')), "
        f"{row['median_steps_per_cpu_s_excluding_eval']:,.0f} steps/CPU-s "
        f"({row['cpu_overhead_excluding_eval_vs_a_nstep_pct']:+.1f} % vs (a'))",
    ]


def verdict_line(summary: dict[str, dict[str, Any]], max_diff: float | None) -> str:
    """(b)'s overhead against the target, and the parameter parity of (a') and (b)."""
    parts = []
    if "b_triad" in summary:
        row = summary["b_triad"]
        worst = max(row["overhead_vs_a_nstep_pct"], row["cpu_overhead_vs_a_nstep_pct"])
        ok = "[green]within[/]" if worst <= TARGET_OVERHEAD else "[red]beyond[/]"
        parts.append(
            f"(b) vs (a'): {row['overhead_vs_a_nstep_pct']:+.1f} % wall, "
            f"{row['cpu_overhead_vs_a_nstep_pct']:+.1f} % CPU ({ok} the "
            f"{TARGET_OVERHEAD:g} % target)"
        )
    if max_diff is not None:
        parts.append(f"max |theta(a') - theta(b)| after training: {max_diff:.3g}")
    return "; ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="training env steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all variants")
    parser.add_argument("--log-every", type=int, default=1_000, help="(c)'s logging period")
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=1_500,
        help="untimed run of each variant first (0: none)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, args.log_every) < 1 or args.warmup_steps < 0:
        parser.error("--steps, --repeats and --log-every must be >= 1, --warmup-steps >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Check the settings agree, warm up, time the interleaved rounds, print (and save) figures."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    agent = agent_spec(eval_episodes=1)
    chosen = variants(args.log_every)
    check_same_settings(agent)
    load_before = os.getloadavg()
    if args.warmup_steps:
        run_repeats(chosen, agent, args.warmup_steps, repeats=1)
    samples = run_repeats(chosen, agent, args.steps, args.repeats)
    summary = summarise(chosen, samples, args.steps)
    max_diff = parity(samples)
    facts = machine_facts(
        load_average_before=tuple(round(x, 2) for x in load_before),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        torch=torch.__version__,
        stable_baselines3=stable_baselines3.__version__,
        gymnasium=gym.__version__,
    )

    console = Console(width=max(Console().width, 132))
    console.print(speed_table(summary, args))
    for line in [*eval_lines(summary), verdict_line(summary, max_diff)]:
        console.print(line)
    console.print(
        "overheads: extra time per training env step, median vs median; 'round range' is the "
        "range of the same-round wall ratios to (a'); (c) logs every --log-every steps with "
        "1 evaluation episode"
    )
    console.print(facts_table(facts))
    if args.json is not None:
        write_json(args, agent, summary, max_diff, facts)
        console.print(f"wrote {args.json}")
    return 0


def write_json(
    args: argparse.Namespace,
    agent: DQNAgentSpec,
    summary: dict[str, dict[str, Any]],
    max_diff: float | None,
    facts: dict[str, Any],
) -> None:
    """Write settings, every timing, rates, overheads, the parity check and machine facts."""
    report = {
        "benchmark": "sb3_dqn_cartpole",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {
            "env": ENV_ID,
            "seed": SEED,
            "steps": args.steps,
            "repeats": args.repeats,
            "log_every": args.log_every,
            "warmup_steps": args.warmup_steps,
            "agent": agent.model_dump(),
        },
        "baseline": BASELINE_KEY,
        "variants": summary,
        "max_abs_parameter_difference_a_nstep_vs_b": max_diff,
        "machine": facts,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
