"""Real services for the sweep tests: Ray nodes on this machine, and .ci/run's PostgreSQL server.

Each Ray node is started with ``ray start --block`` in its own process group,
on ports free when it starts (never Ray's fixed defaults: other Ray instances
may run on this machine), with usage statistics off; stopping it ends only the
processes of its group. By default a node has the test session's token
(`use_test_token`); `user_env` gives instead the environment of a user who
follows the README: a home of their own with Ray's token in ``~/.ray/auth_token``
and no ``RAY_AUTH_*`` variables.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
POSTGRES_VARIABLE = "RLHARNESS_TEST_POSTGRES_URL"
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports that nothing listens on right now.

    All are held open until all are chosen: ports asked for one by one may repeat.
    """
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class RayNode:
    """A running ``ray start --block``: its process (the leader of its group) and directory."""

    process: subprocess.Popen[bytes]
    directory: Path
    env: dict[str, str]

    @property
    def log(self) -> str:
        """What ``ray start`` printed."""
        return (self.directory / "node.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop the node and end every process left in its group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # what outlived ray start, or hung
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class RayHead(RayNode):
    """A running head: its GCS address, dashboard (job server) URL and the client environment."""

    port: int = 0
    dashboard_port: int = 0

    @property
    def address(self) -> str:
        """What ``ray.init(address=...)`` and ``rlharness sweep --address`` take."""
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        """What ``ray job submit --address`` takes."""
        return f"http://127.0.0.1:{self.dashboard_port}"


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


def user_env(home: Path) -> dict[str, str]:
    """The environment of a user who follows the README, at home in ``home``.

    No ``RAY_AUTH_*`` variable, so Ray finds its token in ``home/.ray/auth_token``.
    ``RAY_TMPDIR`` under ``home`` is where ``ray start`` records the cluster it
    started, so ``--address auto`` finds this one and not another of this machine.
    """
    kept = {name: os.environ[name] for name in ("LANG", "LC_ALL", "TZ") if name in os.environ}
    return {
        **kept,
        "PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "RAY_TMPDIR": str(home / "tmp"),
    }


def ray_token(env: dict[str, str]) -> str:
    """``ray get-auth-token --generate`` in ``env``: the README's first step; the token."""
    made = subprocess.run(
        [str(BIN / "ray"), "get-auth-token", "--generate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=True,
    )
    return made.stdout.strip()


def start_ray_head(cpus: int = 2, env: dict[str, str] | None = None) -> RayHead:
    """``ray start --head`` with its dashboard and job server on 127.0.0.1 (Ray's default).

    In a `user_env`, Ray's files go where the user's ``RAY_TMPDIR`` says; else to a
    directory of the head's own.
    """
    directory = Path(tempfile.mkdtemp(prefix="rlh-ray-", dir="/tmp"))
    env = env or client_env()
    port, dashboard_port, *others = free_ports(7)
    options: dict[str, object] = {
        "port": port,
        "num-cpus": cpus,
        "dashboard-port": dashboard_port,
        **({} if "RAY_TMPDIR" in env else {"temp-dir": directory}),
        **dict(
            zip(
                (
                    "dashboard-agent-listen-port",
                    "dashboard-agent-grpc-port",
                    "runtime-env-agent-port",
                    "metrics-export-port",
                    "ray-client-server-port",
                ),
                others,
                strict=True,
            )
        ),
    }
    process = _ray_start(["--head", "--disable-usage-stats"], options, directory, env)
    head = RayHead(process, directory, env, port, dashboard_port)
    # ray start records the head for --address auto last, after its ports answer
    recorded = Path(env.get("RAY_TMPDIR", directory)) / "ray" / "ray_current_cluster"
    if "RAY_TMPDIR" not in env:
        recorded = directory / "ray_current_cluster"
    _wait_until(
        lambda: listening(port) and listening(dashboard_port) and recorded.is_file(),
        head,
        "ray head",
    )
    return head


def start_ray_worker_node(
    head: RayHead, cpus: int, resources: str, env: dict[str, str] | None = None
) -> RayNode:
    """``ray start --address=HEAD`` with ``cpus`` and ``resources`` (JSON), once the head lists it.

    Its raylet is the one process named ``raylet`` in the node's group.
    """
    directory = Path(tempfile.mkdtemp(prefix="rlh-ray-node-", dir="/tmp"))
    env = env or head.env
    options = dict(
        zip(
            (
                "node-manager-port",
                "object-manager-port",
                "metrics-export-port",
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "runtime-env-agent-port",
            ),
            free_ports(6),
            strict=True,
        )
    )
    options.update({"address": head.address, "num-cpus": cpus, "resources": resources})
    process = _ray_start([], options, directory, env)
    node = RayNode(process, directory, env)
    _wait_until(lambda: raylet_of(node) is not None, node, "ray worker node")
    return node


def raylet_of(node: RayNode) -> int | None:
    """The pid of the node's raylet, if it runs."""
    for pid in group_members(node.process.pid):
        if process_title(pid).rsplit("/", 1)[-1] == "raylet":
            return pid
    return None


def _ray_start(
    flags: list[str], options: dict[str, object], directory: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    command = [str(BIN / "ray"), "start", "--block", *flags]
    command += [f"--{name}={value}" for name, value in options.items()]
    log = (directory / "node.log").open("wb")
    return subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_until(condition, node: RayNode, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if node.process.poll() is not None or time.monotonic() > deadline:
            log = node.log
            node.stop()
            raise RuntimeError(f"{what} did not start: {log}")
        time.sleep(0.5)


def worker_pids(task: str = "run_trial_task", among: set[int] | None = None) -> list[int]:
    """Processes now running a Ray task named ``task`` (their title is ``ray::<task>``).

    With ``among``, only those of these processes.
    """
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [
        pid
        for pid in pids
        if (among is None or pid in among) and process_title(pid).strip() == f"ray::{task}"
    ]


def process_title(pid: int) -> str:
    """The process's title (its argv[0]); ``""`` if it is gone."""
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]).decode(errors="replace")
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def descendants(root: int) -> set[int]:
    """``root`` and every process below it now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def group_members(group: int) -> set[int]:
    """The processes now in process group ``group``."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if len(fields) > 2 and int(fields[2]) == group:
                members.add(int(entry.name))
    return members


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket of a process."""

    pid: int
    title: str
    host: str
    port: int

    @property
    def on_loopback(self) -> bool:
        """Whether only this machine can connect to it."""
        return self.host in ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def listeners(pids: set[int]) -> list[Listener]:
    """The listening TCP sockets (IPv4 and IPv6) of ``pids``, from /proc."""
    by_inode = {}
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                by_inode[fields[9]] = _address(fields[1])
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    inode = target.removeprefix("socket:[").removesuffix("]")
                    if target.startswith("socket:[") and inode in by_inode:
                        host, port = by_inode[inode]
                        found.append(Listener(pid, process_title(pid), host, port))
    return found


def _address(hex_address: str) -> tuple[str, int]:
    """/proc/net/tcp's ``HOST:PORT`` in hex (host in the kernel's byte order) as (host, port)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port, 16)


@contextlib.contextmanager
def stopping(*nodes: RayNode) -> Iterator[None]:
    """Stop ``nodes`` (last first) however the block ends."""
    try:
        yield
    finally:
        for node in reversed(nodes):
            node.stop()
