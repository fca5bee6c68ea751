"""The RLlib backend: RLlib's DQN on the new API stack, with the four bootstrap targets.

RLlib (ray 2.60) runs the agent: a `DefaultDQNTorchRLModule` (a plain MLP,
no dueling head, no distributional atoms, no noisy layers), its
`SingleAgentEnvRunner` with epsilon-greedy exploration, its prioritised
episode replay buffer and its torch DQN learner (Huber loss with delta 1,
Adam, gradient clipping by global norm, target-network updates).
`TriadDQNTorchLearner` changes only which network picks and which evaluates
the next action of the bootstrap target, and records per-update statistics.

How the spec's knobs map onto RLlib's (`rllib_unsupported` lists the
settings this backend refuses):

- exact: ``gamma``; ``learning_rate`` (Adam, eps 1e-8); ``batch_size``;
  ``max_grad_norm`` (global norm); ``network`` (``fcnet_hiddens`` =
  [width] * depth with ReLU, a linear Q head); ``reward_clip`` (the env
  creator applies `common.make_env`); ``exploration`` (linear from the
  initial to the final epsilon over ``fraction * steps`` env steps);
  ``bootstrap_target`` (all four, see `TriadDQNTorchLearner`);
  ``prioritized_replay`` (priorities |delta| + epsilon, alpha = 0 uniform);
  ``learning_starts`` (the first update follows the first rollout that ends
  beyond ``learning_starts`` steps, as in stable-baselines3);
  ``train_frequency`` and ``gradient_steps`` (a rollout fragment of
  ``train_frequency`` env steps, then ``gradient_steps`` updates; see
  `_rollout_length` for n_step > train_frequency); ``target_update_tau``.
- approximate: ``replay_capacity`` (RLlib evicts whole episodes, oldest
  first, once it holds more than ``replay_capacity`` steps);
  ``target_update_period`` (the period is exact, but RLlib counts it from
  the first update and updates the target right after an update, where
  stable-baselines3 does so at multiples of the period, before the update;
  with several gradient steps per training step the copy follows the first
  of them); ``n_step`` > 1 (the buffer never starts a return within n - 1
  steps of an episode's end, where stable-baselines3 sums fewer steps); an
  ``initial_epsilon`` below 1 (RLlib explores epsilon-greedily during the
  first ``learning_starts`` steps, stable-baselines3 uniformly at random).

Speed (benchmarks/bench_rllib_dqn.py): torch on one thread, a local learner
and env runner, the prioritised buffer also for uniform replay, and
``train()`` calls that each cover a whole logging interval.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.algorithms.dqn.dqn_learner import (
    QF_NEXT_PREDS,
    QF_PREDS,
    QF_TARGET_NEXT_PREDS,
)
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)
from ray.rllib.utils.replay_buffers.prioritized_episode_buffer import (
    PrioritizedEpisodeReplayBuffer,
)
from ray.rllib.utils.typing import TensorType
from ray.tune.registry import register_env
from torch import nn

from rlharness import ray_env
from rlharness.agents.deep.common import (
    EVAL_SEED_OFFSET,
    METRICS,
    DeepTrace,
    bootstrap_values,
    checkpoint_due,
    hard_divergence,
    make_env,
    probe_observations,
)
from rlharness.agents.deep.diagnostics import FEATURE_METRICS
from rlharness.agents.deep.overestimation import GREEDY_METRICS
from rlharness.live import RecordSink
from rlharness.spec import DQNAgentSpec, EnvSpec

ENV_NAME = "rlharness-dqn-env"
"""The name under which the env creator is registered with RLlib."""


PICK_AND_EVALUATE: dict[str, tuple[str, str]] = {
    "q_learning": (QF_NEXT_PREDS, QF_NEXT_PREDS),
    "target_q": (QF_TARGET_NEXT_PREDS, QF_TARGET_NEXT_PREDS),
    "double_q": (QF_NEXT_PREDS, QF_TARGET_NEXT_PREDS),
    "inverse_double_q": (QF_TARGET_NEXT_PREDS, QF_NEXT_PREDS),
}
"""Per bootstrap target: whose Q(s', .) picks a' (argmax) and whose Q(s', a') is the value.

``QF_NEXT_PREDS`` holds the online network's Q(s', .), ``QF_TARGET_NEXT_PREDS``
the target network's.
"""


class TriadDQNTorchLearner(DQNTorchLearner):
    """RLlib's torch DQN learner with one of four bootstrap targets (van Hasselt et al. 2018).

    RLlib's loss with ``double_q=True`` bootstraps on
    ``fwd_out[QF_TARGET_NEXT_PREDS]`` at the argmax of ``fwd_out[QF_NEXT_PREDS]``.
    Putting the networks of `PICK_AND_EVALUATE` under those two keys gives
    each target; everything else (Huber loss, importance weights, n-step
    discount, TD errors for the priorities) is RLlib's own. The target is
    read from ``learner_config_dict["bootstrap_target"]``.

    After each update the learner keeps (env step, loss, max |Q(s, .)| over
    the batch, mean TD error, mean |TD error|), with the TD error
    ``y - Q(s, a)`` recomputed from `common.bootstrap_values`; the run
    collects them with `drain_statistics`.
    """

    def build(self) -> None:
        """Build RLlib's learner and read the bootstrap target."""
        super().build()
        self.bootstrap_target: str = self.config.learner_config_dict["bootstrap_target"]
        self.update_statistics: list[list[float]] = []
        self._env_step = 0

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        """Remember the env step of the coming update."""
        super().before_gradient_based_update(timesteps=timesteps)
        self._env_step = int(timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))

    def compute_loss_for_module(
        self, *, module_id: str, config: Any, batch: dict[str, Any], fwd_out: dict[str, Any]
    ) -> TensorType:
        """RLlib's DQN loss with the configured bootstrap target."""
        pick, evaluate = PICK_AND_EVALUATE[self.bootstrap_target]
        remapped = {
            **fwd_out,
            QF_NEXT_PREDS: fwd_out[pick],
            QF_TARGET_NEXT_PREDS: fwd_out[evaluate],
        }
        loss = super().compute_loss_for_module(
            module_id=module_id, config=config, batch=batch, fwd_out=remapped
        )
        self.update_statistics.append(self._statistics(loss, config.gamma, batch, fwd_out))
        return loss

    def _statistics(
        self, loss: TensorType, gamma: float, batch: dict[str, Any], fwd_out: dict[str, Any]
    ) -> list[float]:
        with torch.no_grad():
            q_values = fwd_out[QF_PREDS]
            chosen = q_values.gather(1, batch[Columns.ACTIONS].long().unsqueeze(1))
            bootstrap = bootstrap_values(
                self.bootstrap_target, fwd_out[QF_NEXT_PREDS], fwd_out[QF_TARGET_NEXT_PREDS]
            )
            not_done = 1.0 - batch[Columns.TERMINATEDS].float().unsqueeze(1)
            discounts = (gamma ** batch["n_step"]).unsqueeze(1)
            td_errors = batch[Columns.REWARDS].unsqueeze(1) + not_done * discounts * bootstrap
            td_errors = td_errors - chosen
            values = torch.stack(
                [
                    torch.as_tensor(loss).detach(),
                    q_values.abs().max(),
                    td_errors.mean(),
                    td_errors.abs().mean(),
                ]
            )
        return [float(self._env_step), *values.tolist()]

    def drain_statistics(self) -> list[list[float]]:
        """The statistics of the updates since the last call, oldest first."""
        drained, self.update_statistics = self.update_statistics, []
        return drained


class EpsilonPrioritizedEpisodeReplayBuffer(PrioritizedEpisodeReplayBuffer):
    """RLlib's prioritised episode buffer with priorities |delta| + epsilon (Schaul et al. 2016).

    RLlib's own buffer sets p = max(|delta|, 1e-12); adding ``epsilon`` makes
    it the rule of the spec (and of the sb3 backend's buffer). With alpha = 0
    every p^alpha is 1, so sampling is uniform, the importance weights are 1
    and the priority updates are skipped. (RLlib's uniform `EpisodeReplayBuffer`
    takes about 1.6 times as long per batch here, and with n_step > 1 it
    bootstraps with gamma^n even where fewer than n steps remained.)
    """

    def __init__(
        self, *args: Any, alpha: float = 1.0, epsilon: float = 1e-6, **kwargs: Any
    ) -> None:
        super().__init__(*args, alpha=alpha, **kwargs)
        self.priority_exponent = alpha
        self.priority_epsilon = epsilon

    def update_priorities(self, priorities: np.ndarray, module_id: str | None = None) -> None:
        """Set p_i = |delta_i| + epsilon for the transitions of the last sample."""
        if self.priority_exponent == 0:
            return
        super().update_priorities(np.abs(priorities) + self.priority_epsilon, module_id)


def _rollout_length(agent: DQNAgentSpec) -> int:
    """Env steps per training step: ``train_frequency``, times k if n_step needs more.

    RLlib requires a rollout fragment of at least ``n_step`` steps; then the
    fragment is the smallest multiple k of ``train_frequency`` that is, and
    k * ``gradient_steps`` updates follow it (the same ratio, coarser interleaving).
    """
    return agent.train_frequency * math.ceil(agent.n_step / agent.train_frequency)


def rllib_unsupported(agent: DQNAgentSpec) -> list[str]:
    """One message per setting the rllib backend cannot honour exactly (empty: all supported).

    RLlib updates the target network only right after an update, so at most
    once per rollout fragment: the period must be a multiple of the fragment,
    or shorter than it with a plain copy (tau = 1), which leaves the target
    equal to the online network at the start of every training step, as in
    stable-baselines3.
    """
    problems = []
    rollout = _rollout_length(agent)
    period = agent.target_update_period
    if period % rollout != 0:
        if period > rollout:
            problems.append(
                f"agent.target_update_period: the rllib backend updates the target network "
                f"only after a training step, every {rollout} env steps here, so the period "
                f"must be a multiple of {rollout}; got {period} (use backend: sb3)"
            )
        elif agent.target_update_tau != 1.0:
            problems.append(
                f"agent.target_update_tau: the rllib backend makes one Polyak update per "
                f"training step ({rollout} env steps here), so a target_update_period below "
                f"{rollout} needs target_update_tau 1; got {agent.target_update_tau} "
                f"with period {period} (use backend: sb3)"
            )
    return problems


def _replay_buffer_config(agent: DQNAgentSpec) -> dict[str, Any]:
    priority = agent.prioritized_replay
    return {
        "type": f"{__name__}.{EpsilonPrioritizedEpisodeReplayBuffer.__name__}",
        "capacity": agent.replay_capacity,
        "alpha": priority.alpha,
        "beta": priority.beta,
        "epsilon": priority.epsilon,
    }


def _epsilon_schedule(agent: DQNAgentSpec, steps: int) -> list[tuple[int, float]]:
    exploration = agent.exploration
    decay_steps = max(1, round(exploration.fraction * steps))
    return [(0, exploration.initial_epsilon), (decay_steps, exploration.final_epsilon)]


def _create_env(env_config: dict[str, Any]) -> gym.Env:
    return make_env(EnvSpec.model_validate(env_config["env"]), env_config["reward_clip"])


def _advance_exploration_clock(*, env_runner: Any, samples: list[Any], **_: Any) -> None:
    """Count this sample's env steps into the env runner's lifetime step count.

    The env runner decays epsilon at ``t`` = its lifetime count + the steps of
    the current ``sample()`` call, but RLlib refreshes that count only at the
    end of each ``train()`` call; without this, epsilon would stand still
    within an iteration of many rollout fragments. (The algorithm's end-of-iteration
    refresh then sets the same value.)
    """
    env_runner.num_env_steps_sampled_lifetime += sum(len(episode) for episode in samples)


def build_rllib_dqn_config(
    agent: DQNAgentSpec, env: EnvSpec, seed: int, steps: int, steps_per_iteration: int
) -> DQNConfig:
    """RLlib's DQN config for the spec: one local env runner with one env, a local learner, CPU.

    ``steps`` sets the exploration schedule; each ``Algorithm.train()`` call
    samples ``steps_per_iteration`` env steps (a multiple of the rollout
    fragment). The algorithm's own evaluation stays off: the run evaluates greedily itself.
    """
    register_env(ENV_NAME, _create_env)
    rollout = _rollout_length(agent)
    updates = agent.gradient_steps * rollout // agent.train_frequency
    return (
        DQNConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .framework("torch")
        .environment(
            ENV_NAME, env_config={"env": env.model_dump(), "reward_clip": agent.reward_clip}
        )
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1, rollout_fragment_length=rollout)
        .learners(
            learner_class=TriadDQNTorchLearner,
            num_learners=0,
            num_gpus_per_learner=0,
            learner_config_dict={"bootstrap_target": agent.bootstrap_target},
        )
        .rl_module(
            model_config={
                "fcnet_hiddens": [agent.network.width] * agent.network.depth,
                "fcnet_activation": "relu",
                "head_fcnet_hiddens": [],
            }
        )
        .training(
            gamma=agent.gamma,
            lr=agent.learning_rate,
            train_batch_size_per_learner=agent.batch_size,
            grad_clip=agent.max_grad_norm,  # type: ignore[arg-type]  # RLlib's hint says int
            grad_clip_by="global_norm",
            td_error_loss_fn="huber",
            # The module must compute the online Q(s', .) for every target; the learner
            # then routes the networks (see PICK_AND_EVALUATE).
            double_q=True,
            dueling=False,
            num_atoms=1,
            noisy=False,
            n_step=agent.n_step,
            target_network_update_freq=agent.target_update_period,
            tau=agent.target_update_tau,
            replay_buffer_config=_replay_buffer_config(agent),
            epsilon=_epsilon_schedule(agent, steps),
            # RLlib learns once the lifetime step count is >= this; sb3 once it is >
            # learning_starts.
            num_steps_sampled_before_learning_starts=agent.learning_starts + 1,
            # RLlib's "natural" ratio is one update of batch_size per rollout fragment;
            # training_intensity (replayed / sampled steps) scales it to `updates` updates.
            training_intensity=updates * agent.batch_size / rollout,
        )
        .reporting(
            min_sample_timesteps_per_iteration=steps_per_iteration,
            min_time_s_per_iteration=0,
            min_train_timesteps_per_iteration=0,
        )
        .callbacks(on_sample_end=_advance_exploration_clock)
        .evaluation(evaluation_interval=None)
        .debugging(seed=seed, log_level="ERROR")
    )


def ensure_ray() -> None:
    """Start a local Ray (2 CPUs, no dashboard, token authentication, on 127.0.0.1) unless one runs.

    Raises `SpecError` if ``RAY_AUTH_MODE=disabled`` (see `ray_env.prepare_local`).
    """
    if not ray.is_initialized():
        ray_env.prepare_local()
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )


@contextmanager
def _single_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class GreedyEvaluator:
    """Mean return of greedy episodes on an unclipped copy of the env (the task's own units).

    The env is seeded once, at its first reset, so successive evaluations see new episodes.
    """

    def __init__(self, env: EnvSpec, episodes: int, seed: int) -> None:
        self.env = make_env(env, reward_clip=None)
        self.episodes = episodes
        self._seed: int | None = seed

    def mean_return(self, module: RLModule) -> float:
        """Mean undiscounted return of ``episodes`` episodes, acting by the module's argmax Q."""
        return float(np.mean([self._episode_return(module) for _ in range(self.episodes)]))

    def _episode_return(self, module: RLModule) -> float:
        observation, _ = self.env.reset(seed=self._seed)
        self._seed = None
        total, done = 0.0, False
        while not done:
            batch = {Columns.OBS: torch.as_tensor(np.asarray(observation, np.float32)[None])}
            with torch.no_grad():
                action = int(module.forward_inference(batch)[Columns.ACTIONS][0])
            observation, reward, terminated, truncated, _ = self.env.step(action)
            total += float(reward)
            done = terminated or truncated
        return total

    def close(self) -> None:
        """Close the evaluation env."""
        self.env.close()


class QValues(nn.Module):
    """An RLlib DQN module's online Q-values as a plain module: observations -> Q(s, .)."""

    def __init__(self, module: DefaultDQNTorchRLModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Q(s, .) [N, actions] of observations [N, *observation shape]."""
        return torch.as_tensor(self.module.compute_q_values({Columns.OBS: observations})[QF_PREDS])


def load_rllib_q_values(agent: DQNAgentSpec, env: EnvSpec, path: Path) -> QValues:
    """The RL module of a run's saved state dict (`_Run.module_bytes`), as `QValues`.

    The module is built from the spec's config as training built it; nothing trains, and the
    exploration schedule and iteration length do not shape the module.
    """
    config = build_rllib_dqn_config(agent, env, 0, 1, _rollout_length(agent))
    made = make_env(env, agent.reward_clip)
    module = config.get_rl_module_spec(env=made).build()
    made.close()
    assert isinstance(module, DefaultDQNTorchRLModule)
    module.load_state_dict(torch.load(path, weights_only=True))
    return QValues(module.eval())


def _steps_per_iteration(agent: DQNAgentSpec, steps: int, log_every: int) -> int:
    """Env steps per ``train()`` call: every log step and the end, when the fragment allows it.

    Fewer, longer iterations save RLlib's per-iteration bookkeeping; when the
    rollout fragment does not divide gcd(log_every, steps), each call is one fragment.
    """
    chunk = math.gcd(log_every, steps)
    rollout = _rollout_length(agent)
    return chunk if chunk % rollout == 0 else rollout


def _batch_columns(statistics: Sequence[Sequence[float]]) -> dict[str, float]:
    if not statistics:
        names = ("loss", "batch_max_abs_q", "td_error_mean", "td_error_abs_mean")
        return dict.fromkeys(names, math.nan)
    table = np.asarray(statistics, dtype=np.float64)
    return {
        "loss": float(np.mean(table[:, 1])),
        "batch_max_abs_q": float(np.max(table[:, 2])),
        "td_error_mean": float(np.mean(table[:, 3])),
        "td_error_abs_mean": float(np.mean(table[:, 4])),
    }


def _drain_learner_statistics(learner: Learner, _: Any = None) -> list[list[float]]:
    assert isinstance(learner, TriadDQNTorchLearner)
    return learner.drain_statistics()


class _Run:
    """One seed's training: the algorithm, the fixed probe states, the evaluator and the trace."""

    def __init__(
        self,
        agent: DQNAgentSpec,
        env: EnvSpec,
        seed: int,
        steps: int,
        log_every: int,
        checkpoint_every: int | None = None,
    ) -> None:
        self.checkpoint_every = checkpoint_every
        self.probes = torch.as_tensor(probe_observations(env, agent.probe_states, seed))
        per_iteration = _steps_per_iteration(agent, steps, log_every)
        config = build_rllib_dqn_config(agent, env, seed, steps, per_iteration)
        self.algo: Algorithm = config.build_algo()
        self.evaluator = GreedyEvaluator(env, agent.eval_episodes, seed + EVAL_SEED_OFFSET)
        self.trace = DeepTrace()
        self.step = 0

    def train_until(self, step: int) -> None:
        """Call ``train()`` until at least ``step`` env steps are sampled (lifetime)."""
        while self.step < step:
            result = self.algo.train()
            self.step = int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])

    def log(self, hard_limit: float) -> bool:
        """Append a record for the current step; False if the seed hard-diverged (it stops)."""
        module = self.algo.get_module()
        assert isinstance(module, DefaultDQNTorchRLModule)
        statistics = self._drain_statistics()
        with torch.no_grad():
            probe_q = torch.as_tensor(module.compute_q_values({Columns.OBS: self.probes})[QF_PREDS])
            parameters = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
        record: dict[str, float] = {
            "step": float(self.step),
            "probe_max_abs_q": float(probe_q.abs().max()),
            "probe_mean_q": float(probe_q.mean()),
            "param_norm": float(parameters.norm()),
            "exploration_rate": float(module.epsilon_schedule.get_current_value()),
            "eval_return": math.nan,
            **dict.fromkeys(GREEDY_METRICS, math.nan),
            **dict.fromkeys(FEATURE_METRICS, math.nan),
            **_batch_columns(statistics),
        }
        losses = np.asarray([row[1] for row in statistics])
        reason = hard_divergence(
            bool(np.isfinite(losses).all()), parameters, record["probe_max_abs_q"], hard_limit
        )
        if reason is None:
            record["eval_return"] = self.evaluator.mean_return(module)
        else:
            self.trace.hard_divergence_step = self.step
            self.trace.hard_divergence_reason = reason
        previous = int(self.trace.records[-1]["step"]) if self.trace.records else 0
        self.trace.log({name: record[name] for name in ("step", *METRICS)})
        if checkpoint_due(self.step, previous, self.checkpoint_every):
            self.trace.networks[f"step{self.step}.pt"] = self.module_bytes()
        return reason is None

    def module_bytes(self) -> bytes:
        """The RL module's torch state dict (``torch.save``): online and target Q-networks."""
        module = self.algo.get_module()
        assert isinstance(module, DefaultDQNTorchRLModule)
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        return buffer.getvalue()

    def _drain_statistics(self) -> list[list[float]]:
        assert self.algo.learner_group is not None
        results = self.algo.learner_group.foreach_learner(_drain_learner_statistics)
        return [row for result in results for row in result.get()]

    def close(self) -> None:
        """Stop the algorithm (Ray itself keeps running) and close the evaluation env."""
        self.algo.stop()
        self.evaluator.close()


def run_rllib_dqn(
    agent: DQNAgentSpec,
    env: EnvSpec,
    seed: int,
    steps: int,
    log_every: int,
    hard_limit: float,
    checkpoint_every: int | None = None,
    on_record: RecordSink | None = None,
) -> DeepTrace:
    """Train one seed for ``steps`` env steps with RLlib, logging every ``log_every``; each
    record also goes to ``on_record`` as it is logged.

    Logs at step 0, every ``log_every`` steps and at the end (RLlib samples
    whole rollout fragments, so a log step that the fragment does not divide
    is logged at the first fragment boundary past it). The batch columns
    average the updates since the previous log (``batch_max_abs_q`` is their
    maximum). A non-finite loss, non-finite parameters, or a parameter or
    probe |Q| beyond ``hard_limit`` ends the seed at that log: RLlib zeroes
    non-finite gradients itself, so the loss is what shows an overflow.

    Starts Ray if needed and leaves it running. Torch runs on one thread
    (restored afterwards): these networks gain nothing from more, and a
    second thread on a busy 2-core machine slowed RLlib's learner several-fold.

    The trace keeps the RL module's state dict at the end (``final.pt``) and at the first log
    past each multiple of ``checkpoint_every`` (``step<N>.pt``, N the step logged).
    """
    ensure_ray()
    with _single_torch_thread():
        run = _Run(agent, env, seed, steps, log_every, checkpoint_every)
        run.trace.on_record = on_record
        try:
            while run.log(hard_limit) and run.step < steps:
                run.train_until(min(steps, (run.step // log_every + 1) * log_every))
            run.trace.networks["final.pt"] = run.module_bytes()
        finally:
            run.close()
    return run.trace
