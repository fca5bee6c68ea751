"""Batched linear off-policy learners: one compiled or vectorised update advances every seed.

`RULES` says what each learning rule supports; `check_rule` turns an
unsupported combination into field-named messages; `run_linear` runs one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlharness.agents.linear.dp import least_squares_dp, semi_gradient_dp
from rlharness.agents.linear.emphatic import expected_emphatic_td, sampled_emphatic_td
from rlharness.agents.linear.expected import ExpectedStep, run_expected
from rlharness.agents.linear.gradient_td import expected_gradient_td, sampled_gradient_td
from rlharness.agents.linear.problem import LinearProblem, build_problem
from rlharness.agents.linear.q_learning import expected_q_learning, sampled_q_learning
from rlharness.agents.linear.td import semi_gradient_td
from rlharness.agents.linear.types import FloatArray, IntArray, LearnerTrace, logged_steps
from rlharness.spec import LinearAgentSpec, TriadSpec


@dataclass(frozen=True)
class RuleInfo:
    """What a learning rule supports; the first entry of ``updates`` is its default."""

    updates: tuple[str, ...]
    control: bool = False
    uses_alpha: bool = True
    uses_beta: bool = False
    multi_step: bool = False
    target_network: bool = False
    on_policy_form: bool = True


RULES: dict[str, RuleInfo] = {
    "semi_gradient_td": RuleInfo(("sampled",), multi_step=True, target_network=True),
    "semi_gradient_dp": RuleInfo(("expected",), multi_step=True, target_network=True),
    "q_learning": RuleInfo(
        ("sampled", "expected"), control=True, target_network=True, on_policy_form=False
    ),
    "tdc": RuleInfo(("sampled", "expected"), uses_beta=True),
    "gtd2": RuleInfo(("sampled", "expected"), uses_beta=True),
    "emphatic_td": RuleInfo(("sampled", "expected")),
    "least_squares_dp": RuleInfo(("expected",), uses_alpha=False, multi_step=True),
}


def update_kind(agent: LinearAgentSpec) -> str:
    """The update the agent runs: its own choice or the rule's default."""
    return agent.update or RULES[agent.name].updates[0]


def check_rule(agent: LinearAgentSpec, triad: TriadSpec, episodic: bool) -> list[str]:
    """Field-named messages for every setting the rule cannot honour (empty if none)."""
    rule = RULES[agent.name]
    problems = []
    if agent.update is not None and agent.update not in rule.updates:
        problems.append(
            f"agent.update: {agent.name} supports {', '.join(rule.updates)}, got '{agent.update}'"
            + (
                "; its expected form is semi_gradient_dp"
                if agent.name == "semi_gradient_td"
                else ""
            )
            + ("; its sampled form is semi_gradient_td" if agent.name == "semi_gradient_dp" else "")
        )
    if rule.uses_alpha and agent.alpha is None:
        problems.append(f"agent.alpha: {agent.name} needs a step size alpha > 0")
    if not rule.uses_alpha and agent.alpha is not None:
        problems.append(f"agent.alpha: {agent.name} solves each iteration exactly; remove alpha")
    if rule.uses_beta and agent.beta is None:
        problems.append(f"agent.beta: {agent.name} needs a secondary step size beta > 0")
    if not rule.uses_beta and agent.beta is not None:
        problems.append(f"agent.beta: only tdc and gtd2 use beta; remove it for {agent.name}")
    if not rule.multi_step and triad.n_step != 1:
        problems.append(f"triad.n_step: {agent.name} supports n_step 1 only, got {triad.n_step}")
    if not rule.target_network and triad.target_update_period != 1:
        problems.append(
            f"triad.target_update_period: {agent.name} supports 1 only, "
            f"got {triad.target_update_period}"
        )
    if not rule.on_policy_form and not triad.off_policy:
        problems.append(
            f"triad.off_policy: {agent.name} learns the greedy policy off-policy by "
            "construction; allowed: true"
        )
    sampled = (agent.update or rule.updates[0]) == "sampled"
    if sampled and triad.n_step == "inf" and not episodic:
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
    hard_limit: float,
) -> LearnerTrace:
    """Run ``agent`` on ``problem`` for every seed (rows of ``w0``), logging at ``marks``."""
    alpha = agent.alpha or 0.0
    beta = agent.beta or 0.0
    period = triad.target_update_period
    if update_kind(agent) == "sampled":
        steps = int(marks[-1])
        n_step = steps + 1 if triad.n_step == "inf" else int(triad.n_step)
        match agent.name:
            case "semi_gradient_td":
                return semi_gradient_td(
                    problem, w0, seeds, alpha, n_step, period, marks, hard_limit
                )
            case "q_learning":
                return sampled_q_learning(problem, w0, seeds, alpha, period, marks, hard_limit)
            case "tdc" | "gtd2":
                gtd2 = agent.name == "gtd2"
                return sampled_gradient_td(problem, w0, seeds, alpha, beta, gtd2, marks, hard_limit)
            case "emphatic_td":
                return sampled_emphatic_td(problem, w0, seeds, alpha, marks, hard_limit)
    expected_n = None if triad.n_step == "inf" else int(triad.n_step)
    auxiliary = np.zeros(0)
    step: ExpectedStep
    match agent.name:
        case "semi_gradient_dp":
            step = semi_gradient_dp(problem, alpha, expected_n)
        case "least_squares_dp":
            step = least_squares_dp(problem, expected_n)
        case "q_learning":
            step = expected_q_learning(problem, alpha)
        case "tdc" | "gtd2":
            step = expected_gradient_td(problem, alpha, beta, agent.name == "gtd2")
            auxiliary = np.zeros_like(w0)
        case "emphatic_td":
            step = expected_emphatic_td(problem, alpha)
        case _:
            raise ValueError(f"no expected form of {agent.name}")
    return run_expected(step, w0, auxiliary, problem.row_weighting, period, marks, hard_limit)


__all__ = [
    "RULES",
    "LearnerTrace",
    "LinearProblem",
    "RuleInfo",
    "build_problem",
    "check_rule",
    "logged_steps",
    "run_linear",
    "update_kind",
]
