"""What a trial would allocate, estimated from its spec and checked before anything is allocated.

A replay buffer of 10^10 transitions or an MLP a million units wide fails
deep inside NumPy or torch with an allocation error; these estimates turn it
into a message that names the field and says how much memory the trial would
need and how much this machine has. They count the large arrays only, so
they are lower bounds: a trial that passes may still be tight.
"""

from __future__ import annotations

import os
from pathlib import Path

GIB = 2**30
FLOAT32_BYTES = 4
FLOAT64_BYTES = 8
INT64_BYTES = 8
MEMINFO = Path("/proc/meminfo")

NETWORK_COPIES = 5
"""Online and target parameters, their gradients and Adam's two moments (SB3 and RLlib alike)."""

RLLIB_STEP_OVERHEAD_BYTES = 64
"""Per stored step beyond its arrays: RLlib's episode index entries and priority trees."""

RECORD_BYTES = 1024
"""One logged row of a deep trial: a dict of a dozen Python floats."""

TABLE_COPIES = 3
"""A linear trial's metrics exist as columns, a DataFrame and its filtered copy at once."""


def available_bytes() -> int | None:
    """Memory this machine can give a new allocation without swapping (None if unknown)."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_problem(field: str, what: str, needed: int) -> str | None:
    """A message naming ``field`` if ``needed`` bytes exceed what is available, else None."""
    available = available_bytes()
    if available is None or needed <= available:
        return None
    return (
        f"{field}: {what} needs {gib(needed)} of memory; "
        f"this machine has {gib(available)} available"
    )


def gib(n_bytes: int) -> str:
    """A byte count in GiB, e.g. ``186.3 GiB``."""
    return f"{n_bytes / GIB:,.1f} GiB"


def sb3_replay_bytes(capacity: int, observation_bytes: int, prioritized: bool) -> int:
    """SB3's ReplayBuffer: observations and next observations, an int64 action, three float32s.

    The float32s are reward, done and timeout; prioritised replay adds a float64 priority.
    """
    per_transition = 2 * observation_bytes + INT64_BYTES + 3 * FLOAT32_BYTES
    if prioritized:
        per_transition += FLOAT64_BYTES
    return capacity * per_transition


def rllib_replay_bytes(capacity: int, observation_bytes: int) -> int:
    """RLlib's episode buffer: one observation, action and reward per step, plus its indices."""
    per_step = observation_bytes + INT64_BYTES + FLOAT64_BYTES + RLLIB_STEP_OVERHEAD_BYTES
    return capacity * per_step


def mlp_parameters(inputs: int, outputs: int, width: int, depth: int) -> int:
    """Weights and biases of an MLP with ``depth`` hidden layers of ``width`` units."""
    first = (inputs + 1) * width
    hidden = (depth - 1) * (width + 1) * width
    head = (width + 1) * outputs
    return first + hidden + head


def network_bytes(parameters: int, batch_size: int, width: int, depth: int) -> int:
    """The float32 copies of the parameters and one batch's activations (forward and backward)."""
    activations = 4 * batch_size * width * depth
    return (NETWORK_COPIES * parameters + activations) * FLOAT32_BYTES


def linear_metrics_bytes(seeds: int, seed_batch: int, logs: int, n_features: int) -> int:
    """A linear trial's logged weights (per seed batch) and its metrics table (all seeds).

    The table has a row per seed and logged step: seed, step, six metrics and the weights.
    """
    trace = logs * seed_batch * (n_features + 2) * FLOAT64_BYTES
    table = TABLE_COPIES * seeds * logs * (n_features + 8) * FLOAT64_BYTES
    return trace + table
