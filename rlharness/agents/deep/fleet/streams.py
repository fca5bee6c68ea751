"""Every random number a fleet member uses, from its seed, in this one place.

A member's draws are a counter-based hash of (member seed, stream, counter):
SplitMix64's finaliser (Steele et al. 2014) applied three times, once per
key part, on int64 tensors. A draw depends on nothing but its key, so a
member's exploration, replay sampling, initialisation and env resets are the
same whichever members train beside it, and all members draw in one
vectorised call. Torch has no unsigned 64-bit shift, so logical right shifts
are arithmetic shifts with the sign-extended bits masked off; multiplication
wraps modulo 2^64 as SplitMix64 needs.

Gymnasium envs that are stepped one per member are seeded with the member's
seed (the evaluation env with seed + EVAL_SEED_OFFSET), as the SB3 backend
seeds its envs; probe states come from `common.probe_observations` with the
member's seed, as for SB3.
"""

from __future__ import annotations

from enum import IntEnum

import torch

from rlharness.agents.deep.common import EVAL_SEED_OFFSET

_GOLDEN = 0x9E3779B97F4A7C15
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB
_UNIT_53 = 2.0**-53


class Stream(IntEnum):
    """The independent streams of one member; the value is the stream's key part."""

    INITIALISATION = 1
    EXPLORATION = 2
    REPLAY = 3
    ENV_RESET = 4
    EVAL_RESET = 5
    MINIBATCH = 6


def _signed(value: int) -> int:
    """A 64-bit unsigned constant as the int64 with the same bits."""
    return value - 2**64 if value >= 2**63 else value


GOLDEN, MIX_1, MIX_2 = (_signed(v) for v in (_GOLDEN, _MIX_1, _MIX_2))


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bits: arithmetic shift, sign extension masked off."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64: advance by the golden gamma, then its finaliser (a bijection of 64 bits)."""
    z = z + GOLDEN
    z = (z ^ _shift_right(z, 30)) * MIX_1
    z = (z ^ _shift_right(z, 27)) * MIX_2
    return z ^ _shift_right(z, 31)


def member_keys(seeds: torch.Tensor, stream: Stream) -> torch.Tensor:
    """One int64 key per member for ``stream``: mix(mix(seed) + stream), shape [K]."""
    return mix(mix(seeds.to(torch.int64)) + int(stream))


def bits(keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """64 random bits per (key, counter): keys [K] broadcast against counters [K, ...]."""
    shape = (-1,) + (1,) * (counters.dim() - 1)
    return mix(keys.reshape(shape) + counters.to(torch.int64))


def uniform(keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """Float64 uniforms in [0, 1) with 53 random bits, one per (key, counter)."""
    return _shift_right(bits(keys, counters), 11).to(torch.float64) * _UNIT_53


def below(keys: torch.Tensor, counters: torch.Tensor, bounds: torch.Tensor | int) -> torch.Tensor:
    """Integers uniform in [0, bound) (int64), one per (key, counter); bound < 2^31 per member.

    floor(u * bound) with 53-bit u: the bias is below bound / 2^53.
    """
    if isinstance(bounds, torch.Tensor):
        bounds = bounds.reshape((-1,) + (1,) * (counters.dim() - 1))
    return (uniform(keys, counters) * bounds).to(torch.int64)


def env_seed(seed: int) -> int:
    """The seed of a member's training env (the member's seed, as SB3 seeds its env)."""
    return seed


def eval_env_seed(seed: int) -> int:
    """The seed of a member's evaluation env, as the SB3 backend's."""
    return seed + EVAL_SEED_OFFSET
