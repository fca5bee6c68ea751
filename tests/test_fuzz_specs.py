"""Mutated experiment files through ``rlharness validate``, in-process: a clear answer or a message.

A seeded generator derives specs from the shipped experiments by deleting
fields, setting them to wrong types and extreme values, adding unknown keys,
junk grids and sweeps, env arguments and raw-text damage (duplicate keys,
aliases, truncation). Each must exit 0 or 2, never print a traceback, and
answer within a few seconds: validate checks, it does not run.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rlharness import spec
from rlharness.cli import app
from tests.conftest import REPO

SEED = 20_240_917
N_SPECS = 1_200
MAX_SECONDS_PER_SPEC = 5.0
MAX_LINE = 700
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))

HUGE_STRING = "x" * 100_000
EXTREMES: list[Any] = [
    0,
    -1,
    1,
    2,
    1001,
    100_001,
    2**31,
    2**63,
    2**64,
    10**30,
    1e30,
    -1e30,
    1e-320,
    0.5,
    1.5,
    float("nan"),
    float("inf"),
    -float("inf"),
    True,
    None,
    "",
    "inf",
    "abc",
    HUGE_STRING,
    [],
    {},
    [1, [2, [3, [4]]]],
    {"a": {"b": {"c": 1}}},
]
FIELD_PATHS = [
    "agent.alpha",
    "agent.beta",
    "agent.update",
    "agent.name",
    "agent.replay_capacity",
    "agent.batch_size",
    "agent.n_step",
    "agent.network.width",
    "agent.network.depth",
    "agent.backend",
    "agent.probe_states",
    "agent.initial_weights",
    "triad.n_step",
    "triad.features",
    "triad.off_policy",
    "triad.target_update_period",
    "run.steps",
    "run.log_every",
    "run.seeds",
    "run.first_seed",
    "env.id",
    "env.kwargs.gamma",
    "env.kwargs.n_states",
    "diagnostics.hard_divergence_threshold",
    "name",
    "grid",
    "no.such.field",
]
ENV_IDS = [
    "triad/Baird-v0",
    "triad/BairdControl-v0",
    "triad/RandomWalk-v0",
    "triad/TsitsiklisVanRoy-v0",
    "triad/TwoState-v0",
    "CartPole-v1",
    "LunarLander-v3",
    "phys2d/CartPole-v0",
    "NoSuchEnv-v0",
    "x" * 1000,
]
ENV_ARGUMENTS = [
    "gamma",
    "epsilon",
    "n_states",
    "behaviour_right_probability",
    "features",
    "render_mode",
    "bogus",
]
AGENT_NAMES = [*sorted(spec.AGENT_NAMES), "sarsa"]
"""Every agent the spec knows (sorted: a set's order changes between processes), and one it does
not."""


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of nested mappings (lists are leaves)."""
    if not isinstance(node, dict):
        return [prefix]
    paths = [prefix] if prefix else []
    for key, value in node.items():
        paths.extend(_leaf_paths(value, (*prefix, str(key))))
    return paths


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def _delete(data: dict[str, Any], rng: random.Random) -> None:
    paths = _leaf_paths(data)
    path = rng.choice(paths)
    node = data
    for key in path[:-1]:
        node = node[key]
    node.pop(path[-1], None)


def _extreme(rng: random.Random) -> Any:
    return copy.deepcopy(rng.choice(EXTREMES))


def _set_extreme(data: dict[str, Any], rng: random.Random) -> None:
    path = rng.choice(_leaf_paths(data) or [("name",)])
    _set(data, path, _extreme(rng))


def _set_known_field(data: dict[str, Any], rng: random.Random) -> None:
    _set(data, tuple(rng.choice(FIELD_PATHS).split(".")), _extreme(rng))


def _unknown_key(data: dict[str, Any], rng: random.Random) -> None:
    mappings = [p for p in _leaf_paths(data) if isinstance(_get(data, p), dict)] + [()]
    path = rng.choice(mappings)
    _set(data, (*path, rng.choice(["colour", "n_seeds", "y" * 5000, "1"])), _extreme(rng))


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for key in path:
        node = node[key]
    return node


def _grid(data: dict[str, Any], rng: random.Random) -> None:
    grid: dict[str, Any] = {}
    if rng.random() < 0.2:
        # astronomically many points: must be counted, never expanded
        grid = {f"agent.extra_{k}": list(range(rng.randint(2, 50))) for k in range(40)}
    else:
        for _ in range(rng.randint(1, 3)):
            values = [_extreme(rng) for _ in range(rng.randint(0, 4))]
            grid[rng.choice(FIELD_PATHS)] = values if rng.random() < 0.9 else _extreme(rng)
    data["grid"] = grid


def _sweep(data: dict[str, Any], rng: random.Random) -> None:
    kind = rng.choice(["categorical", "int", "float", "bogus"])
    low, high = sorted([rng.choice([0, 1, 1e-12, 1e12, 2**64, 1e308]), rng.random()])
    parameter: dict[str, Any] = {"type": kind, "low": low, "high": high}
    if rng.random() < 0.5:
        parameter["step"] = rng.choice([1e-12, 1e-300, 1, 0.5, 10**12, -1, 0])
    if rng.random() < 0.3:
        parameter["log"] = True
    if kind == "categorical":
        parameter = {"type": kind, "choices": [_extreme(rng) for _ in range(rng.randint(0, 3))]}
    sweep: dict[str, Any] = {
        "sampler": rng.choice(["grid", "tpe", "random", "cmaes", "annealing"]),
        "space": {rng.choice(FIELD_PATHS): parameter},
    }
    if rng.random() < 0.5:
        sweep["n_trials"] = rng.choice([1, 10, 2**64, 0])
    data["sweep"] = sweep
    if rng.random() < 0.7:
        data.pop("grid", None)


def _env(data: dict[str, Any], rng: random.Random) -> None:
    env = data.setdefault("env", {}) if isinstance(data.get("env"), dict) else {}
    data["env"] = env
    if rng.random() < 0.4:
        env["id"] = rng.choice(ENV_IDS)
    env["kwargs"] = {rng.choice(ENV_ARGUMENTS): _extreme(rng) for _ in range(rng.randint(1, 2))}


def _agent(data: dict[str, Any], rng: random.Random) -> None:
    agent = data.get("agent") if isinstance(data.get("agent"), dict) else {}
    data["agent"] = {**agent, "name": rng.choice(AGENT_NAMES)}


def _nest(data: dict[str, Any], rng: random.Random) -> None:
    junk: Any = 1
    for _ in range(rng.randint(1, 60)):
        junk = [junk] if rng.random() < 0.5 else {"k": junk}
    _set(data, rng.choice(_leaf_paths(data) or [("description",)]), junk)


def _perturb(data: dict[str, Any], rng: random.Random) -> None:
    """A plausible edit: a number scaled by up to 2x either way (often still valid)."""
    numbers = [
        p
        for p in _leaf_paths(data)
        if isinstance(_get(data, p), int | float) and not isinstance(_get(data, p), bool)
    ]
    if numbers:
        path = rng.choice(numbers)
        value = _get(data, path) * rng.uniform(0.5, 2.0)
        _set(data, path, round(value) if isinstance(_get(data, path), int) else value)


MUTATIONS: list[Callable[[dict[str, Any], random.Random], None]] = [
    _perturb,
    _perturb,
    _delete,
    _set_extreme,
    _set_known_field,
    _set_known_field,
    _unknown_key,
    _grid,
    _sweep,
    _env,
    _env,
    _agent,
    _nest,
]


def _damage_text(text: str, rng: random.Random) -> str:
    """Raw-text mutations that no dict can express."""
    choice = rng.randrange(5)
    if choice == 0:
        return text + "\nname: again\n"
    if choice == 1:
        return "base: &base [1, 2]\n" + text + "\nextra: *base\n"
    if choice == 2:
        return text[: rng.randrange(len(text))]
    if choice == 3:
        position = rng.randrange(len(text))
        return (
            text[:position]
            + rng.choice(["\t", "{", "]", ": :", "\x00", "!!python/tuple"])
            + text[position:]
        )
    return "[" * rng.randint(30, 3000) + text


def mutated_specs(count: int, seed: int) -> list[str]:
    """``count`` YAML texts derived from the shipped experiments, the same for the same seed."""
    rng = random.Random(seed)
    bases = [yaml.safe_load(path.read_text()) for path in EXPERIMENTS]
    texts = []
    for _ in range(count):
        data = copy.deepcopy(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            rng.choice(MUTATIONS)(data, rng)
        text = yaml.safe_dump(data, sort_keys=False)
        texts.append(_damage_text(text, rng) if rng.random() < 0.1 else text)
    return texts


def validate(runner: CliRunner, path: Path) -> tuple[int, str, BaseException | None]:
    """``rlharness validate path`` in-process: exit code, all output, any uncaught exception."""
    result = runner.invoke(app, ["validate", str(path)])
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return result.exit_code, result.output, exception


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    """A CLI runner warmed up on every shipped experiment (imports are not the spec's time)."""
    cli = CliRunner()
    for path in EXPERIMENTS:
        code, output, exception = validate(cli, path)
        assert (code, exception) == (0, None), output
    return cli


def test_generator_is_seeded_and_mutates():
    first, second = mutated_specs(50, SEED), mutated_specs(50, SEED)
    assert first == second
    shipped = {path.read_text() for path in EXPERIMENTS}
    assert not shipped & set(first)


def test_mutated_specs_exit_0_or_2_without_traceback_in_seconds(runner, tmp_path):
    exits: dict[int, int] = {}
    for index, text in enumerate(mutated_specs(N_SPECS, SEED)):
        path = tmp_path / f"spec-{index}.yaml"
        path.write_text(text)
        started = time.monotonic()
        code, output, exception = validate(runner, path)
        elapsed = time.monotonic() - started
        context = (index, output[-2000:], text[:2000])
        assert exception is None, (*context, repr(exception))
        assert code in (0, 2), context
        assert "Traceback" not in output, context
        assert max(map(len, output.splitlines()), default=0) <= MAX_LINE, context
        assert elapsed < MAX_SECONDS_PER_SPEC, (elapsed, *context)
        exits[code] = exits.get(code, 0) + 1
    assert exits.get(0, 0) >= N_SPECS // 20, f"some mutated specs are still valid: {exits}"
    assert exits.get(2, 0) >= N_SPECS // 2, exits
