"""Environments by Gymnasium id, checked so that bad ids and arguments read as spec errors."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym

import rlharness_envs
from rlharness.errors import SpecError, short, short_text
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
    """The env of a spec, made once as the agents make it, or `SpecError` naming what is wrong.

    Whatever the env's registration or constructor raises becomes a message:
    a missing optional dependency names ``env.id``; a rejected argument names
    ``env.kwargs.<argument>`` (triad envs say which; otherwise the only one given).
    """
    register_optional_envs(env.id, where)
    if env.id not in gym.registry:
        triad = ", ".join(sorted(rlharness_envs.TRIAD_ENVS))
        raise SpecError(
            where,
            [
                f"env.id: unknown environment {short(env.id)}; available: {triad} "
                "(dqn also takes any registered Gymnasium id, e.g. CartPole-v1)"
            ],
        )
    try:
        creator = env_creator(env.id)
        parameters = inspect.signature(creator).parameters
    except Exception as error:  # an env module may fail to import in any way
        raise SpecError(where, [f"env.id: {env.id} {_failure(error)}"]) from None
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [] if accepts_any else sorted(set(env.kwargs) - set(parameters))
    if unknown:
        allowed = ", ".join(name for name in parameters if name != "self") or "(none)"
        raise SpecError(
            where,
            [
                f"env.kwargs.{short_text(name)}: not an argument of {env.id}; allowed: {allowed}"
                for name in unknown
            ],
        )
    try:
        made: gym.Env = gym.make(env.id, **env.kwargs)
    except rlharness_envs.EnvArgumentError as error:
        raise SpecError(where, [f"env.kwargs.{error.argument}: {error.problem}"]) from None
    except Exception as error:  # a constructor may reject arguments in any way
        raise SpecError(where, [f"{_blame(env)}: {env.id} {_failure(error)}"]) from None
    return made


def _blame(env: EnvSpec) -> str:
    """The field to name for a failure the env does not attribute: its only argument, or all."""
    if len(env.kwargs) == 1:
        return f"env.kwargs.{next(iter(env.kwargs))}"
    return "env.kwargs" if env.kwargs else "env.id"


def _failure(error: Exception) -> str:
    """What went wrong making an env, in a sentence: a missing dependency, or the error itself."""
    text = short_text(str(error) or type(error).__name__, 200)
    if isinstance(error, ImportError | gym.error.DependencyNotInstalled):
        return f"needs an optional dependency that is not installed: {text}"
    return f"cannot be made with these arguments: {type(error).__name__}: {text}"
