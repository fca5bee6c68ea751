"""The registry of linear rules: every entry complete, every form reachable and runnable."""

from __future__ import annotations

import numpy as np
import pytest

from rlharness.agents.linear import RULES, check_rule, update_kind
from rlharness.spec import LinearAgentSpec, TriadSpec
from tests.helpers import BAIRD_W0, make_spec, run_one

STEPS, LOG_EVERY, SEEDS = 20, 5, 2
FORMS = [(name, kind) for name, rule in RULES.items() for kind in rule.updates]


def agent_of(name: str, update: str | None = None) -> dict[str, object]:
    """The agent section of a valid spec for rule ``name``: the step sizes it needs."""
    rule = RULES[name]
    agent: dict[str, object] = {"name": name, "update": update}
    if rule.uses_alpha:
        agent["alpha"] = 0.01
    if rule.uses_beta:
        agent["beta"] = 0.05
    return agent


@pytest.mark.parametrize("name", list(RULES))
def test_a_counterpart_has_the_missing_form_and_points_back(name: str) -> None:
    """Each rule has a form; a counterpart, where named, is the same rule's other form."""
    rule = RULES[name]
    assert rule.updates, "a rule needs a sampled or an expected form"
    if rule.counterpart is None:
        return
    missing = {"sampled", "expected"} - set(rule.updates)
    counterpart = RULES[rule.counterpart]
    assert missing, f"{name} has both forms, so it needs no counterpart"
    assert missing <= set(counterpart.updates)
    assert counterpart.counterpart == name
    assert (counterpart.control, counterpart.multi_step, counterpart.target_network) == (
        rule.control,
        rule.multi_step,
        rule.target_network,
    )


def test_default_update_is_sampled_where_a_rule_has_both() -> None:
    assert update_kind(LinearAgentSpec(name="q_learning", alpha=0.1)) == "sampled"
    assert update_kind(LinearAgentSpec(name="semi_gradient_dp", alpha=0.1)) == "expected"
    assert update_kind(LinearAgentSpec(name="least_squares_dp")) == "expected"


def test_asking_for_a_missing_form_names_the_counterpart() -> None:
    agent = LinearAgentSpec(name="semi_gradient_td", update="expected", alpha=0.01)
    assert check_rule(agent, TriadSpec(), episodic=False) == [
        "agent.update: semi_gradient_td supports sampled, got 'expected'; "
        "its expected form is semi_gradient_dp"
    ]


@pytest.mark.parametrize(("name", "kind"), FORMS)
def test_every_form_runs_every_seed_through_the_registry(name: str, kind: str) -> None:
    """Each declared form is wired with the shared signature and logs every seed at every mark."""
    control = RULES[name].control
    spec = make_spec(
        "triad/BairdControl-v0" if control else "triad/Baird-v0",
        {**agent_of(name, kind), "initial_weights": BAIRD_W0 * (2 if control else 1)},
        steps=STEPS,
        log_every=LOG_EVERY,
        seeds=SEEDS,
    )
    result = run_one(spec)
    metrics = result.metrics
    assert sorted(set(metrics["step"])) == list(range(0, STEPS + 1, LOG_EVERY))
    assert len(metrics) == SEEDS * (STEPS // LOG_EVERY + 1)
    weights = metrics.filter(like="w_").to_numpy()
    assert np.isfinite(weights).all()
    assert np.isfinite(metrics.loc[metrics["step"] > 0, "td_error_rms"]).all()
    assert (result.outcomes["outcome"] != "hard-diverged").all()
