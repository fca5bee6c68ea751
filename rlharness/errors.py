"""User-facing errors: bad input is reported by field, with what is allowed."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

MAX_MESSAGE_CHARS = 600
"""No message is longer: echoed values are shortened where quoted; this caps the rest."""


class SpecError(Exception):
    """An experiment that cannot run as written; each message names a field."""

    def __init__(self, where: str, messages: list[str]) -> None:
        messages = [_cap(message) for message in messages]
        super().__init__(f"{where}: " + "; ".join(messages))
        self.where = where
        self.messages = messages


def format_validation_error(error: ValidationError, model: type[BaseModel]) -> list[str]:
    """Turn pydantic's errors into one line per field, listing allowed fields for unknown ones.

    The alternatives of a union (e.g. an integer or 'inf') are joined on one line.
    """
    problems: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if not _is_union_tag(part)]
        path = short_text(".".join(str(part) for part in location), 80) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(_fields_at(model, list(item["loc"][:-1]))))
            problem = f"unknown field; allowed fields here: {allowed}"
        elif item["type"] == "missing":
            problem = "required field is missing"
        elif item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            context = item.get("ctx", {})
            path = f"{path}.{str(context.get('discriminator', 'name')).strip(chr(39))}"
            expected = context.get("expected_tags", "")
            problem = (
                f"unknown value {context['tag']!r}; allowed: {expected}"
                if item["type"] == "union_tag_invalid"
                else "required field is missing"
            )
        else:
            message = item["msg"].removeprefix("Value error, ")
            problem = f"{message} (got {short(item.get('input'))})"
        problems.setdefault(path, []).append(problem)
    return [f"{path}: {' or '.join(found)}" for path, found in problems.items()]


def _is_union_tag(part: Any) -> bool:
    """Parts of pydantic's error locations that name a union member, not a field."""
    from rlharness.spec import AGENT_NAMES

    return isinstance(part, str) and (
        part in {"int", "literal['inf']", "list[float]", "float"} or part in AGENT_NAMES
    )


def _fields_at(model: type[BaseModel], location: list[Any]) -> list[str]:
    """The fields of the model at a raw error location (union members picked by their tag)."""
    current: type[BaseModel] = model
    index = 0
    while index < len(location):
        field = current.model_fields.get(str(location[index]))
        members = _model_members(field.annotation) if field is not None else []
        if len(members) == 1:
            current, index = members[0], index + 1
            continue
        tag = location[index + 1] if index + 1 < len(location) else None
        tagged = [m for m in members if tag in typing.get_args(m.model_fields["name"].annotation)]
        if not tagged:
            return []
        current, index = tagged[0], index + 2
    return list(current.model_fields)


def _model_members(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation admits (itself, or the members of a union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [member for arg in typing.get_args(annotation) for member in _model_members(arg)]


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters so that messages quote values, not dump them."""
    return short_text(_safe_repr(value), limit)


def short_text(text: str, limit: int = 60) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except (RecursionError, ValueError):
        # nested too deeply to print, or an int too long for str(); its type still helps
        return f"<{type(value).__name__}>"


def _cap(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    half = MAX_MESSAGE_CHARS // 2 - 3
    return f"{message[:half]} ... {message[-half:]}"
