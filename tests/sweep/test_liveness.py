"""Launcher liveness: a running trial is stale once its launcher is gone, and only then."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import optuna
from optuna.trial import TrialState

from rlharness.sweep.liveness import (
    CLAIM_GRACE_S,
    STALE_AFTER_S,
    Launcher,
    stale_reason,
    unclaimed,
)


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


def test_a_running_trial_nobody_claimed_is_stale_after_the_claim_grace():
    """A launcher stopped between Optuna's ask and its claim leaves such a trial behind."""
    me = Launcher.this()
    now = time.time()

    def asked(seconds_ago: float) -> optuna.trial.FrozenTrial:
        trial = optuna.trial.create_trial(state=TrialState.RUNNING)
        trial.datetime_start = datetime.fromtimestamp(now - seconds_ago)
        return trial

    assert unclaimed(asked(0.0))
    assert stale_reason(asked(0.1), me, now) is None, "another launcher may be claiming it now"
    assert "no launcher claimed it" in (stale_reason(asked(CLAIM_GRACE_S + 1), me, now) or "")
    claimed = optuna.trial.create_trial(
        state=TrialState.RUNNING, user_attrs={"launcher": me.record(since=now)}
    )
    assert not unclaimed(claimed)
