"""Saved deep agents: written by `rlharness run`, listed in the manifest, loaded back to reproduce
what the run logged."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from rlharness.agents.deep.fleet.modules import q_network, state_dict
from rlharness.agents.deep.fleet.networks import NetworkShape, initial_parameters, q_values
from rlharness.agents.deep.saved import load_agent
from rlharness.errors import SpecError
from rlharness.runner import check_experiment
from rlharness.spec import parse_spec
from tests.conftest import TINY_SPEC
from tests.helpers import run_one

RLHARNESS = Path(sys.executable).parent / "rlharness"

DQN_GRID: dict[str, Any] = {
    "name": "saved_dqn",
    "env": {"id": "CartPole-v1"},
    "agent": {
        "name": "dqn",
        "learning_starts": 100,
        "target_update_period": 100,
        "eval_episodes": 1,
        "learning_rate": 1e-3,
        "network": {"width": 16, "layer_norm": True},
    },
    "run": {"steps": 500, "log_every": 100, "seeds": 2, "checkpoint_every": 200},
    "grid": {"agent.backend": ["fleet", "sb3"]},
}

PQN: dict[str, Any] = {
    "name": "saved_pqn",
    "env": {"id": "CartPole-v1"},
    "agent": {
        "name": "pqn",
        "num_envs": 2,
        "num_steps": 16,
        "num_minibatches": 2,
        "eval_episodes": 1,
        "network": {"width": 16},
    },
    "run": {"steps": 320, "log_every": 64, "seeds": 2, "checkpoint_every": 128},
}


def run_cli(tmp_path: Path, spec: dict[str, Any]) -> Path:
    """``rlharness run`` the spec into a fresh results root; the run's directory."""
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    root = tmp_path / "results"
    completed = subprocess.run(
        [str(RLHARNESS), "run", str(path), "--results", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (run_dir,) = (root / spec["name"]).iterdir()
    return run_dir


def final_logged(run_dir: Path, variant: int, seed: int, column: str) -> float:
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    rows = metrics[(metrics["variant"] == variant) & (metrics["seed"] == seed)]
    return float(rows.sort_values("step")[column].iloc[-1])


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_cli(tmp_path_factory.mktemp("dqn"), DQN_GRID)


@pytest.fixture(scope="module")
def pqn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_cli(tmp_path_factory.mktemp("pqn"), PQN)


def test_a_member_row_loads_into_a_plain_torch_module_with_the_fleets_values() -> None:
    shape = NetworkShape(inputs=4, actions=3, width=8, depth=2, layer_norm=True)
    rows = initial_parameters(shape, torch.tensor([3, 7]), torch.device("cpu"))
    observations = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    fleet = q_values(rows, shape, observations)
    for k in range(2):
        module = q_network(shape)
        module.load_state_dict(state_dict(rows[k], shape))  # strict: every name and shape
        torch.testing.assert_close(module(observations[k]), fleet[k], rtol=1e-6, atol=1e-6)


def test_final_networks_and_checkpoints_are_written_and_in_the_manifest(dqn_run: Path) -> None:
    manifest = json.loads((dqn_run / "manifest.json").read_text())["files"]
    expected = {
        f"agents/variant{variant}/seed{seed}/{name}.{extension}"
        for variant, extension in ((0, "pt"), (1, "zip"))
        for seed in (0, 1)
        for name in ("step200", "step400", "final")
    }
    assert expected == {path for path in manifest if path.startswith("agents/")}
    with zipfile.ZipFile(dqn_run / "agents/variant1/seed0/final.zip") as saved:
        assert "policy.pth" in saved.namelist()  # SB3's model.save layout
    weights = torch.load(dqn_run / "agents/variant0/seed1/final.pt", weights_only=True)
    assert weights["1.weight"].shape == (16, 4)  # nn.Linear's [fan_out, fan_in]


@pytest.mark.parametrize(("variant", "backend"), [(0, "fleet"), (1, "sb3")])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_reloaded_dqn_reproduces_its_logged_final_probe_max_abs_q(
    dqn_run: Path, variant: int, backend: str, seed: int
) -> None:
    agent = load_agent(dqn_run, variant, seed)
    assert agent.spec.agent.backend == backend
    logged = final_logged(dqn_run, variant, seed, "probe_max_abs_q")
    if backend == "sb3":  # the same module and inputs as the run's callback: the same bits
        assert agent.probe_max_abs_q() == logged
    else:  # nn.Linear's addmm against the fleet's baddbmm: float32 rounding apart
        assert agent.probe_max_abs_q() == pytest.approx(logged, rel=1e-6)


def test_a_checkpoint_differs_from_the_final_network_and_a_missing_one_is_named(
    dqn_run: Path,
) -> None:
    checkpoint, final = load_agent(dqn_run, 0, 0, step=200), load_agent(dqn_run, 0, 0)
    probes = final.probe_observations()
    assert not np.array_equal(checkpoint.q_values(probes), final.q_values(probes))
    logged = pd.read_parquet(dqn_run / "metrics.parquet").query("variant == 0 and seed == 0")
    at_200 = float(logged.loc[logged["step"] == 200, "probe_max_abs_q"].iloc[0])
    assert checkpoint.probe_max_abs_q() == pytest.approx(at_200, rel=1e-6)
    sb3 = pd.read_parquet(dqn_run / "metrics.parquet").query("variant == 1 and seed == 1")
    sb3_at_400 = float(sb3.loc[sb3["step"] == 400, "probe_max_abs_q"].iloc[0])
    assert load_agent(dqn_run, 1, 1, step=400).probe_max_abs_q() == sb3_at_400
    with pytest.raises(FileNotFoundError, match=r"step300\.\(pt\|zip\) is not saved; saved there"):
        load_agent(dqn_run, 0, 0, step=300)


def test_a_reloaded_agent_plays_greedy_episodes(dqn_run: Path) -> None:
    agent = load_agent(dqn_run, 1, 0)
    mean_return = agent.evaluate(episodes=2)
    assert 1.0 <= mean_return <= 500.0  # CartPole-v1: one reward per step, truncated at 500
    assert agent.evaluate(episodes=2) == mean_return  # the same seeded episodes


def test_a_reloaded_pqn_member_reproduces_its_logged_probe_max_abs_q(pqn_run: Path) -> None:
    manifest = json.loads((pqn_run / "manifest.json").read_text())["files"]
    # Iterations end at 32, 64, ...: the checkpoints are the first logs at or past 128 and 256.
    assert {p for p in manifest if p.startswith("agents/variant0/seed1/")} == {
        f"agents/variant0/seed1/{name}.pt" for name in ("step128", "step256", "final")
    }
    for seed in (0, 1):
        logged = final_logged(pqn_run, 0, seed, "probe_max_abs_q")
        assert load_agent(pqn_run, 0, seed).probe_max_abs_q() == pytest.approx(logged, rel=1e-6)


@pytest.mark.slow  # starts Ray: a minute or two of wall clock
def test_a_reloaded_rllib_module_reproduces_its_logged_probe_max_abs_q(tmp_path: Path) -> None:
    spec = {
        **DQN_GRID,
        "name": "saved_rllib",
        "agent": {**DQN_GRID["agent"], "backend": "rllib", "network": {"width": 16}},
        "run": {"steps": 400, "log_every": 200, "seeds": 1},
        "grid": {},
    }
    run_dir = run_cli(tmp_path, spec)
    logged = final_logged(run_dir, 0, 0, "probe_max_abs_q")
    # The module's own compute_q_values on the same probe states: the same bits.
    assert load_agent(run_dir).probe_max_abs_q() == logged


@pytest.mark.parametrize("backend", ["fleet", "sb3"])
def test_checkpoints_leave_the_metrics_bitwise_unchanged(backend: str) -> None:
    data = {**DQN_GRID, "grid": {}, "run": {"steps": 300, "log_every": 100, "seeds": 1}}
    data["agent"] = {**DQN_GRID["agent"], "backend": backend}
    plain = run_one(parse_spec(data))
    data["run"] = {**data["run"], "checkpoint_every": 100}
    saving = run_one(parse_spec(data))
    pd.testing.assert_frame_equal(plain.metrics, saving.metrics, check_exact=True)
    extension = "zip" if backend == "sb3" else "pt"
    assert set(plain.agents[0]) == {f"final.{extension}"}
    names = {f"step{step}.{extension}" for step in (100, 200, 300)} | {f"final.{extension}"}
    assert set(saving.agents[0]) == names
    assert saving.agents[0][f"step300.{extension}"] == saving.agents[0][f"final.{extension}"]


def test_a_linear_learner_refuses_checkpoint_every() -> None:
    spec = parse_spec({**TINY_SPEC, "run": {**TINY_SPEC["run"], "checkpoint_every": 10}})
    with pytest.raises(SpecError, match=r"run\.checkpoint_every: saved networks are the deep"):
        check_experiment(spec)
