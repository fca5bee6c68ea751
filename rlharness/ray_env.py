"""Ray's settings that live in the environment: token authentication, a local Ray on loopback.

This module never imports Ray: `rlharness/__init__.py` runs `use_token_if_available`
before any rlharness module imports Ray, because Ray 2.60 reads ``RAY_AUTH_MODE``
when it is imported and does not read it again (a process that sets it later sends
no token, and a cluster started with one answers ``InvalidAuthToken``).

Ray 2.60, measured: ``ray start --head`` turns token authentication on only when
a token exists (``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH``, or
``~/.ray/auth_token``), and a new local ``ray.init()`` turns it on unless
``RAY_AUTH_MODE`` says otherwise, writing ``~/.ray/auth_token`` if there is none.
A client sends the token only in token mode, which ``ray.init(address="auto")``
enables by itself when it finds a token, but an explicit address and
``ray job submit`` do not.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from rlharness.errors import SpecError

AUTH_MODE = "RAY_AUTH_MODE"
TOKEN = "RAY_AUTH_TOKEN"
TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for multi-node Ray (on by default on Linux); off, a node's IP address is 127.0.0.1,
and Ray binds its gRPC servers, agents and metrics endpoints there."""
AGENT_METRICS = "RAY_enable_metrics_collection"
"""Off, a node's agent serves no Prometheus metrics (an endpoint that asks for no token)."""


def default_token_path() -> Path:
    """Ray's token file when neither ``RAY_AUTH_TOKEN`` nor ``RAY_AUTH_TOKEN_PATH`` is set."""
    return Path.home() / ".ray" / "auth_token"


def token_source() -> str | None:
    """Where Ray will take its token from, in Ray's order; None if there is no token.

    Ray 2.60 skips an empty ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``, and a
    ``RAY_AUTH_TOKEN_PATH`` that is set is the only file it reads.
    """
    if os.environ.get(TOKEN, "").strip():
        return TOKEN
    path = Path(os.environ.get(TOKEN_PATH) or default_token_path())
    try:
        return str(path) if path.read_text().strip() else None
    except OSError:
        return None


def use_token_if_available() -> None:
    """Send Ray's token wherever Ray goes (``RAY_AUTH_MODE=token``) when there is one.

    Only while ``RAY_AUTH_MODE`` is unset and Ray is not yet imported: an
    explicit mode is the user's, and a mode set after the import has no effect.
    """
    if AUTH_MODE in os.environ or "ray" in sys.modules:
        return
    if token_source() is not None:
        os.environ[AUTH_MODE] = "token"


def prepare_local() -> None:
    """Settings for a Ray this process starts: token authentication, loopback, no agent metrics.

    Raises `SpecError` when ``RAY_AUTH_MODE=disabled``: anyone who could reach
    such a Ray could run code in it (CVE-2023-48022). With no mode set, Ray
    itself turns token authentication on; without a token, this writes a new
    one to ``~/.ray/auth_token`` first, readable by the user only (Ray would
    write it readable by all).
    """
    mode = os.environ.get(AUTH_MODE, "").strip().lower()
    if mode not in ("", "token"):
        raise SpecError(
            AUTH_MODE,
            [
                f"{mode!r}: a local Ray runs only with token authentication; unset "
                f"{AUTH_MODE} or set it to 'token' (Ray then creates {default_token_path()} "
                "if there is no token)"
            ],
        )
    if token_source() is None:
        _write_new_token(Path(os.environ.get(TOKEN_PATH) or default_token_path()))
    os.environ[LOCAL_ONLY] = "0"  # for Ray's processes, and for this one if Ray is imported later
    os.environ.setdefault(AGENT_METRICS, "0")
    constants: Any = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        # Ray read the switch when it was imported, and picks the node's IP address from it
        constants.ENABLE_RAY_CLUSTER = False


def _write_new_token(path: Path) -> None:
    """A new random token (256 bits, as Ray makes them) in ``path``, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
