"""What both deep backends share: envs, probe states, bootstrap targets and the trace they return.

The outcome classes follow van Hasselt et al. (2018): a seed *soft-diverges*
when its estimates exceed the largest realisable return, R_max / (1 - gamma)
(100 with rewards clipped to [-1, 1] and gamma = 0.99); it *recovers* when
they come back within the bound by the end; it *hard-diverges* when the loss
or parameters become non-finite (or explode past the hard threshold), which
ends the seed's training at that step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import rlharness_envs  # noqa: F401 (registers the triad/* ids)
from rlharness.agents.deep.diagnostics import FEATURE_METRICS
from rlharness.agents.deep.overestimation import GREEDY_METRICS
from rlharness.environments import register_optional_envs
from rlharness.live import RecordSink
from rlharness.outcomes import Outcome
from rlharness.spec import DeepAgentSpec, EnvSpec

METRICS = (
    "eval_return",
    "probe_max_abs_q",
    "probe_mean_q",
    "batch_max_abs_q",
    "td_error_mean",
    "td_error_abs_mean",
    "loss",
    "param_norm",
    "exploration_rate",
    *GREEDY_METRICS,
    *FEATURE_METRICS,
)
"""The columns a deep agent logs every ``run.log_every`` env steps, besides seed and step.

The `GREEDY_METRICS` come from the evaluation episodes (`overestimation`); the
rllib backend does not measure them and logs NaN. The `FEATURE_METRICS` (early warnings,
`diagnostics`) are the fleet's and sb3's; the rllib backend logs NaN."""

EVAL_SEED_OFFSET = 1_000_003
"""The evaluation env's seed is the training seed plus this, so the two streams differ."""


@dataclass
class DeepTrace:
    """One seed's log: a record per logged step (``step`` plus `METRICS`) and how it ended.

    ``networks`` holds the seed's saved networks in its backend's format, file name -> bytes:
    ``final.<ext>`` (the network when training ended, at the last log or at hard divergence)
    and, with ``run.checkpoint_every``, ``step<N>.<ext>`` (`checkpoint_due`).
    """

    records: list[dict[str, float]] = field(default_factory=list)
    hard_divergence_step: int | None = None
    hard_divergence_reason: str | None = None
    networks: dict[str, bytes] = field(default_factory=dict)
    on_record: RecordSink | None = field(default=None, compare=False, repr=False)

    def log(self, record: dict[str, float]) -> None:
        """Keep ``record`` and pass it to ``on_record`` (a live observer) as it is logged."""
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)


def checkpoint_due(step: int, previous: int, every: int | None) -> bool:
    """Whether a checkpoint is due at a log at ``step``: steps ``previous`` + 1 .. ``step``
    include a multiple of ``every`` (None: checkpoints are off)."""
    return every is not None and step > 0 and step // every > previous // every


def make_env(env: EnvSpec, reward_clip: float | None) -> gym.Env[Any, Any]:
    """The Gymnasium env of the spec, with rewards clipped to [-c, c] when asked."""
    register_optional_envs(env.id, "env")
    made = gym.make(env.id, **env.kwargs)
    if reward_clip is not None:
        bound = float(reward_clip)
        made = gym.wrappers.TransformReward(made, partial(_clip, bound=bound))
    return made


def _clip(reward: float, bound: float) -> float:
    """A reward clipped to [-bound, bound] (plain floats: cheaper than NumPy per step)."""
    return min(max(float(reward), -bound), bound)


def probe_observations(env: EnvSpec, count: int, seed: int) -> np.ndarray:
    """``count`` observations visited by a uniform random policy, the fixed set for max |Q|."""
    register_optional_envs(env.id, "env")
    probe_env = gym.make(env.id, **env.kwargs)
    probe_env.action_space.seed(seed)
    observation, _ = probe_env.reset(seed=seed)
    observations: list[np.ndarray] = []
    while len(observations) < count:
        observations.append(np.asarray(observation, dtype=np.float32))
        observation, _, terminated, truncated, _ = probe_env.step(probe_env.action_space.sample())
        if terminated or truncated:
            observation, _ = probe_env.reset()
    probe_env.close()
    return np.stack(observations)


def soft_bound(agent: DeepAgentSpec, threshold: float | None) -> float:
    """The soft bound: the spec's threshold, else R_max / (1 - gamma) with R_max = the clip."""
    if threshold is not None:
        return threshold
    if agent.reward_clip is None:
        raise ValueError("needs reward_clip or diagnostics.soft_divergence_threshold")
    return agent.reward_clip / (1.0 - agent.gamma)


ONLINE_BOOTSTRAP = ("q_learning", "double_q", "inverse_double_q")
"""The targets that need the online network's values at the next state."""


def bootstrap_values(
    target: str, online_next: torch.Tensor | None, target_next: torch.Tensor | None
) -> torch.Tensor:
    """The bootstrap value of the next state under each of the four targets (van Hasselt 2018).

    ``online_next`` and ``target_next`` are Q(s', .) of the online and the
    target network, shape [batch, actions] (None where the target does not
    need them); the result has shape [batch, 1].
        q_learning:        max_a Q_online(s', a)
        target_q:          max_a Q_target(s', a)
        double_q:          Q_target(s', argmax_a Q_online(s', a))
        inverse_double_q:  Q_online(s', argmax_a Q_target(s', a))
    """
    if target == "q_learning":
        assert online_next is not None
        return online_next.max(dim=1, keepdim=True).values
    assert target_next is not None
    if target == "target_q":
        return target_next.max(dim=1, keepdim=True).values
    assert online_next is not None
    if target == "double_q":
        return target_next.gather(1, online_next.argmax(dim=1, keepdim=True))
    if target == "inverse_double_q":
        return online_next.gather(1, target_next.argmax(dim=1, keepdim=True))
    raise ValueError(f"unknown bootstrap target {target!r}")


def classify(trace: DeepTrace, bound: float) -> tuple[Outcome, int | None]:
    """The seed's outcome and the first logged step at which max |Q| exceeded ``bound``."""
    beyond = [r["step"] for r in trace.records if r["probe_max_abs_q"] > bound]
    first_beyond = int(beyond[0]) if beyond else None
    if trace.hard_divergence_step is not None:
        return Outcome.HARD_DIVERGED, first_beyond
    if not beyond:
        return Outcome.STABLE, None
    if trace.records[-1]["probe_max_abs_q"] > bound:
        return Outcome.SOFT_DIVERGED, first_beyond
    return Outcome.RECOVERED, first_beyond


def hard_divergence(
    loss_finite: bool, parameters: torch.Tensor, probe_max_abs_q: float, hard_limit: float
) -> str | None:
    """Why a deep seed hard-diverged at this log, or None: the one check of every deep backend.

    A non-finite loss since the last log, non-finite parameters, a parameter
    beyond ``hard_limit``, or probe max |Q| non-finite or beyond ``hard_limit``,
    in that order.
    """
    if not loss_finite:
        return "non-finite loss"
    if not bool(torch.isfinite(parameters).all()):
        return "non-finite parameters"
    if float(parameters.abs().max()) > hard_limit:
        return "a parameter beyond the hard threshold"
    if not probe_max_abs_q <= hard_limit:
        return "max |Q| non-finite or beyond the hard threshold"
    return None
