"""The study's database fails under a real sweep, and passwords stay hidden in every URL form.

Each test here runs its own PostgreSQL server (`.ci/postgres`), so stopping it
disturbs no other test; the launcher is the real ``rlharness`` command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from optuna.trial import TrialState
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.clusters import RayHead, client_env
from tests.conftest import REPO
from tests.test_cli import assert_bad_input, cli, write_spec
from tests.test_sweep_cli import (
    LAUNCH_TIMEOUT_S,
    counts,
    launch,
    load,
    loaded,
    slow_random_sweep,
    trial_dirs,
    wait_for,
)

SERVER = REPO / ".ci" / "postgres"


@dataclass
class Server:
    """A PostgreSQL server of this test's own: its data directory and URL."""

    directory: Path
    url: str

    @property
    def password(self) -> str:
        return str(make_url(self.url).password)

    def control(self, action: str) -> None:
        """``.ci/postgres ACTION DIR``: halt (keeping the data) or resume it."""
        subprocess.run([str(SERVER), action, str(self.directory)], check=True, timeout=120)


@pytest.fixture
def server() -> Iterator[Server]:
    """A fresh PostgreSQL server on a free loopback port, removed at the end."""
    if not (shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))):
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: .ci/run installs it")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="rlh-pg-", dir="/tmp"))
    started = subprocess.run(
        [str(SERVER), "start", str(directory)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    try:
        yield Server(directory, started.stdout.strip())
    finally:
        subprocess.run([str(SERVER), "stop", str(directory)], timeout=120, check=False)


def test_the_database_going_away_mid_sweep_stops_cleanly_and_the_rerun_resumes(
    server, ray_head: RayHead, tmp_path
):
    spec_path = write_spec(tmp_path, slow_random_sweep(n_trials=4))
    out = tmp_path / "results"
    env = {**client_env(), "RLHARNESS_STORAGE": server.url}
    command = (
        "sweep",
        spec_path,
        "--results",
        out,
        "--address",
        ray_head.address,
        "--workers",
        "2",
    )

    def mid_sweep() -> bool:
        study = loaded(server.url)
        return study is not None and counts(study)["RUNNING"] >= 1

    first = launch(*command, env=env)
    wait_for(mid_sweep, first)
    server.control("halt")
    stdout, stderr = first.communicate(timeout=LAUNCH_TIMEOUT_S)
    output = stdout + stderr
    assert first.returncode == 1, output
    assert "Traceback" not in output
    assert server.password not in output
    shown = make_url(server.url).render_as_string(hide_password=True)
    assert f"error: the study's storage {shown} failed:" in stderr
    assert "run the same command again" in stderr
    assert stderr.count("error:") == 1, "one message"

    server.control("resume")
    halted = counts(load(server.url))
    assert halted["COMPLETE"] < 4 and halted["RUNNING"] >= 1, "the study as the launcher left it"
    second = launch(*command, env=env)
    stdout, stderr = second.communicate(timeout=LAUNCH_TIMEOUT_S)
    assert second.returncode == 0, stdout + stderr
    assert "4 of 4 trials finished" in stdout
    assert "is gone" in stderr, "the stopped launcher's trials were re-queued"
    study = load(server.url)
    found = counts(study)
    assert found["COMPLETE"] == 4 and found["RUNNING"] == 0 and found["WAITING"] == 0
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert trial_dirs(out) == sorted(f"trial-{t.number:05d}" for t in complete), "no orphans"
    assert not list((out / "tiny" / "sweep-tiny").glob(".*.partial")), "no staged leftovers"


def _with_role(server: Server, password: str) -> str:
    """A URL of a new login role whose password is ``password`` (spaces and all)."""
    role = f"r{os.getpid()}"
    admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
    quoted = password.replace("'", "''")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{quoted}'"))
        connection.execute(text(f"GRANT ALL ON SCHEMA public TO {role}"))
    admin.dispose()
    parsed = make_url(server.url)
    return f"postgresql://{role}:{password}@{parsed.host}:{parsed.port}/{parsed.database}"


def _query_form(url: str) -> str:
    """The same login with the user and password as query parameters."""
    parsed = make_url(url)
    return (
        f"postgresql://{parsed.host}:{parsed.port}/{parsed.database}"
        f"?user={parsed.username}&password={parsed.password}"
    )


def test_no_form_of_a_password_reaches_the_output_or_the_results(server, ray_head, tmp_path):
    spaced = _with_role(server, "correct horse battery")
    forms = [spaced, _query_form(server.url), server.url]
    secrets = ["correct horse battery", server.password]
    for number, url in enumerate(forms):
        study = f"masked{number}"
        spec_path = write_spec(tmp_path, slow_random_sweep(n_trials=1), f"s{number}.yaml")
        out = tmp_path / f"results{number}"
        missing = cli("status", study, "--storage", url)
        assert_bad_input(missing, f"no study '{study}'")
        ran = cli(
            "sweep",
            spec_path,
            "--results",
            out,
            "--address",
            ray_head.address,
            "--study",
            study,
            "--storage",
            url,
            "--quiet",
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        status = cli("status", study, "--storage", url)
        assert status.returncode == 0, status.stderr
        assert "***" in status.stdout
        for secret in secrets:
            for output in (missing, ran, status):
                assert secret not in output.stdout + output.stderr, (url, secret)
            for path in out.rglob("*"):
                if path.is_file():
                    assert secret.encode() not in path.read_bytes(), (path, secret)
    assert loaded(forms[0], "masked0") is not None
