"""DQN agents as trials: check a grid point's env and backend, then train its seeds one by one."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from gymnasium import spaces

from rlharness.agents.deep.common import METRICS, DeepTrace, classify, soft_bound
from rlharness.environments import instantiate_env
from rlharness.errors import SpecError
from rlharness.spec import DQNAgentSpec, ExperimentSpec, TriadSpec


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
    if not isinstance(env.action_space, spaces.Discrete):
        problems.append(f"env.id: dqn needs discrete actions; {spec.env.id} has {env.action_space}")
    if not isinstance(env.observation_space, spaces.Box):
        problems.append(
            f"env.id: dqn needs Box observations; {spec.env.id} has {env.observation_space}"
        )
    env.close()
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
