"""Machine facts shared by the benchmark scripts: what the figures depend on, and a table."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
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


def machine_facts(**specific: Any) -> dict[str, Any]:
    """CPU, load and platform facts, then the ``specific`` ones (library versions, threads)."""
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "load_average_1_5_15": tuple(round(x, 2) for x in os.getloadavg()),
        **specific,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def facts_table(facts: dict[str, Any]) -> Table:
    """The machine facts as a two-column table."""
    table = Table(title="Machine")
    table.add_column("fact")
    table.add_column("value")
    for key, value in facts.items():
        table.add_row(key, str(value))
    return table
