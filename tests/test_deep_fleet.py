"""The fleet backend: independence, determinism, hand-computed targets, PER, learning, CLI."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from rlharness.agents.deep.common import DeepTrace
from rlharness.agents.deep.fleet import streams
from rlharness.agents.deep.fleet.envs import CartPoleBatch, make_batched_env
from rlharness.agents.deep.fleet.learner import Knobs, LearnerState, td_targets
from rlharness.agents.deep.fleet.networks import NetworkShape
from rlharness.agents.deep.fleet.replay import FleetReplay, replay_bytes
from rlharness.agents.deep.fleet.run import Member, run_fleet, size_text
from rlharness.spec import DQNAgentSpec, EnvSpec, parse_spec
from tests.helpers import run_all, run_one
from tests.test_cli import assert_bad_input, cli, mutated, write_spec

CARTPOLE = EnvSpec(id="CartPole-v1")
RANDOM_CARTPOLE_RETURN = 22.0
BASE = {"name": "dqn", "learning_starts": 100, "eval_episodes": 1, "target_update_period": 100}


def agent(**knobs: Any) -> DQNAgentSpec:
    return DQNAgentSpec.model_validate({**BASE, **knobs})


def same_bits(left: DeepTrace, right: DeepTrace) -> bool:
    """Every logged value bitwise equal (NaN equal to NaN), and the same ending."""
    if len(left.records) != len(right.records):
        return False
    for a, b in zip(left.records, right.records, strict=True):
        if np.array(list(a.values())).tobytes() != np.array(list(b.values())).tobytes():
            return False
    return (left.hard_divergence_step, left.hard_divergence_reason) == (
        right.hard_divergence_step,
        right.hard_divergence_reason,
    )


def test_splitmix64_matches_the_reference_sequence() -> None:
    """SplitMix64 (Steele et al. 2014) from state 0: the published first outputs."""
    first = streams.mix(torch.tensor([0], dtype=torch.int64))
    second = streams.mix(torch.tensor([streams.GOLDEN], dtype=torch.int64))
    as_unsigned = [int(v) % 2**64 for v in (first.item(), second.item())]
    assert as_unsigned == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]


def test_uniform_draws_are_uniform_and_keyed() -> None:
    keys = streams.member_keys(torch.tensor([3, 4]), streams.Stream.REPLAY)
    draws = streams.uniform(keys, torch.arange(20_000).expand(2, -1))
    assert stats.kstest(draws[0].numpy(), "uniform").pvalue > 1e-3
    assert not torch.equal(draws[0], draws[1])
    alone = streams.uniform(keys[1:], torch.arange(20_000).expand(1, -1))
    assert torch.equal(alone[0], draws[1])
    integers = streams.below(keys, torch.arange(6000).expand(2, -1), 3)
    assert stats.chisquare(np.bincount(integers[0].numpy(), minlength=3)).pvalue > 1e-3


def test_batched_cart_pole_steps_as_gymnasium() -> None:
    """From the same states and actions, every member's step is Gymnasium's CartPole-v1 step."""
    batch = CartPoleBatch([0, 1, 2], streams.Stream.ENV_RESET, max_episode_steps=500)
    observations = batch.reset(np.ones(3, dtype=bool))
    reference = [gym.make("CartPole-v1").unwrapped for _ in range(3)]
    for env, state in zip(reference, batch.state, strict=True):
        env.reset(seed=0)
        env.state = state.copy()
    rng = np.random.default_rng(0)
    for _ in range(40):
        actions = rng.integers(0, 2, 3)
        step = batch.step(actions)
        for k, env in enumerate(reference):
            observation, reward, terminated, _, _ = env.step(int(actions[k]))
            np.testing.assert_array_equal(step.final_observations[k], observation)
            assert (step.rewards[k], step.terminated[k]) == (reward, terminated)
            if terminated:
                env.reset()
                env.state = batch.state[k].copy()
    assert observations.dtype == np.float32


def test_cart_pole_truncates_at_its_time_limit_and_resets() -> None:
    batch = CartPoleBatch([0], streams.Stream.ENV_RESET, max_episode_steps=3)
    batch.reset(np.ones(1, dtype=bool))
    batch.state[:] = 0.0
    ends = [batch.step(np.array([k % 2])) for k in range(3)]
    assert [bool(s.truncated[0]) for s in ends] == [False, False, True]
    assert not ends[-1].terminated[0]
    assert not np.array_equal(ends[-1].observations, ends[-1].final_observations)


MIXED_MEMBERS = [
    agent(),
    agent(bootstrap_target="double_q", learning_rate=5e-4, gamma=0.9),
    agent(bootstrap_target="q_learning", train_frequency=2, gradient_steps=2, max_grad_norm=0.5),
    agent(bootstrap_target="inverse_double_q", target_update_tau=0.1, target_update_period=10,
          learning_starts=300, reward_clip=None, exploration={"fraction": 0.5}),
    agent(bootstrap_target="q_learning", l2=0.01, learning_rate=2e-3),
    # diverges: no target network, no clipping, a huge step size
    agent(bootstrap_target="q_learning", learning_rate=10.0, reward_clip=None, gamma=0.999),
]  # fmt: skip


def test_a_member_trains_alike_alone_and_in_a_fleet_of_32() -> None:
    """Bitwise: member metrics do not depend on the other members (settings, seeds, divergence)."""
    members = [
        Member(MIXED_MEMBERS[k % len(MIXED_MEMBERS)], seed=k // len(MIXED_MEMBERS), hard_limit=1e10)
        for k in range(32)
    ]
    fleet = run_fleet(CARTPOLE, members, steps=600, log_every=200)
    diverged = [t for t in fleet if t.hard_divergence_step is not None]
    assert diverged and len(diverged) < len(fleet)
    for index in (0, 1, 2, 3, 4, 5, 9, 31):
        (alone,) = run_fleet(CARTPOLE, [members[index]], steps=600, log_every=200)
        assert same_bits(alone, fleet[index]), index
    assert fleet[5].hard_divergence_reason is not None
    assert fleet[5].records[-1]["step"] == fleet[5].hard_divergence_step < 600


def test_members_train_alike_on_one_and_two_torch_threads() -> None:
    """The thread count is a speed setting only: batched products split by member."""
    members = [
        Member(MIXED_MEMBERS[k % len(MIXED_MEMBERS)], seed=k, hard_limit=1e10) for k in range(70)
    ]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_fleet(CARTPOLE, members, steps=400, log_every=200)
        torch.set_num_threads(2)
        two = run_fleet(CARTPOLE, members, steps=400, log_every=200)
    finally:
        torch.set_num_threads(threads)
    assert all(same_bits(a, b) for a, b in zip(one, two, strict=True))


def test_prioritized_n_step_members_are_independent_and_repeatable() -> None:
    members = [
        Member(agent(n_step=3, prioritized_replay={"alpha": alpha, "beta": 0.5}), seed, 1e10)
        for seed, alpha in ((0, 0.6), (1, 1.0), (2, 0.3), (3, 0.6))
    ]
    fleet = run_fleet(CARTPOLE, members, steps=400, log_every=200)
    again = run_fleet(CARTPOLE, members, steps=400, log_every=200)
    assert all(same_bits(a, b) for a, b in zip(fleet, again, strict=True))
    (alone,) = run_fleet(CARTPOLE, [members[3]], steps=400, log_every=200)
    assert same_bits(alone, fleet[3])


def test_same_seed_gives_bitwise_identical_metrics_through_run_trial() -> None:
    spec = fleet_spec(600, 200, seeds=3)
    first, second = run_one(spec), run_one(spec)
    for column in first.metrics.columns:
        assert (
            first.metrics[column].to_numpy().tobytes()
            == second.metrics[column].to_numpy().tobytes()
        )
    assert first.metrics["step"].tolist() == [0, 200, 400, 600] * 3


def fleet_spec(steps: int, log_every: int, seeds: int = 1, grid: dict[str, Any] | None = None,
               **knobs: Any):  # fmt: skip
    return parse_spec(
        {
            "name": "fleet_test",
            "env": {"id": "CartPole-v1"},
            "agent": {**BASE, "backend": "fleet", **knobs},
            "run": {"steps": steps, "log_every": log_every, "seeds": seeds},
            "grid": grid or {},
        }
    )


def test_grid_points_with_the_same_shapes_train_as_one_fleet_and_match_their_own_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rlharness.runner import plan_trials, run_trials

    spec = fleet_spec(400, 200, seeds=2, grid={"agent.learning_rate": [1e-3, 3e-4]})
    together = run_trials(plan_trials(spec))
    assert "fleet of 4 members" in capsys.readouterr().err
    separately = run_all(spec)
    for joint, alone in zip(together, separately, strict=True):
        assert joint.metrics.equals(alone.metrics)
        assert joint.outcomes.equals(alone.outcomes)


# --- the learning rule against hand-computed values -------------------------------------------

GAMMAS = (0.5, 0.25)
ONLINE_WEIGHTS = ([1.0, 2.0], [2.0, -1.0])  # member m: Q_online(o_k) = k * weights
TARGET_WEIGHTS = ([3.0, -1.0], [1.0, 4.0])


def _linear_fleet(
    bootstrap_target: str, truncate: bool
) -> tuple[LearnerState, NetworkShape, FleetReplay, Knobs]:
    """Two members with linear Q-functions of known weights and the same hand-filled n = 3 ring.

    Transitions (observation k e_1, action, reward): an episode ends after index 1
    (terminated, or truncated with final observation 3), then 4 -> 5 -> 6 -> 7.
    """
    shape = NetworkShape(inputs=8, actions=2, width=1, depth=0)

    def flat(weights: tuple[list[float], list[float]]) -> torch.Tensor:
        rows = torch.zeros(2, shape.row_length())
        for member, values in enumerate(weights):
            rows[member, 0:2] = torch.tensor(values)  # the weights of input 1 to both actions
        return rows

    state = LearnerState.start(flat(ONLINE_WEIGHTS))
    state.target = flat(TARGET_WEIGHTS)
    replay = FleetReplay(2, 16, (8,), np.dtype(np.float32), 2, None, 3, None, torch.device("cpu"))
    replay.start(_observations(1))
    transitions = [
        (0, 1.0, 2, False, False),
        (1, 2.0, 3, not truncate, truncate),
        (0, 3.0, 5, False, False),
        (1, 4.0, 6, False, False),
        (0, 5.0, 7, False, False),
    ]
    for action, reward, k_next, terminated, truncated in transitions:
        ended = terminated or truncated
        replay.add(
            torch.full((2,), action), torch.full((2,), reward),
            torch.full((2,), terminated), torch.full((2,), truncated),
            _observations(k_next), _observations(4 if ended else k_next), truncated,
        )  # fmt: skip
    gamma = torch.tensor(GAMMAS)
    knobs = Knobs(
        gamma=gamma, learning_rate=torch.full((2,), 1e-3), max_grad_norm=torch.full((2,), 10.0),
        target_update_tau=torch.ones(2), l2=torch.zeros(2),
        priority_alpha=torch.zeros(2, dtype=torch.float64),
        priority_beta=torch.zeros(2, dtype=torch.float64),
        priority_epsilon=torch.zeros(2, dtype=torch.float64),
        targets={bootstrap_target: torch.ones(2, dtype=torch.bool)},
    )  # fmt: skip
    return state, shape, replay, knobs


def _observations(k: int) -> torch.Tensor:
    observation = torch.zeros(2, 8)
    observation[:, 0] = k
    return observation


def _bootstrap(target: str, member: int, k: int) -> float:
    online = [k * w for w in ONLINE_WEIGHTS[member]]
    target_values = [k * w for w in TARGET_WEIGHTS[member]]
    return {
        "q_learning": max(online),
        "target_q": max(target_values),
        "double_q": target_values[int(np.argmax(online))],
        "inverse_double_q": online[int(np.argmax(target_values))],
    }[target]


@pytest.mark.parametrize("truncate", [False, True])
@pytest.mark.parametrize("target", ["q_learning", "target_q", "double_q", "inverse_double_q"])
def test_n_step_targets_by_hand(target: str, truncate: bool) -> None:
    state, shape, replay, knobs = _linear_fleet(target, truncate)
    slots = torch.tensor([[0, 1, 2, 3]] * 2)
    powers = torch.stack([torch.tensor([1.0, g, g**2, g**3]) for g in GAMMAS])
    targets = td_targets(state, shape, replay.batch(slots, None, powers), knobs)
    for member, g in enumerate(GAMMAS):
        # slot 0: 1 + g 2, the episode ends inside the window (terminated: no bootstrap;
        # truncated: g^2 bootstrap(o_3)); slot 1 likewise from its own step;
        # slot 2 (from the reset observation 4): 3 + g 4 + g^2 5, then g^3 bootstrap(o_7);
        # slot 3: 4 + g 5 (the newest transition ends the window), then g^2 bootstrap(o_7)
        final = _bootstrap(target, member, 3) if truncate else 0.0
        expected = [
            1 + g * 2 + g**2 * final,
            2 + g * final,
            3 + g * 4 + g**2 * 5 + g**3 * _bootstrap(target, member, 7),
            4 + g * 5 + g**2 * _bootstrap(target, member, 7),
        ]
        assert targets[member].tolist() == pytest.approx(expected, abs=1e-5), member


def test_only_the_newest_capacity_transitions_are_sampled() -> None:
    replay = FleetReplay(1, 3, (1,), np.dtype(np.float32), 2, None, 1, None, torch.device("cpu"))
    replay.start(torch.zeros(1, 1))
    for k in range(1, 6):
        replay.add(
            torch.zeros(1), torch.tensor([float(k)]), torch.zeros(1, dtype=torch.bool),
            torch.zeros(1, dtype=torch.bool), torch.full((1, 1), k), torch.full((1, 1), k), False,
        )  # fmt: skip
    keys = streams.member_keys(torch.tensor([0]), streams.Stream.REPLAY)
    slots, _ = replay.sample_slots(keys, torch.arange(300)[None], torch.zeros(1))
    powers = torch.tensor([[1.0, 0.5]])
    batch = replay.batch(slots, None, powers)
    assert set(batch.returns[0].tolist()) == {3.0, 4.0, 5.0}
    assert torch.equal(batch.next_observations[0, :, 0], batch.observations[0, :, 0] + 1)


def _prioritized_replay(alpha: torch.Tensor) -> FleetReplay:
    """Two members with priority exponents ``alpha``, four transitions each, priorities
    (1, 4, 9, 16)."""
    replay = FleetReplay(2, 4, (1,), np.dtype(np.float32), 2, None, 1, alpha, torch.device("cpu"))
    replay.start(torch.zeros(2, 1))
    for _ in range(4):
        replay.add(
            torch.zeros(2), torch.zeros(2), torch.zeros(2, dtype=torch.bool),
            torch.zeros(2, dtype=torch.bool), torch.zeros(2, 1), torch.zeros(2, 1), False,
        )  # fmt: skip
    errors = torch.tensor([[1.0, 4.0, 9.0, 16.0]] * 2) - 1e-6
    epsilon = torch.full((2,), 1e-6, dtype=torch.float64)
    replay.update_priorities(
        torch.arange(4).expand(2, 4), errors, epsilon, torch.ones(2, dtype=torch.bool)
    )
    return replay


def test_prioritized_sampling_frequencies_and_weights_per_member() -> None:
    """alpha 1/2 and 1 on priorities (1, 4, 9, 16): P = (1, 2, 3, 4)/10 and (1, 4, 9, 16)/30.

    With beta = 1 the weights are P_min / P_i; with beta 1/2, their square roots.
    """
    replay = _prioritized_replay(torch.tensor([0.5, 1.0], dtype=torch.float64))
    keys = streams.member_keys(torch.tensor([0, 1]), streams.Stream.REPLAY)
    beta = torch.tensor([1.0, 0.5], dtype=torch.float64)
    slots, weights = replay.sample_slots(keys, torch.arange(20_000).expand(2, -1), beta)
    assert weights is not None
    probabilities = [np.array([1, 2, 3, 4]) / 10, np.array([1, 4, 9, 16]) / 30]
    for member, expected in enumerate(probabilities):
        counts = np.bincount(slots[member].numpy(), minlength=4)
        assert stats.chisquare(counts, expected * counts.sum()).pvalue > 1e-4
        ideal = (expected.min() / expected[slots[member].numpy()]) ** beta[member].item()
        np.testing.assert_allclose(weights[member].numpy(), ideal, rtol=1e-6)


def test_new_transitions_enter_with_the_largest_priority() -> None:
    replay = _prioritized_replay(torch.ones(2, dtype=torch.float64))
    assert replay.priorities is not None
    replay.add(
        torch.zeros(2), torch.zeros(2), torch.zeros(2, dtype=torch.bool),
        torch.zeros(2, dtype=torch.bool), torch.zeros(2, 1), torch.zeros(2, 1), False,
    )  # fmt: skip
    assert replay.priorities[:, 4].tolist() == pytest.approx([16.0, 16.0])
    assert replay.priorities[:, 0].tolist() == [
        0.0,
        0.0,
    ]  # the oldest slot now holds the next observation


# --- tasks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["triad/BairdControl-v0", "Acrobot-v1", "MountainCar-v0"])
def test_fleet_runs_on_the_other_tasks(env_id: str) -> None:
    spec = parse_spec(
        {
            "name": "fleet_tasks",
            "env": {"id": env_id},
            "agent": {**BASE, "backend": "fleet"},
            "run": {"steps": 300, "log_every": 300, "seeds": 2},
        }
    )
    result = run_one(spec)
    assert result.metrics["step"].tolist() == [0, 300, 0, 300]
    assert np.isfinite(result.metrics["probe_max_abs_q"]).all()


def test_fleet_runs_on_minatar_storing_frames_as_bools() -> None:
    pytest.importorskip("minatar")
    spec = parse_spec(
        {
            "name": "fleet_minatar",
            "env": {"id": "MinAtar/Breakout-v1"},
            "agent": {**BASE, "backend": "fleet"},
            "run": {"steps": 300, "log_every": 300, "seeds": 2},
        }
    )
    result = run_one(spec)
    assert result.metrics["step"].tolist() == [0, 300, 0, 300]
    assert set(result.outcomes["outcome"]) == {"stable"}
    envs = make_batched_env(spec.env, [0])
    replay = FleetReplay(1, 10, envs.observation_space.shape, envs.observation_space.dtype,
                         envs.n_actions, None, 1, None, torch.device("cpu"))  # fmt: skip
    assert replay.observations.dtype == torch.bool


# --- it learns like SB3 -----------------------------------------------------------------------

LEARNING = {"bootstrap_target": "double_q", "learning_starts": 500, "target_update_period": 250,
            "eval_episodes": 5}  # fmt: skip
LEARNING_SEEDS = 16
LEARNING_STEPS = 10_000


@pytest.mark.slow
def test_fleet_learns_cart_pole_like_sb3() -> None:
    """16 seeds each, same knobs: final returns not distinguishable (Mann-Whitney U), both learn."""
    returns = {}
    for backend in ("sb3", "fleet"):
        spec = parse_spec(
            {
                "name": f"learning_{backend}",
                "env": {"id": "CartPole-v1"},
                "agent": {"name": "dqn", "backend": backend, **LEARNING},
                "run": {
                    "steps": LEARNING_STEPS,
                    "log_every": LEARNING_STEPS,
                    "seeds": LEARNING_SEEDS,
                },
            }
        )
        returns[backend] = run_one(spec).outcomes["final_eval_return"].to_numpy()
    test = stats.mannwhitneyu(returns["sb3"], returns["fleet"])
    print(
        f"sb3 {np.sort(returns['sb3'])}, fleet {np.sort(returns['fleet'])}, p = {test.pvalue:.3f}"
    )
    assert test.pvalue > 0.05
    for values in returns.values():
        assert np.median(values) > 3 * RANDOM_CARTPOLE_RETURN


# --- the command line -------------------------------------------------------------------------

FLEET_SPEC: dict[str, Any] = {
    "name": "fleet_cli",
    "env": {"id": "CartPole-v1"},
    "agent": {**BASE, "backend": "fleet"},
    "run": {"steps": 200, "log_every": 100, "seeds": 2},
}
FLEET_SPEC["agent"]["replay_capacity"] = 200


def fleet_file(tmp_path: Path, grid: dict[str, Any] | None = None, **sections: Any) -> Path:
    data = copy.deepcopy(FLEET_SPEC)
    for section, changes in sections.items():
        data[section] = {**data.get(section, {}), **changes}
    data["grid"] = grid or {}
    return write_spec(tmp_path, data)


CUDA_MISSING = "run.device: cuda is not available to torch on this machine; allowed: cpu"
BAD_FLEET_SPECS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "observations_not_a_box": (
        {"env": {"id": "FrozenLake-v1"}},
        ["env.id: dqn needs Box observations; FrozenLake-v1 has Discrete(16)"],
    ),
    "mixed_action_spaces": (
        {"grid": {"env.id": ["CartPole-v1", "Pendulum-v1"]}},
        [
            "env.id: dqn needs discrete actions; Pendulum-v1 has Box(",
            "(in grid point env.id='Pendulum-v1')",
        ],
    ),
    "unknown_backend": (
        {"agent": {"backend": "fleets"}},
        ["agent.backend: Input should be 'sb3', 'rllib' or 'fleet'"],
    ),
    "cuda_on_sb3": (
        {"agent": {"backend": "sb3"}, "run": {"device": "cuda"}},
        ["run.device: cuda needs agent.backend: fleet; the sb3 backend runs on cpu"],
    ),
    "unknown_device": (
        {"run": {"device": "tpu"}},
        ["run.device: Input should be 'cpu' or 'cuda'"],
    ),
    "fleet_replay_too_large": (
        {"agent": {"replay_capacity": 10**13}},
        ["agent.replay_capacity: a fleet of 2 members of this fleet dqn trial (replay buffer"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_FLEET_SPECS))
def test_a_fleet_spec_the_backend_cannot_express_exits_2_before_running(
    case: str, tmp_path: Path
) -> None:
    changes, expected = BAD_FLEET_SPECS[case]
    spec_path = fleet_file(tmp_path, grid=changes.pop("grid", None), **changes)
    assert_bad_input(cli("validate", spec_path), *expected)
    assert_bad_input(cli("run", spec_path, "--out", tmp_path / "results"), *expected)
    assert not (tmp_path / "results").exists()


def test_cuda_is_refused_where_torch_has_none(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    completed = cli("validate", fleet_file(tmp_path, run={"device": "cuda"}))
    assert_bad_input(completed, CUDA_MISSING)


def test_run_trains_a_grid_as_one_fleet_and_states_its_memory(tmp_path: Path) -> None:
    spec_path = fleet_file(tmp_path, grid={"agent.bootstrap_target": ["target_q", "double_q"]})
    completed = cli("run", spec_path, "--out", tmp_path / "results")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    memory = [line for line in completed.stderr.splitlines() if line.startswith("fleet of")]
    size = size_text(replay_bytes(4, 200, 4 * 4, 2, 500, prioritized=False))
    assert memory == [
        f"fleet of 4 members on CartPole-v1: replay {size} (200 transitions each, "
        "observations float32)"
    ]
    (run_dir,) = (tmp_path / "results" / "fleet_cli").iterdir()
    outcomes = pd.read_parquet(run_dir / "outcomes.parquet")
    assert len(outcomes) == 4 and set(outcomes["outcome"]) == {"stable"}


def test_cuda_is_refused_for_linear_learners(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, mutated(run__device="cuda"))
    completed = cli("validate", spec_path)
    assert_bad_input(
        completed, "run.device: cuda needs agent.backend: fleet; linear learners run on cpu"
    )
