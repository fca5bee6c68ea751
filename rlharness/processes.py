"""Whether a recorded process still runs: used for sweep launchers and for run staging dirs.

A process is recorded by host, pid and start time (clock ticks since boot on
Linux), so that a pid reused by another process is not mistaken for it.
Ray-free, so that the results store and the CLI can use it without starting Ray.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any


def process_alive(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` runs and is the one that started at ``start`` (if known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start is None or process_start(pid) in (None, start)


def process_start(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux ``/proc``), or None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def this_process() -> dict[str, Any]:
    """The current process as a record: ``host``, ``pid`` and ``start``."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": process_start(pid)}
