"""Launcher liveness: a running trial is stale once its launcher is gone, and only then."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from rlharness.sweep.liveness import STALE_AFTER_S, Launcher, stale_reason


def test_a_running_trial_is_stale_when_its_launcher_is_gone():
    me = Launcher.this()
    now = time.time()

    def running(owner: dict, heartbeat: float) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(
            state=TrialState.RUNNING, user_attrs={"launcher": owner, "heartbeat": heartbeat}
        )

    assert stale_reason(running(me.record(), now - 10 * STALE_AFTER_S), me, now) is None
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = {**me.record(), "id": "other", "pid": int(exited.stdout)}
    assert "is gone" in (stale_reason(running(dead, now), me, now) or "")
    elsewhere = {**me.record(), "id": "other", "host": "another-host", "pid": 1}
    assert stale_reason(running(elsewhere, now - 5), me, now) is None
    assert "no heartbeat for" in (
        stale_reason(running(elsewhere, now - STALE_AFTER_S - 1), me, now) or ""
    )
    reused = {**me.record(), "id": "other", "start": (me.start or 0) + 1}
    assert "is gone" in (stale_reason(running(reused, now), me, now) or ""), "a reused pid"
