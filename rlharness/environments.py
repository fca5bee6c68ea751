"""Environments by Gymnasium id, checked so that bad ids and arguments read as spec errors."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym

import rlharness_envs
from rlharness.errors import SpecError
from rlharness.spec import EnvSpec


def env_creator(env_id: str) -> Callable[..., Any]:
    """The class or factory registered for a Gymnasium id."""
    entry_point = gym.spec(env_id).entry_point
    if callable(entry_point):
        return entry_point
    creator: Callable[..., Any] = gym.envs.registration.load_env_creator(str(entry_point))
    return creator


MINATAR_PREFIX = "MinAtar/"


def register_optional_envs(env_id: str, where: str) -> None:
    """Register MinAtar's ids when one is asked for (the optional extra ``minatar``)."""
    if not env_id.startswith(MINATAR_PREFIX) or env_id in gym.registry:
        return
    try:
        import minatar.gym
    except ImportError:
        raise SpecError(
            where,
            [f"env.id: {env_id} needs MinAtar: pip install -e '.[minatar]'"],
        ) from None
    minatar.gym.register_envs()


def instantiate_env(env: EnvSpec, where: str) -> gym.Env:
    """The env of a spec, built once to check its id and arguments, or `SpecError`."""
    register_optional_envs(env.id, where)
    if env.id not in gym.registry:
        triad = ", ".join(sorted(rlharness_envs.TRIAD_ENVS))
        raise SpecError(
            where,
            [
                f"env.id: unknown environment '{env.id}'; available: {triad} "
                "(dqn also takes any registered Gymnasium id, e.g. CartPole-v1)"
            ],
        )
    creator = env_creator(env.id)
    parameters = inspect.signature(creator).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [] if accepts_any else sorted(set(env.kwargs) - set(parameters))
    if unknown:
        allowed = ", ".join(name for name in parameters if name != "self") or "(none)"
        raise SpecError(
            where,
            [
                f"env.kwargs.{name}: not an argument of {env.id}; allowed: {allowed}"
                for name in unknown
            ],
        )
    try:
        made: gym.Env = creator(**{**gym.spec(env.id).kwargs, **env.kwargs})
    except (TypeError, ValueError) as error:
        raise SpecError(where, [f"env.kwargs: {env.id}: {error}"]) from None
    return made
