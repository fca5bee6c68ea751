"""Bootstrap targets, n-step returns and prioritised replay against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from scipy import stats
from stable_baselines3.common.buffers import NStepReplayBuffer

from rlharness.agents.deep.common import bootstrap_values, make_env
from rlharness.agents.deep.replay import PrioritizedNStepReplayBuffer
from rlharness.agents.deep.sb3_dqn import TriadDQN
from rlharness.spec import EnvSpec

GAMMA = 0.5
ONLINE_WEIGHTS = [1.0, 2.0]  # Q_online(o_k) = (k, 2k) for o_k = k e_1
TARGET_WEIGHTS = [3.0, -1.0]  # Q_target(o_k) = (3k, -k)


def test_bootstrap_values_of_the_four_targets() -> None:
    online = torch.tensor([[1.0, 3.0], [2.0, 0.0]])
    target = torch.tensor([[5.0, 4.0], [1.0, 7.0]])
    expected = {
        "q_learning": [3.0, 2.0],
        "target_q": [5.0, 7.0],
        "double_q": [4.0, 1.0],  # argmax online = (1, 0), evaluated by the target net
        "inverse_double_q": [1.0, 0.0],  # argmax target = (0, 1), evaluated by the online net
    }
    for name, values in expected.items():
        result = bootstrap_values(name, online, None if name == "q_learning" else target)
        assert result.shape == (2, 1)
        assert result.squeeze(1).tolist() == values, name


def _linear_dqn(bootstrap_target: str) -> TriadDQN:
    """A DQN with linear Q-functions of known weights and a hand-filled n = 3 replay buffer."""
    model = TriadDQN(
        "MlpPolicy",
        make_env(EnvSpec(id="triad/BairdControl-v0"), reward_clip=None),
        bootstrap_target=bootstrap_target,
        policy_kwargs={"net_arch": []},
        buffer_size=16,
        gamma=GAMMA,
        replay_buffer_class=NStepReplayBuffer,
        replay_buffer_kwargs={"n_steps": 3, "gamma": GAMMA},
        seed=0,
        device="cpu",
    )
    for network, weights in ((model.q_net, ONLINE_WEIGHTS), (model.q_net_target, TARGET_WEIGHTS)):
        layer = network.q_net[0]
        with torch.no_grad():
            layer.weight.zero_()
            layer.weight[:, 0] = torch.tensor(weights)
            layer.bias.zero_()
    # (observation k, action, reward, next observation k, done): an episode ends at index 1.
    transitions = [(1, 0, 1.0, 2, False), (2, 1, 2.0, 3, True), (4, 0, 3.0, 5, False),
                   (5, 1, 4.0, 6, False), (6, 0, 5.0, 7, False)]  # fmt: skip
    for k, action, reward, k_next, done in transitions:
        model.replay_buffer.add(
            _observation(k), _observation(k_next), np.array([[action]]), np.array([reward]),
            np.array([done]), [{}],
        )  # fmt: skip
    return model


def _observation(k: int) -> np.ndarray:
    observation = np.zeros((1, 8), dtype=np.float32)
    observation[0, 0] = k
    return observation


@pytest.mark.parametrize(
    ("bootstrap_target", "expected"),
    [
        # index 0: 1 + 0.5 * 2, the episode ends inside the window: no bootstrap
        # index 2: 3 + 0.5 * 4 + 0.25 * 5 = 6.25, then 0.125 * bootstrap(o_7)
        # index 3: 4 + 0.5 * 5 = 6.5 (the newest transition ends the window), 0.25 * bootstrap(o_7)
        ("q_learning", [2.0, 2.0, 6.25 + 0.125 * 14, 6.5 + 0.25 * 14]),
        ("target_q", [2.0, 2.0, 6.25 + 0.125 * 21, 6.5 + 0.25 * 21]),
        ("double_q", [2.0, 2.0, 6.25 + 0.125 * -7, 6.5 + 0.25 * -7]),
        ("inverse_double_q", [2.0, 2.0, 6.25 + 0.125 * 7, 6.5 + 0.25 * 7]),
    ],
)
def test_n_step_targets_by_hand(bootstrap_target: str, expected: list[float]) -> None:
    model = _linear_dqn(bootstrap_target)
    batch = model.replay_buffer._get_samples(np.array([0, 1, 2, 3]))
    targets = model.td_targets(batch).squeeze(1).tolist()
    assert targets == pytest.approx(expected, abs=1e-6)


def _prioritized_buffer(alpha: float, beta: float) -> PrioritizedNStepReplayBuffer:
    buffer = PrioritizedNStepReplayBuffer(
        4,
        spaces.Box(-1.0, 1.0, (1,), np.float32),
        spaces.Discrete(2),
        n_steps=1,
        gamma=0.9,
        priority_exponent=alpha,
        importance_exponent=beta,
        priority_epsilon=1e-6,
    )
    for index in range(4):
        observation = np.array([[index]], dtype=np.float32)
        buffer.add(
            observation, observation, np.array([[0]]), np.array([0.0]), np.array([False]), [{}]
        )
    buffer.update_priorities(np.arange(4), np.array([1.0, 4.0, 9.0, 16.0]) - 1e-6)
    return buffer


def test_prioritized_sampling_frequencies_follow_priorities() -> None:
    """alpha = 1/2 on priorities (1, 4, 9, 16): P = (1, 2, 3, 4) / 10."""
    buffer = _prioritized_buffer(alpha=0.5, beta=1.0)
    np.random.seed(0)
    counts = np.zeros(4)
    for _ in range(400):
        batch = buffer.sample(50)
        counts += np.bincount(batch.indices, minlength=4)
    expected = np.array([0.1, 0.2, 0.3, 0.4]) * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-4


def test_importance_weights_correct_for_the_sampling_bias() -> None:
    """w_i = (N P(i))^-beta / (N min P)^-beta: with beta = 1, w = P_min / P_i."""
    buffer = _prioritized_buffer(alpha=0.5, beta=1.0)
    np.random.seed(1)
    batch = buffer.sample(64)
    probabilities = np.array([0.1, 0.2, 0.3, 0.4])
    expected = probabilities.min() / probabilities[batch.indices]
    np.testing.assert_allclose(batch.weights.squeeze(1).numpy(), expected, rtol=1e-5)


def test_zero_priority_exponent_is_uniform_and_new_transitions_get_max_priority() -> None:
    buffer = _prioritized_buffer(alpha=0.0, beta=0.4)
    np.random.seed(2)
    counts = np.bincount(
        np.concatenate([buffer.sample(100).indices for _ in range(100)]), minlength=4
    )
    assert stats.chisquare(counts).pvalue > 1e-4
    assert buffer.max_priority == pytest.approx(16.0)
    buffer.add(
        np.zeros((1, 1)),
        np.zeros((1, 1)),
        np.array([[1]]),
        np.array([0.0]),
        np.array([False]),
        [{}],
    )
    assert buffer.priorities[0] == pytest.approx(16.0)


def _add(buffer: PrioritizedNStepReplayBuffer, observation: np.ndarray, action: int) -> None:
    reward, done = np.array([0.0]), np.array([False])
    buffer.add(observation, observation, np.array([[action]]), reward, done, [{}])
