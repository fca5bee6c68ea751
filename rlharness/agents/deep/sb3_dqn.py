"""The stable-baselines3 backend: SB3's DQN with the four bootstrap targets and diagnostics.

`TriadDQN` changes only the target computation of SB3's training step (and
weights the loss for prioritised replay, and adds the L2 penalty); exploration, replay,
n-step returns (SB3's NStepReplayBuffer), target updates and optimisation are SB3's own.
`LayerNormDQNPolicy` is SB3's MlpPolicy with a LayerNorm in each hidden layer, as the
fleet's networks have it.
`DiagnosticsCallback` logs max |Q| on fixed probe states, batch statistics,
parameter norm, greedy evaluation returns and the fleet's early warnings (`feature_warnings`),
and stops a seed that hard-diverges.
"""

from __future__ import annotations

import io
import math
from functools import partial
from typing import Any

import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import NStepReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn
from torch.nn import functional

from rlharness.agents.deep.common import (
    EVAL_SEED_OFFSET,
    METRICS,
    ONLINE_BOOTSTRAP,
    DeepTrace,
    bootstrap_values,
    checkpoint_due,
    hard_divergence,
    make_env,
    probe_observations,
)
from rlharness.agents.deep.diagnostics import (
    SEEM_TRANSITIONS,
    effective_rank,
    feature_cosine,
    self_excitation,
)
from rlharness.agents.deep.overestimation import GREEDY_METRICS, GreedyEpisodes
from rlharness.agents.deep.replay import PrioritizedNStepReplayBuffer, PrioritizedSamples
from rlharness.live import RecordSink
from rlharness.spec import DQNAgentSpec, EnvSpec


class LayerNormDQNPolicy(DQNPolicy):
    """SB3's DQN MlpPolicy with hidden layers Linear -> LayerNorm -> ReLU (PQN, Gallici et al.
    2025; CleanRL's pqn.py), as SB3's ``create_mlp`` places ``post_linear_modules``.

    The LayerNorms are inserted into the Q-network SB3 built, before the optimiser is made,
    so the linear layers are initialised exactly as without them (LayerNorm's gain starts at
    1 and its bias at 0, drawing nothing; eps 1e-5, the fleet's).
    """

    def make_q_net(self) -> QNetwork:
        """SB3's Q-network with a LayerNorm after each hidden linear layer."""
        q_net = super().make_q_net()
        linears = [m for m in q_net.q_net if isinstance(m, nn.Linear)]
        modules: list[nn.Module] = []
        for module in q_net.q_net:
            modules.append(module)
            if isinstance(module, nn.Linear) and module is not linears[-1]:
                modules.append(nn.LayerNorm(module.out_features))
        q_net.q_net = nn.Sequential(*modules).to(self.device)
        return q_net


def l2_penalty(network: nn.Module, l2: float) -> torch.Tensor:
    """l2 / 2 ||theta||^2 over every weight and bias of the network (PQN's L2 term; its
    gradient l2 theta joins the TD gradient before clipping, as in the fleet)."""
    return 0.5 * l2 * sum((p.square().sum() for p in network.parameters()), torch.zeros(()))


class TriadDQN(DQN):
    """SB3 DQN whose bootstrap target is one of q_learning, target_q, double_q, inverse_double_q.

    The training step, in the order it runs (Mnih et al. 2015; van Hasselt et al. 2018):
        sample a batch (uniformly, or by priority with importance weights w)
        y = R^(n) + (1 - done) gamma^n * bootstrap(Q_online(s'), Q_target(s'))
        loss = mean_i w_i Huber(Q_online(s_i, a_i) - y_i)
        gradient step on loss + l2 / 2 ||theta||^2 with clipped norm; new priorities |y - Q|
        for prioritised replay (the logged loss is the TD loss)
    """

    def __init__(
        self, *args: Any, bootstrap_target: str = "target_q", l2: float = 0.0, **kwargs: Any
    ) -> None:
        self.bootstrap_target = bootstrap_target
        self.l2 = l2
        self.batch_statistics: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.last_batch: ReplayBufferSamples | PrioritizedSamples | None = None
        self.non_finite_loss = False
        super().__init__(*args, **kwargs)

    def td_targets(self, batch: ReplayBufferSamples | PrioritizedSamples) -> torch.Tensor:
        """y = R^(n) + (1 - done) gamma^k bootstrap(s'), k the steps actually summed (<= n)."""
        discounts = batch.discounts if batch.discounts is not None else self.gamma
        target = self.bootstrap_target
        with torch.no_grad():
            online_next = (
                self.q_net(batch.next_observations) if target in ONLINE_BOOTSTRAP else None
            )
            target_next = (
                self.q_net_target(batch.next_observations) if target != "q_learning" else None
            )
            bootstrap = bootstrap_values(target, online_next, target_next)
            return batch.rewards + (1 - batch.dones) * discounts * bootstrap

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's DQN training step with the configured bootstrap target."""
        # Lines that differ from SB3's DQN.train: the target comes from td_targets (one of
        # four bootstrap targets, not always max_a Q_target); the Huber loss is weighted by
        # the importance weights of a prioritised batch, whose priorities are then updated;
        # batch statistics are kept for the diagnostics; a non-finite loss stops the loop; the
        # L2 penalty joins the loss before backward.
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            batch = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            targets = self.td_targets(batch)
            q_values = self.q_net(batch.observations)
            chosen = torch.gather(q_values, dim=1, index=batch.actions.long())
            weights = getattr(batch, "weights", None)
            if weights is None:
                loss = functional.smooth_l1_loss(chosen, targets)
            else:
                loss = (
                    functional.smooth_l1_loss(chosen, targets, reduction="none") * weights
                ).mean()
            self.policy.optimizer.zero_grad()
            if self.l2 > 0:
                (loss + l2_penalty(self.q_net, self.l2)).backward()
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            td_errors = (targets - chosen).detach()
            if isinstance(batch, PrioritizedSamples):
                assert isinstance(self.replay_buffer, PrioritizedNStepReplayBuffer)
                self.replay_buffer.update_priorities(batch.indices, td_errors.squeeze(1).numpy())
            losses.append(loss.item())
            self.batch_statistics.append((loss.detach(), q_values.detach(), td_errors))
            self.last_batch = batch
            if not math.isfinite(losses[-1]):
                self.non_finite_loss = True
                break
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))

    def pop_batch_statistics(self) -> tuple[float, float, float, float]:
        """Mean loss, max |Q|, mean and mean |TD error| over the batches since the last call."""
        if not self.batch_statistics:
            return (math.nan,) * 4
        losses, q_values, td_errors = (
            torch.cat([s[k].reshape(-1) for s in self.batch_statistics]) for k in range(3)
        )
        self.batch_statistics.clear()
        return (
            float(losses.mean()),
            float(q_values.abs().max()),
            float(td_errors.mean()),
            float(td_errors.abs().mean()),
        )


def model_bytes(model: TriadDQN) -> bytes:
    """The model as SB3's ``model.save`` zip (without the replay buffer, as SB3 saves it, and
    without the diagnostics' batch statistics); ``TriadDQN.load`` reads it back."""
    buffer = io.BytesIO()
    model.save(buffer, exclude=["batch_statistics", "last_batch"])
    return buffer.getvalue()


class DiagnosticsCallback(BaseCallback):
    """Every ``log_every`` env steps: probe max |Q|, batch statistics, norms and evaluation.

    Evaluation runs ``eval_episodes`` greedy episodes on an unclipped copy of the
    env, so returns are in the task's own units.

    A non-finite loss stops training at the step it happens; parameters that
    become non-finite, or probe values beyond ``hard_limit``, at the next log.
    The model is saved (`model_bytes`) at the last log and, with ``checkpoint_every``, at
    each log on a multiple of it.
    """

    def __init__(
        self,
        log_every: int,
        probes: np.ndarray,
        agent: DQNAgentSpec,
        env: EnvSpec,
        seed: int,
        hard_limit: float,
        checkpoint_every: int | None = None,
    ) -> None:
        super().__init__()
        self.log_every = log_every
        self.checkpoint_every = checkpoint_every
        self.probes = torch.as_tensor(probes)
        self.eval_episodes = agent.eval_episodes
        self.gamma, self.reward_clip = agent.gamma, agent.reward_clip
        self.eval_env: Monitor = Monitor(make_env(env, reward_clip=None))
        self.eval_env.reset(seed=seed + EVAL_SEED_OFFSET)
        self.hard_limit = hard_limit
        self.trace = DeepTrace()

    def _on_training_start(self) -> None:
        self.log()

    def _on_step(self) -> bool:
        model: TriadDQN = self.model  # type: ignore[assignment]
        if model.non_finite_loss:
            return self.log()
        if self.num_timesteps % self.log_every != 0:
            return True
        return self.log()

    def log(self) -> bool:
        """Append a record for the current step; False (stop) if the seed hard-diverged."""
        model: TriadDQN = self.model  # type: ignore[assignment]
        with torch.no_grad():
            probe_q = model.q_net(self.probes)
            parameters = torch.cat([p.detach().reshape(-1) for p in model.q_net.parameters()])
        loss, batch_max_abs_q, td_error_mean, td_error_abs_mean = model.pop_batch_statistics()
        record = {
            "step": self.num_timesteps,
            "probe_max_abs_q": float(probe_q.abs().max()),
            "probe_mean_q": float(probe_q.mean()),
            "loss": loss,
            "batch_max_abs_q": batch_max_abs_q,
            "td_error_mean": td_error_mean,
            "td_error_abs_mean": td_error_abs_mean,
            "param_norm": float(parameters.norm()),
            "exploration_rate": float(model.exploration_rate),
            "eval_return": math.nan,
        }
        reason = hard_divergence(
            not model.non_finite_loss, parameters, record["probe_max_abs_q"], self.hard_limit
        )
        record.update(dict.fromkeys(GREEDY_METRICS, math.nan))
        record.update(feature_warnings(model, self.probes))
        if reason is None:
            episodes = GreedyEpisodes(self.gamma, self.reward_clip)
            mean_return, _ = evaluate_policy(
                model,
                self.eval_env,
                n_eval_episodes=self.eval_episodes,
                deterministic=True,
                callback=partial(_record_greedy_step, model, episodes),
            )
            assert isinstance(mean_return, float)
            record["eval_return"] = mean_return
            record.update(episodes.metrics())
        else:
            self.trace.hard_divergence_step = self.num_timesteps
            self.trace.hard_divergence_reason = reason
        self.trace.log({name: record[name] for name in ("step", *METRICS)})
        self.save(model, reason is not None)
        return reason is None

    def save(self, model: TriadDQN, diverged: bool) -> None:
        """Keep the model as logged: at a checkpoint, and as final at the last log.

        SB3 trains on a rollout after the callbacks of its steps, so the final network is the
        one of the last log (which the logged metrics describe), before any gradient steps
        SB3 takes after it.
        """
        step = self.num_timesteps
        names = [f"step{step}.zip"] if checkpoint_due(step, step - 1, self.checkpoint_every) else []
        if diverged or step >= model._total_timesteps:
            names.append("final.zip")
        if names:
            saved = model_bytes(model)
            self.trace.networks.update(dict.fromkeys(names, saved))


def penultimate_features(q_net: QNetwork, observations: torch.Tensor) -> torch.Tensor:
    """phi(s): the Q-network's last hidden activations [N, width] (all but the head)."""
    return q_net.q_net[:-1](q_net.extract_features(observations, q_net.features_extractor))


def value_gradients(
    q_net: QNetwork, observations: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """d Q(s_i, a_i) / d theta per sample [N, P], by ``torch.func`` (vmap of grad)."""
    parameters = {name: p.detach() for name, p in q_net.named_parameters()}

    def value(
        params: dict[str, torch.Tensor], observation: torch.Tensor, action: torch.Tensor
    ) -> torch.Tensor:
        values = torch.func.functional_call(q_net, params, (observation[None],))[0]
        return values.gather(0, action[None])[0]

    gradients = torch.func.vmap(torch.func.grad(value), in_dims=(None, 0, 0))(
        parameters, observations, actions
    )
    return torch.cat([g.reshape(len(actions), -1) for g in gradients.values()], dim=1)


def feature_warnings(model: TriadDQN, probes: torch.Tensor) -> dict[str, float]:
    """The fleet's `FEATURE_METRICS` from SB3's Q-network: srank of phi on the probe states,
    and the cosine and SEEM on the last training batch (NaN before the first update)."""
    q_net = model.q_net
    with torch.no_grad():
        phi = penultimate_features(q_net, probes)
    warnings = {"feature_srank": float(effective_rank(phi[None])[0])}
    batch = model.last_batch
    if batch is None:
        return warnings | {"feature_cosine": math.nan, "seem": math.nan}
    discounts = batch.discounts if batch.discounts is not None else model.gamma
    bootstrap = ((1 - batch.dones) * discounts).reshape(-1)
    with torch.no_grad():
        phi = penultimate_features(q_net, batch.observations)
        phi_next = penultimate_features(q_net, batch.next_observations)
        cosine = feature_cosine(phi[None], phi_next[None], (bootstrap > 0)[None])
    head = slice(0, SEEM_TRANSITIONS)
    observations, next_observations = batch.observations[head], batch.next_observations[head]
    with torch.no_grad():
        greedy = q_net(next_observations).argmax(dim=1)
    gradients = value_gradients(q_net, observations, batch.actions[head].reshape(-1).long())
    next_gradients = value_gradients(q_net, next_observations, greedy)
    seem = self_excitation(gradients[None], next_gradients[None], bootstrap[head][None])
    return warnings | {"feature_cosine": float(cosine[0]), "seem": float(seem[0])}


def _record_greedy_step(
    model: TriadDQN, episodes: GreedyEpisodes, local: dict[str, Any], _globals: dict[str, Any]
) -> None:
    """`evaluate_policy`'s per-step callback: Q of the greedy action taken, and its reward."""
    index = int(local["i"])
    with torch.no_grad():
        observations = model.policy.obs_to_tensor(local["observations"])[0]
        value = model.q_net(observations)[index, int(local["actions"][index])]
    episodes.step(float(value), float(local["rewards"][index]))
    if local["dones"][index]:
        truncated = bool(local["infos"][index].get("TimeLimit.truncated", False))
        episodes.end_episode(terminated=not truncated)


def build_sb3_dqn(agent: DQNAgentSpec, env: EnvSpec, seed: int) -> TriadDQN:
    """SB3 DQN configured from the spec's knobs."""
    replay_kwargs: dict[str, Any] = {"n_steps": agent.n_step, "gamma": agent.gamma}
    replay_class: type[NStepReplayBuffer] = NStepReplayBuffer
    if agent.prioritized_replay.alpha > 0:
        replay_class = PrioritizedNStepReplayBuffer
        replay_kwargs |= {
            "priority_exponent": agent.prioritized_replay.alpha,
            "importance_exponent": agent.prioritized_replay.beta,
            "priority_epsilon": agent.prioritized_replay.epsilon,
        }
    return TriadDQN(
        LayerNormDQNPolicy if agent.network.layer_norm else "MlpPolicy",
        make_env(env, agent.reward_clip),
        bootstrap_target=agent.bootstrap_target,
        l2=agent.l2,
        learning_rate=agent.learning_rate,
        buffer_size=agent.replay_capacity,
        learning_starts=agent.learning_starts,
        batch_size=agent.batch_size,
        tau=agent.target_update_tau,
        gamma=agent.gamma,
        train_freq=agent.train_frequency,
        gradient_steps=agent.gradient_steps,
        replay_buffer_class=replay_class,
        replay_buffer_kwargs=replay_kwargs,
        target_update_interval=agent.target_update_period,
        exploration_fraction=agent.exploration.fraction,
        exploration_initial_eps=agent.exploration.initial_epsilon,
        exploration_final_eps=agent.exploration.final_epsilon,
        max_grad_norm=agent.max_grad_norm,
        policy_kwargs={"net_arch": [agent.network.width] * agent.network.depth},
        seed=seed,
        device="cpu",
        verbose=0,
    )


def run_sb3_dqn(
    agent: DQNAgentSpec,
    env: EnvSpec,
    seed: int,
    steps: int,
    log_every: int,
    hard_limit: float,
    checkpoint_every: int | None = None,
    on_record: RecordSink | None = None,
) -> DeepTrace:
    """Train one seed for ``steps`` env steps, logging every ``log_every``; divergence ends it.
    The trace keeps the model as saved at the last log (``final.zip``) and every
    ``checkpoint_every`` steps (`DiagnosticsCallback.save`).

    Each record also goes to ``on_record`` as it is logged.

    Torch runs on one thread: these networks are too small to gain from more, and
    oversubscribed cores slow training (seeds run in parallel instead; benchmarks/README.md).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = build_sb3_dqn(agent, env, seed)
    probes = probe_observations(env, agent.probe_states, seed)
    callback = DiagnosticsCallback(
        log_every, probes, agent, env, seed, hard_limit, checkpoint_every
    )
    callback.trace.on_record = on_record
    try:
        model.learn(total_timesteps=steps, callback=callback)
        diverged = callback.trace.hard_divergence_step is not None
        if not diverged and callback.trace.records[-1]["step"] != model.num_timesteps:
            callback.log()
    finally:
        torch.set_num_threads(threads)
        model.get_env().close()  # type: ignore[union-attr]
        callback.eval_env.close()
    return callback.trace
