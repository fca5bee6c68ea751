"""The listings ``envs`` and ``agents``: what an experiment file may name, in plain words."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rlharness.cli.tables import Format, print_frame

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
"""pydantic's bound constraints and how they read."""


def envs() -> None:
    """List the triad environments, their constructor arguments and what each is."""
    import inspect

    import pandas as pd

    import rlharness_envs
    from rlharness.environments import env_creator

    rows = []
    for env_id in rlharness_envs.TRIAD_ENVS:
        creator = env_creator(env_id)
        arguments = ", ".join(
            f"{name}={parameter.default!r}"
            for name, parameter in inspect.signature(creator).parameters.items()
        )
        description = prose(inspect.getdoc(creator) or "").removeprefix(f"{env_id}: ")
        rows.append((env_id, arguments, description[:1].upper() + description[1:]))
    frame = pd.DataFrame.from_records(rows, columns=["env.id", "env.kwargs (defaults)", "about"])
    print_frame(frame, Format.table, "triad environments (any Gymnasium id works too)")


def agents() -> None:
    """List the linear learning rules and what each supports, then each deep agent's knobs."""
    import pandas as pd

    from rlharness.agents.linear import RULES
    from rlharness.spec import DQNAgentSpec, PQNAgentSpec

    linear = pd.DataFrame.from_records(
        [
            (
                name,
                ", ".join(rule.updates),
                "any, inf" if rule.multi_step else "1",
                "any" if rule.target_network else "1",
                "true, false" if rule.on_policy_form else "true",
                "required" if rule.uses_beta else "-",
            )
            for name, rule in RULES.items()
        ],
        columns=[
            "agent.name",
            "agent.update",
            "triad.n_step",
            "triad.target_update_period",
            "triad.off_policy",
            "agent.beta",
        ],
    )
    print_frame(linear, Format.table, "linear learning rules")
    for model in (DQNAgentSpec, PQNAgentSpec):
        name = typing.get_args(model.model_fields["name"].annotation)[0]
        knobs = pd.DataFrame.from_records(
            list(knob_rows(model, model.model_construct(), "agent")),
            columns=["field", "default", "allowed", "description"],
        )
        title = f"agent.name: {name} ({prose(model.__doc__ or '')})"
        print_frame(knobs[knobs["field"] != "agent.name"], Format.table, title)


def knob_rows(
    model: type[BaseModel], defaults: BaseModel, prefix: str
) -> Iterator[tuple[str, str, str, str]]:
    """Each field of ``model`` as (dotted path, default, allowed values, description); the
    fields of a nested model one by one, with the defaults its parent gives them."""
    from pydantic import BaseModel

    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}"
        default = getattr(defaults, name, None)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from knob_rows(annotation, typing.cast("BaseModel", default), path)
            continue
        shown = "-" if info.is_required() else _yaml(default)
        yield path, shown, allowed(info), prose(info.description or "")


def allowed(info: FieldInfo) -> str:
    """The values a field takes, in words: its literals, or its type and bounds, or null."""
    from rlharness.spec import MAX_COUNT

    annotation = info.annotation
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if union else (annotation,)
    words: list[str] = []
    for option in options:
        if typing.get_origin(option) is typing.Literal:
            words.extend(map(str, typing.get_args(option)))
        elif option is bool:
            words.extend(("true", "false"))
        elif option is not type(None):
            bounds = [
                f"{sign} {getattr(constraint, key)}"
                for constraint in info.metadata
                for key, sign in BOUNDS
                if getattr(constraint, key, None) not in (None, MAX_COUNT)
            ]
            words.append(" ".join([getattr(option, "__name__", str(option)), ", ".join(bounds)]))
    if type(None) in options:
        words.append("null")
    return ", ".join(word.strip() for word in words)


def prose(doc: str) -> str:
    """The first paragraph of a docstring on one line, without reStructuredText markup."""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    first = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", first)
    return re.sub(r"`{1,2}([^`]+)`{1,2}", r"\1", first)


def _yaml(value: Any) -> str:
    """A default as it would be written in the experiment file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
