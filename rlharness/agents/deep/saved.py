"""Saved deep agents, loaded back from a run for inspection: Q-values, probe states, returns.

A run of a deep agent keeps each grid point x seed's network, in its backend's own format,
at ``agents/variant<i>/seed<k>/`` (`rlharness.publish.agent_path`): ``final.<ext>`` is the
network when training ended (the last step, or the log at which the seed hard-diverged) and,
with ``run.checkpoint_every``, ``step<N>.<ext>`` the network at the log of step N. The
formats: the sb3 backend's is SB3's ``model.save`` zip (``TriadDQN.load`` reads it); the
fleet's DQN and PQN members' a ``.pt`` torch state dict of `fleet.modules.q_network`; the
rllib backend's a ``.pt`` torch state dict of its RL module (online and target Q-networks).

    from rlharness.agents.deep.saved import load_agent

    agent = load_agent("results/cartpole_dqn/<run-id>", variant=0, seed=0)
    agent.probe_max_abs_q()      # the final probe max |Q| that metrics.parquet logged
    agent.q_values(agent.probe_observations())
    agent.evaluate(episodes=10)  # mean greedy return on the unclipped env
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rlharness.agents.deep.common import EVAL_SEED_OFFSET, make_env, probe_observations
from rlharness.environments import instantiate_env
from rlharness.spec import DeepAgentSpec, DQNAgentSpec, ExperimentSpec, grid_points, load_spec


@dataclass(frozen=True)
class SavedAgent:
    """One seed's saved Q-network and the grid point's spec it was trained under.

    ``network`` maps float32 observations [N, *observation shape] to Q(s, .) [N, actions].
    """

    spec: ExperimentSpec
    seed: int
    path: Path
    network: nn.Module

    def q_values(self, observations: np.ndarray) -> np.ndarray:
        """Q(s, .) of each observation [N, *observation shape] -> [N, actions], in float32."""
        inputs = torch.as_tensor(np.asarray(observations, dtype=np.float32))
        with torch.no_grad():
            return self.network(inputs).numpy()

    def probe_observations(self) -> np.ndarray:
        """The run's fixed probe states of this seed (`common.probe_observations`)."""
        agent = self.spec.agent
        assert isinstance(agent, DeepAgentSpec)
        return probe_observations(self.spec.env, agent.probe_states, self.seed)

    def probe_max_abs_q(self) -> float:
        """max |Q(s, a)| over the probe states and actions: the logged ``probe_max_abs_q``."""
        return float(np.abs(self.q_values(self.probe_observations())).max())

    def evaluate(self, episodes: int, seed: int | None = None) -> float:
        """Mean undiscounted return of ``episodes`` greedy episodes on the unclipped env.

        The env is seeded at its first reset with ``seed`` (default: seed + `EVAL_SEED_OFFSET`,
        where the sb3 and rllib backends' evaluation env starts), so a call is repeatable.
        """
        env = make_env(self.spec.env, reward_clip=None)
        first_seed: int | None = self.seed + EVAL_SEED_OFFSET if seed is None else seed
        returns = []
        try:
            for _ in range(episodes):
                observation, _ = env.reset(seed=first_seed)
                first_seed = None
                total, done = 0.0, False
                while not done:
                    action = int(self.q_values(np.asarray(observation)[None])[0].argmax())
                    observation, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    done = terminated or truncated
                returns.append(total)
        finally:
            env.close()
        return float(np.mean(returns))


def load_agent(
    run_dir: str | Path, variant: int = 0, seed: int | None = None, step: int | None = None
) -> SavedAgent:
    """The saved network of grid point ``variant``, seed ``seed`` (the run's first by default)
    of the run in ``run_dir``: the final one, or the checkpoint at env step ``step``.

    Raises FileNotFoundError naming the files there are when the run has no such network.
    """
    run_dir = Path(run_dir)
    points = [point for _, point in grid_points(load_spec(run_dir / "config.yaml"))]
    if not 0 <= variant < len(points):
        raise ValueError(f"variant: the run has grid points 0 to {len(points) - 1}; got {variant}")
    spec = points[variant]
    seed = spec.run.first_seed if seed is None else seed
    folder = run_dir / "agents" / f"variant{variant}" / f"seed{seed}"
    stem = "final" if step is None else f"step{step}"
    found = sorted(folder.glob(f"{stem}.*"))
    if not found:
        saved = sorted(p.name for p in folder.glob("*")) or "none"
        raise FileNotFoundError(f"{folder / stem}.(pt|zip) is not saved; saved there: {saved}")
    return SavedAgent(spec, seed, found[0], _load_network(spec, found[0]))


def _load_network(spec: ExperimentSpec, path: Path) -> nn.Module:
    """The Q-network in ``path``, as its backend saved it."""
    agent = spec.agent
    assert isinstance(agent, DeepAgentSpec)
    if agent.backend == "sb3":
        from rlharness.agents.deep.sb3_dqn import TriadDQN

        model = TriadDQN.load(path, device="cpu")
        model.policy.set_training_mode(False)
        return model.q_net
    if agent.backend == "rllib":
        from rlharness.agents.deep.rllib_dqn import load_rllib_q_values

        assert isinstance(agent, DQNAgentSpec)
        return load_rllib_q_values(agent, spec.env, path)
    from rlharness.agents.deep.fleet.modules import q_network
    from rlharness.agents.deep.fleet.networks import NetworkShape

    env = instantiate_env(spec.env, f"experiment {spec.name}")
    observations, actions = env.observation_space, env.action_space
    env.close()
    assert isinstance(observations, spaces.Box) and isinstance(actions, spaces.Discrete)
    network = agent.network
    inputs = int(np.prod(observations.shape))
    shape = NetworkShape(inputs, int(actions.n), network.width, network.depth, network.layer_norm)
    module = q_network(shape)
    module.load_state_dict(torch.load(path, weights_only=True))
    return module.eval()
