"""Launcher liveness: who runs a trial, its heartbeats, and when its launcher counts as gone.

Each launcher records itself on the trials it claims (`Launcher.record`) and
beats on them every `HEARTBEAT_S` (`beat`). Another launcher sharing the
study fails and re-queues a running trial once `stale_reason` finds its
launcher gone: a process on this host that no longer runs, or no heartbeat
for `STALE_AFTER_S`. A launcher claims a trial right after Optuna hands it out;
one that stops in between leaves a running trial that nobody claimed, which
counts as gone once it is `CLAIM_GRACE_S` old.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from rlharness.processes import process_alive, process_start
from rlharness.sweep.study import HEARTBEAT, LAUNCHER

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0
"""A running trial whose launcher sent no heartbeat for this long is failed and re-queued."""
CLAIM_GRACE_S = 10.0
"""A running trial that no launcher claimed within this long is failed and re-queued."""


@dataclass(frozen=True)
class Launcher:
    """Who runs a trial: recorded on it so that another launcher can tell whether it is gone."""

    id: str
    host: str
    pid: int
    start: int | None
    """The process's start time in clock ticks (Linux), so a reused pid is not mistaken for it."""

    @classmethod
    def this(cls) -> Launcher:
        """The current process."""
        pid = os.getpid()
        return cls(uuid.uuid4().hex[:12], socket.gethostname(), pid, process_start(pid))

    def record(self, since: float | None = None) -> dict[str, Any]:
        """As a trial attribute; ``since``: when it claimed the trial (Unix time)."""
        record: dict[str, Any] = {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "start": self.start,
        }
        if since is not None:
            record["since"] = since
        return record


def claim(trial: optuna.Trial, launcher: Launcher) -> None:
    """Record on ``trial`` that ``launcher`` runs it from now on."""
    trial.set_user_attr(LAUNCHER, launcher.record(since=time.time()))


def unclaimed(trial: FrozenTrial) -> bool:
    """Whether a running trial has no launcher yet (one is starting it, or stopped doing so)."""
    return not trial.user_attrs.get(LAUNCHER)


def beat(trial: optuna.Trial) -> None:
    """Show that the launcher running ``trial`` is alive."""
    trial.set_user_attr(HEARTBEAT, time.time())


def stale_reason(trial: FrozenTrial, launcher: Launcher, now: float) -> str | None:
    """Why a running trial's launcher is gone (seen from ``launcher``), or None if it may be alive.

    Gone: a process on this host that no longer runs, or no heartbeat for `STALE_AFTER_S`.
    """
    owner = trial.user_attrs.get(LAUNCHER) or {}
    if owner.get("id") == launcher.id:
        return None
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    if not owner:
        if now - started > CLAIM_GRACE_S:
            return f"no launcher claimed it within {CLAIM_GRACE_S:.0f} s (one stopped starting it)"
        return None
    pid = owner.get("pid")
    on_this_host = owner.get("host") == launcher.host
    if on_this_host and isinstance(pid, int) and not process_alive(pid, owner.get("start")):
        return f"its launcher (pid {pid} on {owner['host']}) is gone"
    beat_at = float(trial.user_attrs.get(HEARTBEAT, owner.get("since", started)))
    if now - beat_at > STALE_AFTER_S:
        return f"its launcher sent no heartbeat for {now - beat_at:.0f} s"
    return None
