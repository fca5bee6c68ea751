"""Deep agents (DQN, PQN) as trials: check a grid point's env and backend, then train its seeds.

The sb3 and rllib backends train seeds one by one; the fleet backend trains
all of a grid point's seeds, and those of other grid points with the same
shapes (`fleet_groups`), as members of one fleet (`run_fleet_trials`). PQN
runs on the fleet backend only (`fleet.pqn`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from gymnasium import spaces

from rlharness.agents.deep.common import METRICS, DeepTrace, classify, soft_bound
from rlharness.agents.deep.overestimation import GREEDY_METRICS
from rlharness.environments import instantiate_env
from rlharness.errors import SpecError, short
from rlharness.live import NOBODY, SILENT, Observer, PointObserver
from rlharness.memory import (
    FLOAT32_BYTES,
    RECORD_BYTES,
    available_bytes,
    gib,
    memory_problem,
    mlp_parameters,
    network_bytes,
    rllib_replay_bytes,
    sb3_replay_bytes,
)
from rlharness.runner import TrialConfig, TrialResult
from rlharness.spec import (
    DeepAgentSpec,
    DQNAgentSpec,
    ExperimentSpec,
    PQNAgentSpec,
    RunSpec,
    TriadSpec,
)


def resolve_deep(spec: ExperimentSpec) -> float:
    """Check env, backend and knobs of a DQN or PQN grid point; return its soft-divergence
    bound."""
    where = f"experiment {spec.name}"
    agent = spec.agent
    assert isinstance(agent, DeepAgentSpec)
    problems = []
    if spec.triad != TriadSpec():
        problems.append(
            f"triad: the triad section configures linear learners; a {agent.name} agent sets "
            "its bootstrapping and off-policy knobs in agent"
        )
    env = instantiate_env(spec.env, where)
    actions, observations = env.action_space, env.observation_space
    max_episode_steps = env.spec.max_episode_steps if env.spec is not None else None
    env.close()
    if not isinstance(actions, spaces.Discrete):
        problems.append(
            f"env.id: {agent.name} needs discrete actions; {spec.env.id} has {short(actions)}"
        )
    if not isinstance(observations, spaces.Box):
        problems.append(
            f"env.id: {agent.name} needs Box observations; {spec.env.id} has {short(observations)}"
        )
    if isinstance(agent, PQNAgentSpec):
        problems.extend(_pqn_problems(agent, spec.run))
    elif not problems:
        assert isinstance(actions, spaces.Discrete) and isinstance(observations, spaces.Box)
        memory = _memory_problem(agent, spec.run, observations, int(actions.n), max_episode_steps)
        if memory is not None:
            problems.append(memory)
    if agent.backend == "rllib":
        from rlharness.agents.deep.rllib_dqn import rllib_unsupported

        assert isinstance(agent, DQNAgentSpec)
        problems.extend(rllib_unsupported(agent))
    problems.extend(_device_problems(agent, spec.run))
    if isinstance(agent, DQNAgentSpec):
        problems.extend(_stabiliser_problems(agent))
    try:
        bound = soft_bound(agent, spec.diagnostics.soft_divergence_threshold)
    except ValueError as error:
        problems.append(f"agent.reward_clip: {error}")
        bound = float("nan")
    if problems:
        raise SpecError(where, problems)
    return bound


def _pqn_problems(agent: PQNAgentSpec, run: RunSpec) -> list[str]:
    """A PQN run needs at least one rollout of num_envs * num_steps env steps."""
    rollout = agent.num_envs * agent.num_steps
    if run.steps < rollout:
        return [
            f"run.steps: pqn counts env steps summed over a member's envs and needs at least "
            f"one rollout, num_envs * num_steps = {rollout}; got {run.steps}"
        ]
    return []


def _stabiliser_problems(agent: DQNAgentSpec) -> list[str]:
    """LayerNorm and the L2 penalty are the fleet and sb3 backends'."""
    if agent.backend in ("fleet", "sb3"):
        return []
    problems = []
    if agent.network.layer_norm:
        problems.append(
            f"agent.network.layer_norm: only the fleet and sb3 backends have it, got backend "
            f"'{agent.backend}'; allowed: backend fleet or sb3, or layer_norm false"
        )
    if agent.l2 > 0:
        problems.append(
            f"agent.l2: only the fleet and sb3 backends have it, got backend "
            f"'{agent.backend}'; allowed: backend fleet or sb3, or l2 0"
        )
    return problems


def _device_problems(agent: DeepAgentSpec, run: RunSpec) -> list[str]:
    """``run.device: cuda`` needs the fleet backend and a CUDA device torch can see."""
    if run.device == "cpu":
        return []
    if agent.backend != "fleet":
        return [
            f"run.device: cuda needs agent.backend: fleet; the {agent.backend} backend runs on cpu"
        ]
    import torch

    if not torch.cuda.is_available():
        return ["run.device: cuda is not available to torch on this machine; allowed: cpu"]
    return []


def _memory_problem(
    agent: DQNAgentSpec,
    run: RunSpec,
    observations: spaces.Box,
    n_actions: int,
    max_episode_steps: int | None,
) -> str | None:
    """A message naming the largest consumer if one seed's trial would not fit in memory.

    Seeds train one after another, so one seed's replay buffer, networks,
    probe states and log must fit at once; a fleet holds all its members at once.
    """
    size = int(np.prod(observations.shape))
    observation_bytes = size * np.dtype(observations.dtype).itemsize
    members = run.seeds if agent.backend == "fleet" else 1
    if agent.backend == "fleet":
        from rlharness.agents.deep.fleet.run import fleet_replay_bytes

        replay = fleet_replay_bytes(members, agent, observations, n_actions, max_episode_steps)
    elif agent.backend == "rllib":
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
            members * network_bytes(parameters, agent.batch_size, network.width, network.depth),
        ),
        "agent.probe_states": (
            "probe states",
            members * 2 * agent.probe_states * size * FLOAT32_BYTES,
        ),
        "run.log_every": ("logged rows", members * (run.steps // run.log_every + 2) * RECORD_BYTES),
    }
    largest = max(parts, key=lambda field: parts[field][1])
    what = ", ".join(f"{name} {gib(n_bytes)}" for name, n_bytes in parts.values())
    total = sum(n_bytes for _, n_bytes in parts.values())
    whose = f"a fleet of {members} members" if agent.backend == "fleet" else "one seed"
    return memory_problem(largest, f"{whose} of this {agent.backend} dqn trial ({what})", total)


def run_deep_trial(
    spec: ExperimentSpec,
    seeds: list[int],
    progress: Callable[[int], None] | None,
    point: PointObserver = SILENT,
) -> tuple[pd.DataFrame, pd.DataFrame, float, dict[int, dict[str, bytes]]]:
    """Train each seed in turn; metrics, outcomes, the soft-divergence bound and each seed's
    saved networks (`TrialResult.agents`).

    Each record goes to ``point`` as it is logged."""
    bound = resolve_deep(spec)
    agent = spec.agent
    assert isinstance(agent, DeepAgentSpec)
    if agent.backend == "fleet":
        ((metrics, outcomes, agents),) = _run_fleet([(spec, seeds, bound)], [point])
        if progress is not None:
            progress(len(seeds))
        return metrics, outcomes, bound, agents
    assert isinstance(agent, DQNAgentSpec)
    if agent.backend == "rllib":
        from rlharness.agents.deep.rllib_dqn import run_rllib_dqn as run_seed
    else:
        from rlharness.agents.deep.sb3_dqn import run_sb3_dqn as run_seed
    metrics, outcomes, agents = [], [], {}
    for seed in seeds:
        trace = run_seed(
            agent,
            spec.env,
            seed,
            spec.run.steps,
            spec.run.log_every,
            spec.diagnostics.hard_divergence_threshold,
            spec.run.checkpoint_every,
            point.sink(seed),
        )
        point.finished(seed)
        metrics.append(_metrics_frame(seed, trace))
        outcomes.append(_outcome_record(seed, trace, bound))
        agents[seed] = trace.networks
        if progress is not None:
            progress(1)
    frames = pd.concat(metrics, ignore_index=True), pd.DataFrame.from_records(outcomes)
    return *frames, bound, agents


def is_fleet(config: TrialConfig) -> bool:
    """Whether a trial runs on the fleet backend."""
    agent = config.spec.agent
    return isinstance(agent, DeepAgentSpec) and agent.backend == "fleet"


def fleet_groups(configs: list[TrialConfig]) -> list[list[int]]:
    """Indices of the fleet trials grouped into fleets: same `FleetKey`, in first-seen order.

    A group is split where its members' memory (`resolve_deep`'s estimate per
    grid point, summed) would pass what this machine has available.
    """
    from rlharness.agents.deep.fleet import pqn
    from rlharness.agents.deep.fleet.run import fleet_key

    groups: dict[object, list[list[int]]] = {}
    used: dict[object, int] = {}
    budget = available_bytes()
    for index, config in enumerate(configs):
        if not is_fleet(config):
            continue
        spec = config.spec
        agent = spec.agent
        run = spec.run
        key: tuple[str, tuple[object, ...]]  # the agent's name first: PQN and DQN never share
        if isinstance(agent, PQNAgentSpec):
            key = (
                agent.name,
                pqn.fleet_key(
                    spec.env, agent, run.steps, run.log_every, run.device, run.checkpoint_every
                ),
            )
        else:
            assert isinstance(agent, DQNAgentSpec)
            key = (
                agent.name,
                fleet_key(
                    spec.env, agent, run.steps, run.log_every, run.device, run.checkpoint_every
                ),
            )
        chunks = groups.setdefault(key, [[]])
        need = _fleet_bytes(spec, len(config.seeds))
        if chunks[-1] and budget is not None and used[key] + need > budget:
            chunks.append([])
            used[key] = 0
        chunks[-1].append(index)
        used[key] = used.get(key, 0) + need
    return [chunk for chunks in groups.values() for chunk in chunks]


def run_fleet_trials(
    configs: list[TrialConfig],
    progress: Callable[[int], None] | None = None,
    observer: Observer = NOBODY,
) -> list[TrialResult]:
    """Train every seed of these fleet trials as members of one fleet; a result per trial.

    Each record goes to ``observer`` as it is logged."""
    points = [(config.spec, list(config.seeds), resolve_deep(config.spec)) for config in configs]
    frames = _run_fleet(points, [PointObserver(observer, config.variant) for config in configs])
    if progress is not None:
        progress(sum(len(config.seeds) for config in configs))
    return [
        TrialResult(config, metrics, outcomes, bound, agents=agents)
        for config, (metrics, outcomes, agents), (_, _, bound) in zip(
            configs, frames, points, strict=True
        )
    ]


def _run_fleet(
    points: list[tuple[ExperimentSpec, list[int], float]], observers: list[PointObserver]
) -> list[tuple[pd.DataFrame, pd.DataFrame, dict[int, dict[str, bytes]]]]:
    """One fleet of every seed of every point; metrics, outcomes and saved networks per point."""
    from rlharness.agents.deep.fleet.pqn import PQNMember, run_pqn_fleet
    from rlharness.agents.deep.fleet.run import Member, run_fleet

    first = points[0][0]
    env, run = first.env, first.run
    if isinstance(first.agent, PQNAgentSpec):
        pqn_members = [
            PQNMember(
                spec.agent, seed, spec.diagnostics.hard_divergence_threshold, point.sink(seed)
            )
            for (spec, seeds, _), point in zip(points, observers, strict=True)
            if isinstance(spec.agent, PQNAgentSpec)
            for seed in seeds
        ]
        traces = iter(
            run_pqn_fleet(
                env, pqn_members, run.steps, run.log_every, run.device, run.checkpoint_every
            )
        )
    else:
        members = [
            Member(spec.agent, seed, spec.diagnostics.hard_divergence_threshold, point.sink(seed))
            for (spec, seeds, _), point in zip(points, observers, strict=True)
            if isinstance(spec.agent, DQNAgentSpec)
            for seed in seeds
        ]
        traces = iter(
            run_fleet(env, members, run.steps, run.log_every, run.device, run.checkpoint_every)
        )
    frames = []
    for (_, seeds, bound), point in zip(points, observers, strict=True):
        metrics, outcomes, agents = [], [], {}
        for seed in seeds:
            point.finished(seed)
            trace = next(traces)
            metrics.append(_metrics_frame(seed, trace))
            outcomes.append(_outcome_record(seed, trace, bound))
            agents[seed] = trace.networks
        frames.append(
            (
                pd.concat(metrics, ignore_index=True),
                pd.DataFrame.from_records(outcomes),
                agents,
            )
        )
    return frames


def _fleet_bytes(spec: ExperimentSpec, members: int) -> int:
    """A lower bound of a fleet point's memory: its members' replay rings (PQN has none)."""
    from rlharness.agents.deep.fleet.envs import describe
    from rlharness.agents.deep.fleet.run import fleet_replay_bytes

    agent = spec.agent
    if isinstance(agent, PQNAgentSpec):
        return 0
    assert isinstance(agent, DQNAgentSpec)
    facts = describe(spec.env)
    return fleet_replay_bytes(
        members,
        agent,
        facts["observation_space"],
        int(facts["action_space"].n),
        facts["max_episode_steps"],
    )


def _metrics_frame(seed: int, trace: DeepTrace) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(trace.records, columns=["step", *METRICS])
    frame.insert(0, "seed", seed)
    return frame


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
        "final_eval_return": _last_measured(history, "eval_return"),
        "final_probe_max_abs_q": float(final["probe_max_abs_q"]),
        "peak_probe_max_abs_q": float(history["probe_max_abs_q"].max()),
        **{f"final_{name}": _last_measured(history, name) for name in GREEDY_METRICS},
    }


def _last_measured(history: pd.DataFrame, column: str) -> float:
    """The column's last non-NaN value (a hard-diverged seed's last log has none), else NaN."""
    measured = history[column].dropna() if column in history.columns else pd.Series([], dtype=float)
    return float(measured.iloc[-1]) if len(measured) else float("nan")
