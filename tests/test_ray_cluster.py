"""Ray as the README documents it (Ray 2.60): a token cluster joined by ``--address auto`` and by
``ray job submit``, a local Ray that listens on loopback only and asks for its token, and a
two-node cluster that loses a node mid-sweep.

Every command runs in the environment of a user who follows the README (`user_env`): no
``RAY_AUTH_*`` variable, Ray's token in ``~/.ray/auth_token`` of a home of the test's own.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from optuna.trial import TrialState

from rlharness.storage import default_url
from tests.clusters import (
    BIN,
    Listener,
    RayHead,
    descendants,
    listeners,
    process_title,
    ray_token,
    raylet_of,
    start_ray_head,
    start_ray_worker_node,
    stopping,
    user_env,
    worker_pids,
)
from tests.conftest import REPO
from tests.test_cli import write_spec
from tests.test_sweep_cli import (
    LAUNCH_TIMEOUT_S,
    counts,
    launch,
    load,
    slow_random_sweep,
    spec,
    trial_dirs,
)

pytestmark = pytest.mark.slow

STATE_TIMEOUT_S = 180
"""How long a test waits for a state it expects (Ray starts slowly on a loaded machine)."""
RAY_METHODS = (
    "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo",
    "/ray.rpc.InternalKVGcsService/InternalKVGet",
    "/ray.rpc.NodeManagerService/GetNodeStats",
    "/ray.rpc.ObjectManagerService/Pull",
    "/ray.rpc.CoreWorkerService/GetCoreWorkerStats",
    "/ray.rpc.LogService/ListLogs",
    "/ray.rpc.events.EventAggregatorService/AddEvents",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
)
"""One method of each gRPC service of Ray's processes: a server without it answers UNIMPLEMENTED."""
WAIT_FOR_AN_ATTEMPT = """
import json, sys, time
from rlharness.sweep.cluster import ATTEMPTS  # before Ray, so that Ray sends the token
import ray
from ray.experimental import internal_kv

address, node = sys.argv[1], sys.argv[2]
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + {timeout}
while ray.available_resources().get("node2", 0) < 2:
    if time.monotonic() > deadline:
        sys.exit("the second node's resources never showed")
    time.sleep(0.1)
print("ready", flush=True)
while time.monotonic() < deadline:
    for key in internal_kv._internal_kv_list(b"", namespace=ATTEMPTS):
        record = internal_kv._internal_kv_get(key, namespace=ATTEMPTS)
        if record is not None and json.loads(record)["node"] == node:
            print(json.loads(record)["pid"])
            sys.exit(0)
    time.sleep(0.1)
sys.exit("no attempt on the node")
""".replace("{timeout}", str(STATE_TIMEOUT_S))
"""Print ``ready`` once the scheduler can use the second node, then the worker pid of a task
attempt recorded (by `run_trial_task`) as running on that node."""
PROMETHEUS_PROCESSES = ("autoscaler/_private/monitor.py", "dashboard/dashboard.py")
"""Ray's autoscaler and dashboard, whose Prometheus endpoints ask for no token (on loopback)."""


@pytest.fixture
def home() -> Iterator[Path]:
    """A user's home (short: Ray's socket paths under it must stay short), removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="rlh-home-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def token_head(home: Path) -> Iterator[RayHead]:
    """README: ``ray get-auth-token --generate``, then ``ray start --head`` (token auth is on)."""
    env = user_env(home)
    ray_token(env)
    head = start_ray_head(env=env)
    with stopping(head):
        yield head


def until(condition, process: subprocess.Popen[str], what: str) -> None:  # type: ignore[no-untyped-def]
    """Wait for ``condition()`` while ``process`` runs, up to `STATE_TIMEOUT_S`."""
    deadline = time.monotonic() + STATE_TIMEOUT_S
    while not condition():
        assert process.poll() is None, f"ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def http_get(port: int, path: str, token: str | None = None) -> tuple[int, bytes] | None:
    """Status and start of the body of ``GET path``; None if the port does not speak HTTP/1."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(200)
    except (http.client.HTTPException, OSError):
        return None
    finally:
        connection.close()


def grpc_answers(port: int) -> set[grpc.StatusCode]:
    """What the port answers each of `RAY_METHODS`, called without a token."""
    codes = set()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for method in RAY_METHODS:
            try:
                channel.unary_unary(method)(b"", timeout=10)
                codes.add(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.add(error.code())
    return codes


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def assert_needs_the_token(listener: Listener) -> None:
    """No answer with data to a client without the token (Ray's Prometheus text aside)."""
    answer = http_get(listener.port, "/metrics")
    if answer is None:  # a gRPC server (HTTP/2)
        codes = grpc_answers(listener.port)
        assert grpc.StatusCode.OK not in codes, listener
        assert grpc.StatusCode.UNAUTHENTICATED in codes, (listener, codes)
        return
    status, body = answer
    if any(name in command_line(listener.pid) for name in PROMETHEUS_PROCESSES):
        assert status == 200 and body.startswith(b"# HELP"), (listener, answer)
        return
    assert status == 401, (listener, answer)
    assert http_get(listener.port, "/")[0] == 401, listener  # type: ignore[index]


# --- a cluster started as the README says ------------------------------------------------------


def test_sweep_with_address_auto_joins_a_token_cluster_as_documented(token_head, tmp_path):
    assert http_get(token_head.dashboard_port, "/api/jobs/")[0] == 401, "the head asks for a token"  # type: ignore[index]
    spec_path = write_spec(tmp_path, spec())
    out = tmp_path / "results"
    joined = subprocess.run(
        [
            str(BIN / "rlharness"),
            "sweep",
            spec_path,
            "--address",
            "auto",
            "--results",
            out,
            "--quiet",
        ],
        env=token_head.env,
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    output = joined.stdout + joined.stderr
    assert joined.returncode == 0, output
    assert "2 of 2 trials finished" in output
    assert "InvalidAuthToken" not in output and "Unauthenticated" not in output
    assert counts(load(default_url(out, "tiny"))) == {"COMPLETE": 2}


def test_ray_job_submit_runs_a_sweep_as_documented(token_head, tmp_path):
    spec_path = write_spec(tmp_path, spec(grid={"triad.n_step": [1, 2, 3]}))
    out = tmp_path / "results"
    command = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        token_head.dashboard,
        "--working-dir",
        ".",
        "--",
        "rlharness",
        "sweep",
        str(spec_path),
        "--address",
        "auto",
        "--results",
        str(out),
        "--quiet",
    ]

    def submit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        deadline = time.monotonic() + STATE_TIMEOUT_S
        while True:  # the head's job agent may register a little after its dashboard answers
            submitted = subprocess.run(
                command, cwd=REPO, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
            )
            if "No available agent" not in submitted.stderr or time.monotonic() > deadline:
                return submitted
            time.sleep(1)

    # why the README sets RAY_AUTH_MODE for Ray's own commands: they send no token without it
    refused = submit(token_head.env)
    assert refused.returncode != 0
    assert "Missing authentication token" in refused.stdout + refused.stderr
    submitted = submit({**token_head.env, "RAY_AUTH_MODE": "token"})
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, output
    assert "succeeded" in output
    assert "3 of 3 trials finished" in output
    study = load(default_url(out, "tiny"))
    assert counts(study) == {"COMPLETE": 3}
    assert trial_dirs(out) == ["trial-00000", "trial-00001", "trial-00002"]
    # the job's copy of the code has no .git: a plain submit records no commit
    assert trial_commits(out) == [None] * 3

    # `rlharness submit` (README) passes the commit in, and the token without RAY_AUTH_MODE
    wrapped = out.with_name("wrapped")
    command[:7] = [str(BIN / "rlharness"), "submit", "--address", token_head.dashboard, "--no-lock"]
    command[command.index(str(out))] = str(wrapped)
    submitted = submit(token_head.env)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True)
    assert trial_commits(wrapped) == [head.stdout.decode().strip()] * 3


def trial_commits(results: Path) -> list[str | None]:
    """The git commit each published trial's provenance records, in trial order."""
    return [
        json.loads(path.read_text())["git"]["commit"]
        for path in sorted(results.glob("tiny/sweep-tiny/trial-*/provenance.json"))
    ]


# --- a local Ray ------------------------------------------------------------------------------


def test_a_local_ray_listens_on_loopback_only_and_every_port_asks_for_the_token(home, tmp_path):
    spec_path = write_spec(tmp_path, slow_random_sweep(n_trials=50))
    launcher = launch(
        "sweep", spec_path, "--results", tmp_path / "results", "--workers", "1", env=user_env(home)
    )
    try:
        ray_processes: set[int] = set()

        def running_a_trial() -> bool:
            ray_processes.clear()
            ray_processes.update(descendants(launcher.pid))
            titles = {process_title(pid).rsplit("/", 1)[-1] for pid in ray_processes}
            return bool(worker_pids(among=ray_processes)) and {"gcs_server", "raylet"} <= titles

        until(running_a_trial, launcher, "a trial running on the local Ray")
        found = listeners(ray_processes)
        titles = {listener.title.rsplit("/", 1)[-1] for listener in found}
        assert {"gcs_server", "raylet"} <= titles, found
        assert [listener for listener in found if not listener.on_loopback] == []
        for listener in found:
            assert_needs_the_token(listener)
        assert launcher.poll() is None, "the probed ports were the running Ray's"
        token = home / ".ray" / "auth_token"
        assert token.stat().st_mode & 0o777 == 0o600, "the token rlharness made is the user's only"
    finally:
        launcher.send_signal(signal.SIGTERM)
        stdout, stderr = launcher.communicate(timeout=LAUNCH_TIMEOUT_S)
    assert launcher.returncode == 130, stdout + stderr


def test_a_local_ray_without_token_authentication_is_refused(home, tmp_path):
    spec_path = write_spec(tmp_path, spec())
    out = tmp_path / "results"
    refused = subprocess.run(
        [str(BIN / "rlharness"), "sweep", spec_path, "--results", out],
        env={**user_env(home), "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "RAY_AUTH_MODE" in refused.stderr and "token authentication" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not out.exists(), "nothing is created"


# --- a two-node cluster loses a node ----------------------------------------------------------


@pytest.mark.parametrize("retries", [2, 0])
def test_losing_a_worker_node_mid_trial_loses_no_trial_and_runs_none_twice(home, tmp_path, retries):
    """README: ``RAY_AUTH_MODE=token ray start --address=HEAD`` adds a node; its raylet is killed
    while it runs trials: Ray re-runs them on the head, or the launcher re-queues them."""
    env = user_env(home)
    ray_token(env)
    head = start_ray_head(cpus=1, env=env)
    with stopping(head):
        node = start_ray_worker_node(
            head, cpus=2, resources='{"node2": 2}', env={**env, "RAY_AUTH_MODE": "token"}
        )
        with stopping(node):
            data = slow_random_sweep(n_trials=5)
            data["sweep"]["retries"] = retries
            spec_path = write_spec(tmp_path, data)
            out = tmp_path / "results"
            raylet = raylet_of(node)
            assert raylet is not None
            node_id = re.search(r"--node_id=([0-9a-f]+)", command_line(raylet))
            assert node_id is not None
            watcher = subprocess.Popen(
                [str(BIN / "python"), "-c", WAIT_FOR_AN_ATTEMPT, head.address, node_id.group(1)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert watcher.stdout is not None
            assert watcher.stdout.readline() == "ready\n", watcher.communicate()
            command = ("sweep", spec_path, "--address", head.address, "--workers", "3")
            launcher = launch(*command, "--results", out, env=env)
            try:
                # a trial has recorded where it runs (what the note names) once this ends
                found, failure = watcher.communicate(timeout=STATE_TIMEOUT_S + LAUNCH_TIMEOUT_S)
                assert watcher.returncode == 0, failure
                on_node = int(found.split()[-1])
                assert on_node in worker_pids(among=descendants(raylet)), "mid-trial"
                os.kill(raylet, signal.SIGKILL)
                stdout, stderr = launcher.communicate(timeout=LAUNCH_TIMEOUT_S)
            finally:
                for process in (watcher, launcher):
                    if process.poll() is None:
                        process.kill()
                        process.communicate()
    assert launcher.returncode == 0, stdout + stderr
    assert "5 of 5 trials finished" in stdout
    study = load(default_url(out, "tiny"))
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    assert len({t.params["agent.alpha"] for t in complete}) == 5, "no point twice"
    assert trial_dirs(out) == [f"trial-{t.number:05d}" for t in complete], "no orphan results"
    notes = [line for line in stderr.splitlines() if line.startswith("note: trial ")]
    lost = re.findall(r"(?:lost|retries) \(pid (\d+) on Ray node ([0-9a-f]+)", "\n".join(notes))
    assert (str(on_node), node_id.group(1)[:8]) in lost, notes
    assert {node for _, node in lost} == {node_id.group(1)[:8]}, "only the lost node's workers"
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    if retries:
        assert all("Ray ran it again" in note for note in notes), notes
        assert failed == [], "Ray re-ran the lost tasks: no trial failed"
    else:
        assert all("re-queued: its worker was lost" in note for note in notes), notes
        assert len(failed) == len(notes) >= 1
        for trial in complete:
            if "retry_of" in trial.user_attrs:
                assert study.trials[trial.user_attrs["retry_of"]].params == trial.params
