"""TDRC (Ghiassian et al. 2020): TDC whose secondary weights carry a ridge term."""

from __future__ import annotations

import numpy as np
import pytest

from rlharness.errors import SpecError
from rlharness.runner import check_experiment
from tests.helpers import BAIRD_W0, make_spec, run_one


def _tdrc(update: str, **knobs: object) -> dict[str, object]:
    return {
        "name": "tdrc",
        "alpha": 0.005,
        "beta": 0.05,
        "initial_weights": BAIRD_W0,
        "update": update,
        **knobs,
    }


@pytest.mark.parametrize("update", ["sampled", "expected"])
def test_tdrc_without_its_regularisation_is_tdc_bit_for_bit(update: str) -> None:
    tdc = {**_tdrc(update), "name": "tdc"}
    first = run_one(make_spec("triad/Baird-v0", tdc, 600, log_every=50, seeds=3)).metrics
    second = run_one(
        make_spec(
            "triad/Baird-v0",
            _tdrc(update, correction_regularisation=0.0),
            600,
            log_every=50,
            seeds=3,
        )
    ).metrics
    for column in ("sqrt_ve", "sqrt_pbe", "td_error_rms", *[f"w{i}" for i in range(8)]):
        if column in first.columns:
            assert first[column].to_numpy().tobytes() == second[column].to_numpy().tobytes()


def test_the_regularisation_changes_the_trajectory_but_tdrc_still_converges_on_baird() -> None:
    """Expected TDRC with the paper's kappa = 1: PBE falls from 8.2 by more than 99% and no seed
    diverges, where semi-gradient DP diverges from the same w0 (Figure 11.2)."""
    result = run_one(make_spec("triad/Baird-v0", _tdrc("expected"), 4000, log_every=1000))
    metrics = result.metrics
    pbe = metrics["sqrt_pbe"].to_numpy()
    assert pbe[0] == pytest.approx(8.2214, abs=1e-3)
    assert pbe[-1] < 0.01 * pbe[0]
    assert result.outcomes["outcome"].tolist() == ["converged"]
    tdc = run_one(make_spec("triad/Baird-v0", {**_tdrc("expected"), "name": "tdc"}, 4000, 1000))
    assert not np.allclose(tdc.metrics["sqrt_ve"], metrics["sqrt_ve"])


def test_tdrc_converges_to_the_td_fixed_point_where_rewards_are_not_zero() -> None:
    """On the random walk the TD fixed point solves X^T D (X - gamma P X) w = X^T D r; TDRC's
    secondary weights are 0 there, so it is TDRC's fixed point too."""
    agent = {"name": "tdrc", "alpha": 0.1, "beta": 0.1, "update": "expected"}
    result = run_one(make_spec("triad/RandomWalk-v0", agent, 20000, log_every=20000))
    assert result.metrics["sqrt_pbe"].iloc[-1] < 1e-9
    assert result.metrics["sqrt_ve"].iloc[-1] < 1e-6


def test_only_tdrc_takes_a_correction_regularisation() -> None:
    with pytest.raises(SpecError, match=r"agent\.correction_regularisation: only tdrc uses it"):
        check_experiment(
            make_spec(
                "triad/Baird-v0",
                {**_tdrc("expected", correction_regularisation=1.0), "name": "tdc"},
                10,
            )
        )
