"""Machine facts shared by the benchmark scripts: the CPU model and a facts table."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from rich.table import Table


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def facts_table(facts: dict[str, Any]) -> Table:
    """The machine facts as a two-column table."""
    table = Table(title="Machine")
    table.add_column("fact")
    table.add_column("value")
    for key, value in facts.items():
        table.add_row(key, str(value))
    return table
