"""User-facing errors: bad input is reported by field, with what is allowed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


class SpecError(Exception):
    """An experiment that cannot run as written; each message names a field."""

    def __init__(self, where: str, messages: list[str]) -> None:
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
        path = ".".join(str(part) for part in location) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(_fields_at(model, location[:-1])))
            problem = f"unknown field; allowed fields here: {allowed}"
        elif item["type"] == "missing":
            problem = "required field is missing"
        else:
            problem = f"{item['msg']} (got {_short(item.get('input'))})"
        problems.setdefault(path, []).append(problem)
    return [f"{path}: {' or '.join(found)}" for path, found in problems.items()]


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in {"int", "literal['inf']", "list[float]", "float"}


def _fields_at(model: type[BaseModel], location: list[Any]) -> list[str]:
    current: type[BaseModel] = model
    for part in location:
        field = current.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
