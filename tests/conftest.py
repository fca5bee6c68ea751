"""Shared fixtures: a tiny, valid experiment that runs in well under a second."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "description": "Baird, semi-gradient TD, 50 steps: a smoke test.",
    "env": {"id": "triad/Baird-v0"},
    "agent": {
        "name": "semi_gradient_td",
        "alpha": 0.01,
        "initial_weights": [1, 1, 1, 1, 1, 1, 10, 1],
    },
    "run": {"steps": 50, "log_every": 10, "seeds": 3},
    "grid": {"triad.off_policy": [False, True]},
}


@pytest.fixture
def tiny_spec() -> dict[str, Any]:
    """A fresh, mutable copy of a valid 2-point x 3-seed experiment (50 steps, log every 10)."""
    return copy.deepcopy(TINY_SPEC)
