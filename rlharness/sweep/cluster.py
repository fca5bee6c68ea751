"""Ray execution of trials: a local Ray started on demand, or an existing cluster joined by address.

Ray only executes: each task runs `run_trial` on one chunk of a trial's
seeds and returns its `TrialResult` to the launcher, which alone talks to
the Optuna storage and writes the results store. A task whose worker
process dies (or whose node is lost) is re-run by Ray up to ``retries``
times; after that the launcher fails the trial and re-queues it. Each
attempt leaves where it runs in Ray's key-value store, so that a re-run can
say which worker was lost.

A local Ray starts without its dashboard and job server, with token
authentication, and on 127.0.0.1 only (see `ray_env.prepare_local`); a
cluster's dashboard binds to whatever ``ray start --dashboard-host`` says
(loopback by default). Ray's usage-statistics reporting is off unless the
user turns it on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayTaskError
from ray.experimental import internal_kv

from rlharness import ray_env
from rlharness.errors import SpecError
from rlharness.live import Observers
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
ATTEMPTS = "rlharness-attempts"
"""The namespace, in Ray's key-value store, of where each running task's attempt runs."""


@dataclass(frozen=True)
class Attempt:
    """Where one attempt of a task runs: its worker process and Ray node."""

    pid: int
    node: str
    """The node's id (hex)."""
    address: str

    def __str__(self) -> str:
        return f"pid {self.pid} on Ray node {self.node[:8]} ({self.address})"


@dataclass(frozen=True)
class TaskRun:
    """A task's result and where it ran; ``lost``: the attempt before, whose worker was lost."""

    result: TrialResult
    ran: Attempt
    lost: Attempt | None

    def rerun_note(self) -> str | None:
        """What to tell the user about a task that Ray had to run again; None if it ran once."""
        if self.lost is None:
            return None
        return f"its Ray worker was lost ({self.lost}); Ray ran it again ({self.ran})"


def run_trial_task(config: TrialConfig, live_dir: str | None) -> TaskRun:
    """One chunk of one trial, on a Ray worker (its process title is ``ray::run_trial_task``).

    With ``live_dir`` (and ``run.tensorboard``), each record streams as it is logged to
    TensorBoard event files under it, on the worker's filesystem. A re-run of a task keeps
    its task id, so the record of the attempt before, left in Ray's key-value store, names
    the worker that was lost.
    """
    context = ray.get_runtime_context()
    key = _attempt_key(context.get_task_id() or "")
    here = Attempt(os.getpid(), context.get_node_id(), ray.util.get_node_ip_address())
    before = internal_kv._internal_kv_get(key, namespace=ATTEMPTS)
    internal_kv._internal_kv_put(key, json.dumps(asdict(here)), namespace=ATTEMPTS)
    observer = _streams(config, live_dir)
    try:
        result = run_trial(config, observer=observer)
    finally:
        observer.close()
        internal_kv._internal_kv_del(key, namespace=ATTEMPTS)
    lost = Attempt(**json.loads(before)) if before is not None else None
    return TaskRun(result, here, lost)


def _streams(config: TrialConfig, live_dir: str | None) -> Observers:
    """The chunk's TensorBoard streams under ``live_dir`` (none without it or the setting)."""
    if live_dir is None or not config.spec.run.tensorboard:
        return Observers()
    from rlharness.live.tensorboard import TensorBoardStreams

    spec = config.spec
    context = {"experiment": spec.name, "agent": spec.agent.name, "env": spec.env.id}
    return Observers(TensorBoardStreams(Path(live_dir), {config.variant: config.settings}, context))


def _attempt_key(task_id: str) -> bytes:
    return task_id.encode()


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

    def submit(self, config: TrialConfig, live_dir: Path | None = None) -> ray.ObjectRef:
        """Run ``config`` as a Ray task with the trial's resources and retries, streaming its
        records to TensorBoard under ``live_dir``."""
        return self._task.remote(config, None if live_dir is None else str(live_dir))

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

    @staticmethod
    def where_lost(ref: ray.ObjectRef) -> str:
        """`` (where its last attempt ran)`` for a task Ray gave up on; ``""`` if unknown."""
        key = _attempt_key(ref.task_id().hex())
        record = internal_kv._internal_kv_get(key, namespace=ATTEMPTS)
        if record is None:
            return ""
        internal_kv._internal_kv_del(key, namespace=ATTEMPTS)
        return f" ({Attempt(**json.loads(record))})"

    def close(self) -> None:
        """Disconnect; a local Ray started here shuts down."""
        if self.started_here:
            ray.shutdown()


class TrialError(Exception):
    """A trial's task raised: an error in the trial itself, not in the machinery."""


def result_of(ref: ray.ObjectRef) -> TaskRun:
    """The task's run; `TrialError` if the trial raised, Ray's error if its worker was lost."""
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
    by ``cpus_per_trial``. An unreachable address, or a local Ray that would
    run without token authentication, raises `SpecError`.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None  # inside a Ray job: its cluster
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray_env.prepare_local()
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
    try:
        _init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        problem = f"cannot join the Ray cluster at {address}: {first}"
        raise SpecError(WHERE, [problem + _token_hint()]) from None


def _token_hint() -> str:
    """Where Ray's token goes, when this process has none to send."""
    if ray_env.token_source() is not None:
        return ""
    return (
        " (a cluster with token authentication needs its token here: in "
        f"{ray_env.default_token_path()}, {ray_env.TOKEN_PATH} or {ray_env.TOKEN})"
    )


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


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
