"""Batched linear off-policy learners: one compiled or vectorised update advances every seed.

`RULES` is the registry: one `Rule` per learning rule, holding its sampled and
expected forms and what it supports. A new rule is one module with its forms
(see `SampledRunner` and `ExpectedBuilder`), one entry here, its name in
`rlharness.spec.AgentName` and its test. `check_rule` turns an unsupported
combination into field-named messages; `run_linear` runs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from rlharness.agents.linear.dp import least_squares_dp, semi_gradient_dp
from rlharness.agents.linear.emphatic import expected_emphatic_td, sampled_emphatic_td
from rlharness.agents.linear.expected import ExpectedBuilder, run_expected
from rlharness.agents.linear.gradient_td import (
    expected_gtd2,
    expected_tdc,
    expected_tdrc,
    sampled_gtd2,
    sampled_tdc,
    sampled_tdrc,
)
from rlharness.agents.linear.problem import LinearProblem, build_problem
from rlharness.agents.linear.q_learning import expected_q_learning, sampled_q_learning
from rlharness.agents.linear.sampling import SampledRunner
from rlharness.agents.linear.td import semi_gradient_td
from rlharness.agents.linear.types import (
    FloatArray,
    Hyperparameters,
    IntArray,
    LearnerTrace,
    logged_steps,
)
from rlharness.spec import AgentName, LinearAgentSpec, TriadSpec, UpdateKind


@dataclass(frozen=True)
class Rule:
    """A learning rule: its two forms and the settings it supports.

    ``sampled`` learns from sampled transitions, ``expected`` builds the update
    in expectation over all states; None where the rule has no such form, and
    then ``counterpart`` names the rule that has it. ``uses_beta`` rules keep
    secondary weights v (from 0) stepped by beta. ``auxiliary``: what the
    expected form's per-seed auxiliary state runs over, starting at 0: the
    ``features`` (gradient TD's v) or the ``states`` (emphatic TD's expected
    emphasis); None if it keeps none. ``multi_step``: any
    ``triad.n_step``; ``target_network``: any ``triad.target_update_period``;
    ``on_policy_form``: ``triad.off_policy`` may be false;
    ``regularised_correction``: TDRC, whose secondary weights take
    ``agent.correction_regularisation`` (default `TDRC_REGULARISATION`).
    """

    sampled: SampledRunner | None
    expected: ExpectedBuilder | None
    control: bool = False
    uses_alpha: bool = True
    uses_beta: bool = False
    auxiliary: Literal["features", "states"] | None = None
    multi_step: bool = False
    target_network: bool = False
    regularised: bool = False
    regularised_correction: bool = False
    on_policy_form: bool = True
    counterpart: AgentName | None = None

    @property
    def updates(self) -> tuple[UpdateKind, ...]:
        """The update kinds this rule has, its default first (sampled where it has both)."""
        updates: list[UpdateKind] = []
        if self.sampled is not None:
            updates.append("sampled")
        if self.expected is not None:
            updates.append("expected")
        return tuple(updates)


TDRC_REGULARISATION = 1.0
"""TDRC's kappa when the spec leaves it out: the value Ghiassian et al. (2020) recommend."""

RULES: dict[AgentName, Rule] = {
    "semi_gradient_td": Rule(
        sampled=semi_gradient_td,
        expected=None,
        multi_step=True,
        target_network=True,
        regularised=True,
        counterpart="semi_gradient_dp",
    ),
    "semi_gradient_dp": Rule(
        sampled=None,
        expected=semi_gradient_dp,
        multi_step=True,
        target_network=True,
        regularised=True,
        counterpart="semi_gradient_td",
    ),
    "q_learning": Rule(
        sampled=sampled_q_learning,
        expected=expected_q_learning,
        control=True,
        target_network=True,
        regularised=True,
        on_policy_form=False,
    ),
    "tdc": Rule(sampled=sampled_tdc, expected=expected_tdc, uses_beta=True, auxiliary="features"),
    "tdrc": Rule(
        sampled=sampled_tdrc,
        expected=expected_tdrc,
        uses_beta=True,
        auxiliary="features",
        regularised_correction=True,
    ),
    "gtd2": Rule(
        sampled=sampled_gtd2, expected=expected_gtd2, uses_beta=True, auxiliary="features"
    ),
    "emphatic_td": Rule(
        sampled=sampled_emphatic_td, expected=expected_emphatic_td, auxiliary="states"
    ),
    "least_squares_dp": Rule(
        sampled=None, expected=least_squares_dp, uses_alpha=False, multi_step=True
    ),
}


def update_kind(agent: LinearAgentSpec) -> UpdateKind:
    """The update the agent runs: its own choice or the rule's default."""
    return agent.update or RULES[agent.name].updates[0]


def check_rule(agent: LinearAgentSpec, triad: TriadSpec, episodic: bool) -> list[str]:
    """Field-named messages for every setting the rule cannot honour (empty if none)."""
    rule = RULES[agent.name]
    problems = []
    if agent.update is not None and agent.update not in rule.updates:
        problems.append(
            f"agent.update: {agent.name} supports {', '.join(rule.updates)}, got '{agent.update}'"
            + (f"; its {agent.update} form is {rule.counterpart}" if rule.counterpart else "")
        )
    if rule.uses_alpha and agent.alpha is None:
        problems.append(f"agent.alpha: {agent.name} needs a step size alpha > 0")
    if not rule.uses_alpha and agent.alpha is not None:
        problems.append(f"agent.alpha: {agent.name} solves each iteration exactly; remove alpha")
    if rule.uses_beta and agent.beta is None:
        problems.append(f"agent.beta: {agent.name} needs a secondary step size beta > 0")
    if not rule.uses_beta and agent.beta is not None:
        *others, last = [name for name, other in RULES.items() if other.uses_beta]
        beta_rules = f"{', '.join(others)} and {last}"
        problems.append(f"agent.beta: only {beta_rules} use beta; remove it for {agent.name}")
    if not rule.regularised_correction and agent.correction_regularisation is not None:
        problems.append(
            "agent.correction_regularisation: only tdrc uses it; remove it for "
            f"{agent.name} (tdc is tdrc with 0)"
        )
    if not rule.multi_step and triad.n_step != 1:
        problems.append(f"triad.n_step: {agent.name} supports n_step 1 only, got {triad.n_step}")
    if not rule.target_network and triad.target_update_period != 1:
        problems.append(
            f"triad.target_update_period: {agent.name} supports 1 only, "
            f"got {triad.target_update_period}"
        )
    if not rule.target_network and triad.target_update_tau != 1.0:
        problems.append(
            f"triad.target_update_tau: {agent.name} has no target network; allowed: 1 "
            f"(got {triad.target_update_tau})"
        )
    regularising = {
        "agent.ridge": agent.ridge != 0.0,
        "agent.projection_radius": agent.projection_radius is not None,
    }
    for field, used in regularising.items():
        if used and not rule.regularised:
            allowed = ", ".join(name for name, other in RULES.items() if other.regularised)
            problems.append(f"{field}: only {allowed} take it; remove it for {agent.name}")
    if not rule.on_policy_form and not triad.off_policy:
        problems.append(
            f"triad.off_policy: {agent.name} learns the greedy policy off-policy by "
            "construction; allowed: true"
        )
    if update_kind(agent) == "sampled" and triad.n_step == "inf" and not episodic:
        problems.append(
            "triad.n_step: a sampled Monte Carlo target ('inf') needs an episodic env; "
            "use a finite n_step or an expected update (semi_gradient_dp)"
        )
    return problems


def run_linear(
    problem: LinearProblem,
    agent: LinearAgentSpec,
    triad: TriadSpec,
    w0: FloatArray,
    seeds: list[int],
    marks: IntArray,
    hard_limits: FloatArray,
) -> LearnerTrace:
    """Run ``agent`` on ``problem`` for every seed (rows of ``w0``), logging at ``marks``.

    Seed i hard-diverges once a weight is non-finite or beyond ``hard_limits[i]``.
    """
    rule = RULES[agent.name]
    kind = update_kind(agent)
    hyperparameters = hyperparameters_of(agent, triad)
    if kind == "sampled" and rule.sampled is not None:
        return rule.sampled(problem, w0, seeds, hyperparameters, marks, hard_limits)
    if kind == "expected" and rule.expected is not None:
        auxiliary = np.zeros(0)
        if rule.auxiliary is not None:
            width = problem.n_features if rule.auxiliary == "features" else problem.model.n_states
            auxiliary = np.zeros((w0.shape[0], width))
        return run_expected(
            rule.expected(problem, hyperparameters),
            w0,
            auxiliary,
            problem.row_weighting,
            triad.target_update_period,
            marks,
            hard_limits,
            auxiliary_weights=rule.auxiliary == "features",
            target_update_tau=hyperparameters.target_update_tau,
            projection_radius=hyperparameters.projection_radius,
        )
    raise ValueError(f"no {kind} form of {agent.name}")


def hyperparameters_of(agent: LinearAgentSpec, triad: TriadSpec) -> Hyperparameters:
    """The settings ``agent``'s rule runs with under the ``triad`` knobs."""
    return Hyperparameters(
        alpha=agent.alpha or 0.0,
        beta=agent.beta or 0.0,
        n_step=None if triad.n_step == "inf" else int(triad.n_step),
        target_update_period=triad.target_update_period,
        correction_regularisation=_correction_regularisation(agent, RULES[agent.name]),
        target_update_tau=triad.target_update_tau,
        ridge=agent.ridge,
        projection_radius=(
            float("inf") if agent.projection_radius is None else agent.projection_radius
        ),
    )


def _correction_regularisation(agent: LinearAgentSpec, rule: Rule) -> float:
    if not rule.regularised_correction:
        return 0.0
    if agent.correction_regularisation is None:
        return TDRC_REGULARISATION
    return agent.correction_regularisation


__all__ = [
    "RULES",
    "Hyperparameters",
    "LearnerTrace",
    "LinearProblem",
    "Rule",
    "build_problem",
    "check_rule",
    "hyperparameters_of",
    "logged_steps",
    "run_linear",
    "update_kind",
]
