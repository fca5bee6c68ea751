"""The per-seed random streams of the compiled learners."""

from __future__ import annotations

import numba
import numpy as np
from scipy import stats

from rlharness.agents.linear.sampling import (
    cumulative,
    draw,
    new_stream,
    next_raw,
    seed_keys,
    uniform,
)


@numba.njit
def _raw(key: np.uint64, count: int) -> np.ndarray:
    rng = new_stream(key)
    out = np.empty(count, dtype=np.uint64)
    for i in range(count):
        out[i] = next_raw(rng)
    return out


@numba.njit
def _uniforms(key: np.uint64, count: int) -> np.ndarray:
    rng = new_stream(key)
    out = np.empty(count)
    for i in range(count):
        out[i] = uniform(rng)
    return out


@numba.njit
def _draws(cumulative_row: np.ndarray, key: np.uint64, count: int) -> np.ndarray:
    rng = new_stream(key)
    out = np.zeros(cumulative_row.size, dtype=np.int64)
    for _ in range(count):
        out[draw(cumulative_row, rng)] += 1
    return out


def test_splitmix64_matches_the_reference_sequence() -> None:
    """SplitMix64 from state 0 (Steele, Lea & Flood 2014; Vigna's reference C code)."""
    expected = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert [int(x) for x in _raw(np.uint64(0), 3)] == expected


def test_seed_keys_are_distinct_and_stable() -> None:
    keys = seed_keys(list(range(10_000)))
    assert np.unique(keys).size == keys.size
    assert int(seed_keys([0])[0]) == 0xE220A8397B1DCDAF


def test_uniforms_are_uniform() -> None:
    sample = _uniforms(seed_keys([7])[0], 200_000)
    assert sample.min() >= 0.0 and sample.max() < 1.0
    assert stats.kstest(sample, "uniform").pvalue > 1e-4


def test_draw_frequencies_follow_the_probabilities() -> None:
    probabilities = np.array([0.1, 0.0, 0.6, 0.3])
    counts = _draws(cumulative(probabilities), seed_keys([3])[0], 100_000)
    assert counts[1] == 0
    assert stats.chisquare(counts[[0, 2, 3]], 100_000 * probabilities[[0, 2, 3]]).pvalue > 1e-4
