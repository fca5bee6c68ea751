"""Ray execution of trials: a local Ray started on demand, or an existing cluster joined by address.

Ray only executes: each task runs `run_trial` on one chunk of a trial's
seeds and returns its `TrialResult` to the launcher, which alone talks to
the Optuna storage and writes the results store. A task whose worker
process dies is re-run by Ray up to ``retries`` times; after that the
launcher fails the trial and re-queues it.

A local Ray starts without its dashboard and job server; a cluster's
dashboard binds to whatever ``ray start --dashboard-host`` says (loopback by
default). Ray's usage-statistics reporting is off unless the user turns it on.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayTaskError

from rlharness.errors import SpecError
from rlharness.runner import TrialConfig, TrialResult, run_trial

WHERE = "--address"
REACH_TIMEOUT_S = 5
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)
"""A trial uses no more threads than the CPUs it asked for."""


def run_trial_task(config: TrialConfig) -> TrialResult:
    """One chunk of one trial, on a Ray worker (its process title is ``ray::run_trial_task``)."""
    return run_trial(config)


_remote_trial = ray.remote(run_trial_task)


@dataclass
class Cluster:
    """A connection to Ray and the per-trial resources of the tasks it runs."""

    workers: int
    """Trials in flight at once."""
    cpus_per_trial: float
    gpus_per_trial: float
    retries: int
    started_here: bool
    address: str

    def __post_init__(self) -> None:
        threads = str(max(1, math.floor(self.cpus_per_trial)))
        self._task = _remote_trial.options(
            num_cpus=self.cpus_per_trial,
            num_gpus=self.gpus_per_trial,
            max_retries=self.retries,
            retry_exceptions=False,
            runtime_env={"env_vars": dict.fromkeys(THREAD_VARIABLES, threads)},
        )

    def submit(self, config: TrialConfig) -> ray.ObjectRef:
        """Run ``config`` as a Ray task with the trial's resources and retries."""
        return self._task.remote(config)

    @staticmethod
    def wait(refs: Sequence[ray.ObjectRef], timeout: float) -> list[ray.ObjectRef]:
        """The tasks among ``refs`` that finished, waiting up to ``timeout`` seconds for one."""
        if not refs:
            return []
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout)
        return ready

    @staticmethod
    def cancel(ref: ray.ObjectRef) -> None:
        """Stop a task, killing its worker if it is running."""
        ray.cancel(ref, force=True)

    def close(self) -> None:
        """Disconnect; a local Ray started here shuts down."""
        if self.started_here:
            ray.shutdown()


class TrialError(Exception):
    """A trial's task raised: an error in the trial itself, not in the machinery."""


def result_of(ref: ray.ObjectRef) -> TrialResult:
    """The task's result; `TrialError` if the trial raised, Ray's error if its worker was lost."""
    try:
        return ray.get(ref)
    except RayTaskError as error:
        cause = error.cause if error.cause is not None else error
        raise TrialError(f"{type(cause).__name__}: {cause}") from None


def connect(
    address: str | None,
    workers: int | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    retries: int,
) -> Cluster:
    """Join ``address`` (``auto``, ``host:port``, ``ray://host:port``) or start a local Ray.

    Without an address, a process inside a Ray job (``RAY_ADDRESS`` set) joins that cluster.

    A local Ray gets ``workers`` x ``cpus_per_trial`` CPUs (all cores by
    default). On a cluster, ``workers`` defaults to the CPUs it has divided
    by ``cpus_per_trial``. An unreachable address raises `SpecError`.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None  # inside a Ray job: its cluster
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            count = workers or _usable_cpus()
            _init(num_cpus=math.ceil(count * cpus_per_trial), include_dashboard=False)
        else:
            _join(address)
    if workers is None:
        cpus = ray.cluster_resources().get("CPU", 1.0)
        workers = max(1, math.floor(cpus / cpus_per_trial))
    return Cluster(
        workers=workers,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        retries=retries,
        started_here=started_here,
        address=address or "local",
    )


def _join(address: str) -> None:
    """Connect to a running cluster, failing fast and clearly if nothing answers there."""
    if address != "auto":
        _check_reachable(address)
    _enable_token_auth_if_available()
    try:
        _init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SpecError(WHERE, [f"cannot join the Ray cluster at {address}: {first}"]) from None


def _init(**kwargs: Any) -> None:
    ray.init(logging_level=logging.WARNING, log_to_driver=False, **kwargs)


def _check_reachable(address: str) -> None:
    """Raise `SpecError` unless something accepts TCP connections at ``address``."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SpecError(
            WHERE, [f"{address!r} is not a Ray address; use auto, HOST:PORT or ray://HOST:PORT"]
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise SpecError(WHERE, [f"cannot reach a Ray cluster at {address}: {reason}"]) from None


def _enable_token_auth_if_available() -> None:
    """Send Ray's auth token when one is at hand: clusters started with a token require it."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or Path(token_file).is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
