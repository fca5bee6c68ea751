"""Aggregate env steps per second of the fleet backend against plain SB3 DQN, seed by seed.

Every variant trains the same DQN (lr 1e-3, replay 50,000, learning_starts
1,000, batch 64, train_freq 4, one gradient step, hard target copy every 500
steps, epsilon 1 -> 0.05 over the first 10 %, MLP [64, 64], gamma 0.99,
Huber loss, grad-norm clip 10, 1-step targets, uniform replay), in the same
process and run:

(a) plain ``stable_baselines3.DQN("MlpPolicy", ...)``, one seed, torch on one thread
    (its fastest: rlharness's SB3 backend pins one), and for reference on two;
(f) ``run_fleet`` with K members (seeds 0..K-1) on CartPole-v1, K = 1, 8, 64, 256, with
    torch on one thread and on two (``--threads``);
(m) the same pair on MinAtar/Breakout-v1 (an MLP on the flattened 10x10x4 frame):
    SB3 one seed, the fleet with 64 members (one thread).

A fleet's timing covers building it (probe states included) and training,
with one greedy evaluation episode per member at the first and last log
(extra env steps, not counted); SB3's covers building the model and
``learn()``. The rate is members x steps / wall seconds. With ``--profile``
a fleet of 64 also runs under cProfile and the time is split by phase.

Run: ``python benchmarks/bench_fleet.py [--steps 10000 --minatar-steps 5000
--members 1 8 64 256 --profile --json PATH]``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import stable_baselines3
import torch
from bench_sb3_dqn import agent_spec, baseline_kwargs
from machine import facts_table, machine_facts
from rich.console import Console
from rich.table import Table
from stable_baselines3 import DQN

from rlharness.agents.deep.fleet.run import Member, run_fleet
from rlharness.environments import register_optional_envs
from rlharness.spec import DQNAgentSpec, EnvSpec

CARTPOLE = "CartPole-v1"
MINATAR = "MinAtar/Breakout-v1"
HARD_LIMIT = 1e10
PHASES = {
    "env stepping": [("envs.py", "step")],
    "acting (forward, exploration)": [("run.py", "act")],
    "replay writes": [("replay.py", "add")],
    "replay sampling (indices, n-step batch)": [
        ("replay.py", "sample_slots"),
        ("replay.py", "batch"),
    ],
    "targets (no-grad forwards)": [("learner.py", "td_targets")],
    "optimiser (clip, fused Adam)": [("learner.py", "adam")],
    "diagnostics (probes, evaluation)": [("run.py", "log")],
}


def time_sb3(env_id: str, agent: DQNAgentSpec, steps: int) -> float:
    """Seconds for plain SB3 DQN: build and learn ``steps`` env steps, seed 0."""
    register_optional_envs(env_id, "env")
    start = time.perf_counter()
    model = DQN("MlpPolicy", gym.make(env_id), **baseline_kwargs(agent))
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start
    if model.env is not None:
        model.env.close()
    return seconds


def time_fleet(env_id: str, agent: DQNAgentSpec, members: int, steps: int) -> float:
    """Seconds for a fleet of ``members`` seeds: build, train ``steps`` env steps, two logs."""
    fleet = [Member(agent, seed, HARD_LIMIT) for seed in range(members)]
    start = time.perf_counter()
    traces = run_fleet(EnvSpec(id=env_id), fleet, steps, steps)
    seconds = time.perf_counter() - start
    if any(trace.hard_divergence_step is not None for trace in traces):
        raise RuntimeError("a fleet member hard-diverged in the benchmark")
    return seconds


def profile_fleet(agent: DQNAgentSpec, members: int, steps: int) -> dict[str, float]:
    """Seconds per phase (cProfile cumulative times) of one fleet run, and the total."""
    profiler = cProfile.Profile()
    profiler.enable()
    start = time.perf_counter()
    run_fleet(
        EnvSpec(id=CARTPOLE), [Member(agent, s, HARD_LIMIT) for s in range(members)], steps, steps
    )
    total = time.perf_counter() - start
    profiler.disable()
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    cumulative: dict[tuple[str, str], float] = {}
    for (filename, _, name), (_, _, _, seconds, _) in table.items():
        key = (Path(filename).name, name)
        cumulative[key] = cumulative.get(key, 0.0) + seconds
    phases: dict[str, float] = {}
    for phase, where in PHASES.items():
        phases[phase] = sum(cumulative.get(place, 0.0) for place in where)
    update = cumulative.get(("learner.py", "update"), 0.0)
    phases["loss forward + backward"] = (
        update - phases["targets (no-grad forwards)"] - phases["optimiser (clip, fused Adam)"]
    )
    phases["other (loop, conversions, target copies)"] = total - sum(phases.values())
    phases["total"] = total
    return phases


def main(argv: list[str] | None = None) -> int:
    """Time SB3 and the fleets in one run; print the rates, ratios, profile and machine facts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="env steps per member")
    parser.add_argument("--minatar-steps", type=int, default=5_000)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--minatar-members", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="fleet threads")
    parser.add_argument("--profile", action="store_true", help="also profile a fleet of 64")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    agent = agent_spec(eval_episodes=1)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    sb3_seconds = time_sb3(CARTPOLE, agent, args.steps)
    sb3_rate = args.steps / sb3_seconds
    rows.append({"variant": "(a) SB3 DQN, 1 seed", "env": CARTPOLE, "members": 1, "threads": 1,
                 "seconds": sb3_seconds, "rate": sb3_rate})  # fmt: skip
    one_member_rate: dict[int, float] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for members in args.members:
            seconds = time_fleet(CARTPOLE, agent, members, args.steps)
            rate = members * args.steps / seconds
            if members == 1:
                one_member_rate[threads] = rate
            rows.append({"variant": f"(f) fleet of {members}", "env": CARTPOLE,
                         "members": members, "threads": threads, "seconds": seconds,
                         "rate": rate, "vs_sb3": rate / sb3_rate})  # fmt: skip
    # SB3 on two threads last: in this process it slowed the two-thread fleets after it by a fifth
    torch.set_num_threads(2)
    seconds = time_sb3(CARTPOLE, agent, args.steps)
    rows.append({"variant": "(a) SB3 DQN, 1 seed", "env": CARTPOLE, "members": 1, "threads": 2,
                 "seconds": seconds, "rate": args.steps / seconds,
                 "vs_sb3": args.steps / seconds / sb3_rate})  # fmt: skip
    torch.set_num_threads(1)
    minatar_sb3 = time_sb3(MINATAR, agent, args.minatar_steps)
    minatar_sb3_rate = args.minatar_steps / minatar_sb3
    rows.append({"variant": "(m) SB3 DQN, 1 seed", "env": MINATAR, "members": 1, "threads": 1,
                 "seconds": minatar_sb3, "rate": minatar_sb3_rate})  # fmt: skip
    members = args.minatar_members
    seconds = time_fleet(MINATAR, agent, members, args.minatar_steps)
    rate = members * args.minatar_steps / seconds
    rows.append({"variant": f"(m) fleet of {members}", "env": MINATAR, "members": members,
                 "threads": 1, "seconds": seconds, "rate": rate,
                 "vs_sb3": rate / minatar_sb3_rate})  # fmt: skip
    for row in rows:
        single = one_member_rate.get(row["threads"])
        if single is not None and row["variant"].startswith("(f)"):
            row["per_member_rate_vs_fleet_of_1"] = (row["rate"] / row["members"]) / single
    console = Console(width=max(Console().width, 132))
    table = Table(title=f"DQN env steps/s: {args.steps:,} steps per member on {CARTPOLE}, "
                        f"{args.minatar_steps:,} on {MINATAR}")  # fmt: skip
    for name in (
        "variant",
        "env",
        "threads",
        "wall s",
        "env steps/s",
        "vs SB3",
        "per-member rate vs fleet of 1",
    ):
        table.add_column(name, justify="left" if name in ("variant", "env") else "right")
    for row in rows:
        per_member = row.get("per_member_rate_vs_fleet_of_1")
        table.add_row(
            row["variant"], row["env"], str(row["threads"]), f"{row['seconds']:.1f}",
            f"{row['rate']:,.0f}",
            f"{row['vs_sb3']:.1f}x" if "vs_sb3" in row else "1.0x",
            f"{per_member:.3f}" if per_member is not None else "",
        )  # fmt: skip
    console.print(table)
    profile = None
    if args.profile:
        profile = profile_fleet(agent, 64, args.steps)
        shares = Table(
            title="Fleet of 64 on CartPole-v1, one thread, under cProfile: where the time goes"
        )
        shares.add_column("phase")
        shares.add_column("seconds", justify="right")
        shares.add_column("share", justify="right")
        for phase, seconds in profile.items():
            shares.add_row(phase, f"{seconds:.2f}", f"{100 * seconds / profile['total']:.0f} %")
        console.print(shares)
    facts = machine_facts(
        load_average_before=tuple(round(x, 2) for x in load_before),
        torch_threads="as in the table",
        torch=torch.__version__,
        stable_baselines3=stable_baselines3.__version__,
        gymnasium=gym.__version__,
    )
    console.print(facts_table(facts))
    if args.json is not None:
        report = {
            "benchmark": "fleet_dqn",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "settings": {
                "steps": args.steps,
                "minatar_steps": args.minatar_steps,
                "agent": agent.model_dump(),
            },
            "rows": rows,
            "profile": profile,
            "machine": facts,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
