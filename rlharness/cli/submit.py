"""``rlharness submit``: ``ray job submit`` with the commit and the locked versions passed in."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from rlharness.cli.console import fail, plain
from rlharness.errors import SpecError


def submit(
    entrypoint: Annotated[
        list[str],
        typer.Argument(help="The job's command, after --, e.g. -- rlharness sweep SPEC ..."),
    ],
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="The head's dashboard (ray job submit --address), e.g. http://127.0.0.1:8265; "
            "default: RAY_API_SERVER_ADDRESS or RAY_ADDRESS, as Ray reads them.",
        ),
    ] = None,
    working_dir: Annotated[
        Path, typer.Option("--working-dir", help="The git work tree uploaded as the job's code.")
    ] = Path("."),
    lock: Annotated[
        Path,
        typer.Option(
            "--lock",
            help="The lock whose exact versions every node installs for the job "
            "(relative to the working directory).",
        ),
    ] = Path("requirements/run.lock"),
    no_lock: Annotated[
        bool, typer.Option("--no-lock", help="Run on the nodes' packages as they are.")
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once submitted (ray job submit --no-wait).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the ray job submit command; submit nothing.")
    ] = False,
) -> None:
    """Submit a Ray job whose runs record this tree's git commit and run the locked versions.

    Runs ray job submit with a runtime environment holding the working directory,
    its commit and dirtiness (RLHARNESS_COMMIT, RLHARNESS_DIRTY: a job's copy has no
    .git) and the lock's pins, and sends Ray's token when one exists. Exits with the
    status of ray job submit.
    """
    from rlharness.runtime_env import job_runtime_env

    try:
        runtime_env = job_runtime_env(working_dir, None if no_lock else working_dir / lock)
    except SpecError as error:
        fail(error)
    command = [str(Path(sys.executable).parent / "ray"), "job", "submit"]
    if address is not None:
        command += ["--address", address]
    if no_wait:
        command.append("--no-wait")
    command += ["--runtime-env-json", json.dumps(runtime_env), "--", *entrypoint]
    if dry_run:
        plain(shlex.join(command))
        return
    # RAY_AUTH_MODE=token, which Ray's CLI needs to send the token, is set (rlharness.ray_env)
    raise typer.Exit(subprocess.run(command, check=False).returncode)
