"""DQN agents as trials: check a grid point's env and backend, then train its seeds one by one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from gymnasium import spaces

from rlharness.agents.deep.common import METRICS, DeepTrace, classify, soft_bound
from rlharness.environments import instantiate_env
from rlharness.errors import SpecError, short
from rlharness.memory import (
    FLOAT32_BYTES,
    RECORD_BYTES,
    gib,
    memory_problem,
    mlp_parameters,
    network_bytes,
    rllib_replay_bytes,
    sb3_replay_bytes,
)
from rlharness.spec import DQNAgentSpec, ExperimentSpec, RunSpec, TriadSpec


def resolve_deep(spec: ExperimentSpec) -> float:
    """Check env, backend and knobs of a DQN grid point; return its soft-divergence bound."""
    where = f"experiment {spec.name}"
    agent = spec.agent
    assert isinstance(agent, DQNAgentSpec)
    problems = []
    if spec.triad != TriadSpec():
        problems.append(
            "triad: the triad section configures linear learners; a dqn agent sets "
            "bootstrap_target, n_step, target_update_period and replay in agent"
        )
    env = instantiate_env(spec.env, where)
    actions, observations = env.action_space, env.observation_space
    env.close()
    if not isinstance(actions, spaces.Discrete):
        problems.append(f"env.id: dqn needs discrete actions; {spec.env.id} has {short(actions)}")
    if not isinstance(observations, spaces.Box):
        problems.append(
            f"env.id: dqn needs Box observations; {spec.env.id} has {short(observations)}"
        )
    if not problems:
        assert isinstance(actions, spaces.Discrete) and isinstance(observations, spaces.Box)
        memory = _memory_problem(agent, spec.run, observations, int(actions.n))
        if memory is not None:
            problems.append(memory)
    if agent.backend == "rllib":
        from rlharness.agents.deep.rllib_dqn import rllib_unsupported

        problems.extend(rllib_unsupported(agent))
    try:
        bound = soft_bound(agent, spec.diagnostics.soft_divergence_threshold)
    except ValueError as error:
        problems.append(f"agent.reward_clip: {error}")
        bound = float("nan")
    if problems:
        raise SpecError(where, problems)
    return bound


def _memory_problem(
    agent: DQNAgentSpec, run: RunSpec, observations: spaces.Box, n_actions: int
) -> str | None:
    """A message naming the largest consumer if one seed's trial would not fit in memory.

    Seeds train one after another, so one seed's replay buffer, networks,
    probe states and log must fit at once.
    """
    size = int(np.prod(observations.shape))
    observation_bytes = size * np.dtype(observations.dtype).itemsize
    if agent.backend == "rllib":
        replay = rllib_replay_bytes(agent.replay_capacity, observation_bytes)
    else:
        prioritized = agent.prioritized_replay.alpha > 0
        replay = sb3_replay_bytes(agent.replay_capacity, observation_bytes, prioritized)
    network = agent.network
    parameters = mlp_parameters(size, n_actions, network.width, network.depth)
    network_field = (
        "agent.network.width" if network.width >= network.depth else "agent.network.depth"
    )
    parts = {
        "agent.replay_capacity": ("replay buffer", replay),
        network_field: (
            "networks",
            network_bytes(parameters, agent.batch_size, network.width, network.depth),
        ),
        "agent.probe_states": ("probe states", 2 * agent.probe_states * size * FLOAT32_BYTES),
        "run.log_every": ("logged rows", (run.steps // run.log_every + 2) * RECORD_BYTES),
    }
    largest = max(parts, key=lambda field: parts[field][1])
    what = ", ".join(f"{name} {gib(n_bytes)}" for name, n_bytes in parts.values())
    total = sum(n_bytes for _, n_bytes in parts.values())
    return memory_problem(largest, f"one seed of this {agent.backend} dqn trial ({what})", total)


def run_deep_trial(
    spec: ExperimentSpec, seeds: list[int], progress: Callable[[int], None] | None
) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Train each seed in turn; metrics, outcomes and the soft-divergence bound."""
    bound = resolve_deep(spec)
    agent = spec.agent
    assert isinstance(agent, DQNAgentSpec)
    if agent.backend == "rllib":
        from rlharness.agents.deep.rllib_dqn import run_rllib_dqn as run_seed
    else:
        from rlharness.agents.deep.sb3_dqn import run_sb3_dqn as run_seed
    metrics, outcomes = [], []
    for seed in seeds:
        trace = run_seed(
            agent,
            spec.env,
            seed,
            spec.run.steps,
            spec.run.log_every,
            spec.diagnostics.hard_divergence_threshold,
        )
        frame = pd.DataFrame.from_records(trace.records, columns=["step", *METRICS])
        frame.insert(0, "seed", seed)
        metrics.append(frame)
        outcomes.append(_outcome_record(seed, trace, bound))
        if progress is not None:
            progress(1)
    return pd.concat(metrics, ignore_index=True), pd.DataFrame.from_records(outcomes), bound


def _outcome_record(seed: int, trace: DeepTrace, bound: float) -> dict[str, object]:
    outcome, soft_step = classify(trace, bound)
    history = pd.DataFrame.from_records(trace.records)
    final = history.iloc[-1]
    return {
        "seed": seed,
        "outcome": str(outcome),
        "hard_divergence_step": trace.hard_divergence_step,
        "hard_divergence_reason": trace.hard_divergence_reason,
        "soft_divergence_step": soft_step,
        "last_logged_step": int(final["step"]),
        "final_eval_return": float(history["eval_return"].dropna().iloc[-1])
        if history["eval_return"].notna().any()
        else float("nan"),
        "final_probe_max_abs_q": float(final["probe_max_abs_q"]),
        "peak_probe_max_abs_q": float(history["probe_max_abs_q"].max()),
    }
