"""Custom Gymnasium environments that expose the deadly triad, each with its exact model.

Importing this package registers the ``triad/*`` ids with Gymnasium.
"""

from gymnasium.envs.registration import register, registry

from rlharness_envs.base import EnvArgumentError, FiniteMDPEnv
from rlharness_envs.model import ExactModel

CONTINUING_EPISODE_STEPS = 1000

TRIAD_ENVS: dict[str, tuple[str, int | None]] = {
    "triad/Baird-v0": ("rlharness_envs.baird:BairdEnv", CONTINUING_EPISODE_STEPS),
    "triad/BairdControl-v0": (
        "rlharness_envs.baird_control:BairdControlEnv",
        CONTINUING_EPISODE_STEPS,
    ),
    "triad/TwoState-v0": ("rlharness_envs.two_state:TwoStateEnv", CONTINUING_EPISODE_STEPS),
    "triad/TsitsiklisVanRoy-v0": ("rlharness_envs.tsitsiklis_van_roy:TsitsiklisVanRoyEnv", None),
    "triad/RandomWalk-v0": ("rlharness_envs.random_walk:RandomWalkEnv", None),
    "triad/Kolter-v0": ("rlharness_envs.kolter:KolterEnv", CONTINUING_EPISODE_STEPS),
}

for _env_id, (_entry_point, _max_steps) in TRIAD_ENVS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)

__all__ = ["TRIAD_ENVS", "EnvArgumentError", "ExactModel", "FiniteMDPEnv"]
