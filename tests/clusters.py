"""Real services for the sweep tests: a Ray head on loopback, and the PostgreSQL server of .ci/run.

The Ray head is started with ``ray start --head --block`` in its own process
group, with token authentication (a token file of the test session's own)
and usage statistics off; stopping it ends only the processes it started,
never other Ray instances on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
POSTGRES_VARIABLE = "RLHARNESS_TEST_POSTGRES_URL"
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class RayHead:
    """A running head: its GCS address, dashboard (job server) URL and the client environment."""

    process: subprocess.Popen[bytes]
    port: int
    dashboard_port: int
    directory: Path
    env: dict[str, str]

    @property
    def address(self) -> str:
        """What ``ray.init(address=...)`` and ``rlharness sweep --address`` take."""
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        """What ``ray job submit --address`` takes."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def stop(self) -> None:
        """Stop the head (it ends the processes it started; its group is killed if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def use_test_token(directory: Path) -> None:
    """Make this process and its children use a token of their own for Ray, and report no usage.

    Ray reads these variables when it is imported, so this runs before any test imports it.
    """
    token = directory / "ray-token"
    token.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.pop("RAY_ADDRESS", None)


def client_env() -> dict[str, str]:
    """The environment of processes that talk to the test head: rlharness and ray on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def start_ray_head(cpus: int = 2) -> RayHead:
    """``ray start --head`` on loopback ports with the dashboard and job server on 127.0.0.1."""
    directory = Path(tempfile.mkdtemp(prefix="rlh-ray-", dir="/tmp"))
    env = client_env()
    port, dashboard_port = free_port(), free_port()
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        f"--num-cpus={cpus}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--temp-dir={directory}",
        "--disable-usage-stats",
        # Ray's fixed default ports may be taken by another Ray on this machine
        *(
            f"--{option}={free_port()}"
            for option in (
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "runtime-env-agent-port",
                "metrics-export-port",
                "ray-client-server-port",
            )
        ),
    ]
    log = (directory / "head.log").open("wb")
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    head = RayHead(process, port, dashboard_port, directory, env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (listening(port) and listening(dashboard_port)):
        if process.poll() is not None or time.monotonic() > deadline:
            head.stop()
            raise RuntimeError(f"ray head did not start: {(directory / 'head.log').read_text()}")
        time.sleep(0.5)
    return head


def worker_pids(task: str = "run_trial_task") -> list[int]:
    """Processes now running a Ray task named ``task`` (their title is ``ray::<task>``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.strip() == f"ray::{task}":
            pids.append(int(entry.name))
    return pids
