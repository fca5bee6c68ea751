"""Experiment specs: shipped files are valid; bad input names the field and what is allowed."""

from __future__ import annotations

import itertools
import typing
from pathlib import Path

import pytest
import yaml

from rlharness.agents.linear import RULES
from rlharness.errors import SpecError
from rlharness.runner import check_experiment, plan_trials
from rlharness.spec import AgentName, ExperimentSpec, RunSpec, grid_points, load_spec, parse_spec
from tests.conftest import REPO

SHIPPED = sorted((REPO / "experiments").glob("*.yaml"))
TOP_FIELDS = "agent, description, diagnostics, env, grid, name, run, sweep, triad"


def errors_of(data: object) -> list[str]:
    """The messages of the `SpecError` that parsing and checking ``data`` must raise."""
    with pytest.raises(SpecError) as caught:
        check_experiment(parse_spec(data))
    assert caught.value.messages, "a SpecError must carry at least one message"
    return caught.value.messages


def only_error(data: object) -> str:
    messages = errors_of(data)
    assert len(messages) == 1, messages
    return messages[0]


# --- shipped experiments -----------------------------------------------------------------------


def test_experiments_are_shipped():
    assert len(SHIPPED) >= 8
    assert {p.stem for p in SHIPPED} >= {"triad_cube_baird", "baird_td_dp", "two_state_w2w"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_experiment_loads_and_resolves(path: Path):
    spec = load_spec(path)
    assert spec.name == path.stem, "the results directory is named after spec.name"
    check_experiment(spec, f"experiment file {path}")
    trials = plan_trials(spec)
    expected_points = 1
    for values in spec.grid.values():
        expected_points *= len(values)
    assert len(trials) == expected_points
    assert all(len(trial.seeds) == spec.run.seeds for trial in trials)


def test_agent_names_match_the_rules():
    assert set(typing.get_args(AgentName)) == set(RULES)


# --- unknown fields ----------------------------------------------------------------------------


def test_unknown_top_level_field_lists_allowed_fields(tiny_spec):
    tiny_spec["seed"] = 3
    assert only_error(tiny_spec) == f"seed: unknown field; allowed fields here: {TOP_FIELDS}"


@pytest.mark.parametrize(
    ("section", "allowed"),
    [
        (
            "agent",
            "alpha, beta, correction_regularisation, initial_weight_noise, initial_weights, name, "
            "projection_radius, ridge, update",
        ),
        ("run", "checkpoint_every, device, first_seed, log_every, seeds, steps, tensorboard"),
        ("env", "id, kwargs"),
        (
            "triad",
            "feature_seed, feature_width, features, n_step, off_policy, target_update_period, "
            "target_update_tau",
        ),
        (
            "diagnostics",
            "divergence_factor, hard_divergence_factor, hard_divergence_threshold, "
            "soft_divergence_threshold",
        ),
    ],
)
def test_unknown_nested_field_names_its_path_and_lists_allowed(tiny_spec, section, allowed):
    tiny_spec.setdefault(section, {})["gamma_typo"] = 1
    message = only_error(tiny_spec)
    assert message == f"{section}.gamma_typo: unknown field; allowed fields here: {allowed}"


def test_missing_required_field(tiny_spec):
    del tiny_spec["run"]
    assert only_error(tiny_spec) == "run: required field is missing"


# --- wrong types and out-of-range values --------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "field", "value", "expected"),
    [
        ("run", "steps", "many", "valid integer"),
        ("run", "steps", 2.5, "valid integer"),
        ("agent", "alpha", "x", "valid number"),
        ("agent", "alpha", 0, "greater than 0"),
        ("agent", "alpha", -0.5, "greater than 0"),
        ("agent", "beta", -1, "greater than 0"),
        ("run", "seeds", 0, "greater than or equal to 1"),
        ("run", "seeds", -1, "greater than or equal to 1"),
        ("run", "steps", 0, "greater than or equal to 1"),
        ("run", "log_every", 0, "greater than or equal to 1"),
        ("run", "first_seed", -1, "greater than or equal to 0"),
        ("run", "checkpoint_every", 0, "greater than or equal to 1"),
        ("agent", "initial_weight_noise", -0.1, "greater than or equal to 0"),
        ("agent", "update", "sometimes", "'sampled' or 'expected'"),
        ("triad", "features", "deep", "'env', 'tabular' or 'projected'"),
        ("triad", "target_update_period", 0, "greater than or equal to 1"),
        ("diagnostics", "soft_divergence_threshold", -1, "greater than 0"),
        ("run", "steps", True, "valid integer"),
        ("run", "seeds", False, "valid integer"),
        ("agent", "alpha", float("inf"), "finite number"),
        ("diagnostics", "hard_divergence_threshold", float("nan"), "finite number"),
        ("diagnostics", "divergence_factor", 1, "greater than 1"),
        ("diagnostics", "divergence_factor", 0.5, "greater than 1"),
        ("diagnostics", "divergence_factor", "ten", "valid number"),
        ("diagnostics", "hard_divergence_factor", 1, "greater than 1"),
        ("diagnostics", "hard_divergence_factor", float("inf"), "finite number"),
    ],
)
def test_bad_value_names_field_and_constraint(tiny_spec, section, field, value, expected):
    tiny_spec.setdefault(section, {})[field] = value
    message = only_error(tiny_spec)
    assert message.startswith(f"{section}.{field}: "), message
    assert expected in message
    assert f"(got {value!r})" in message


@pytest.mark.parametrize("n_step", [0, -3])
def test_n_step_below_one_names_triad_n_step(tiny_spec, n_step):
    tiny_spec["triad"] = {"n_step": n_step}
    message = only_error(tiny_spec)
    assert message.startswith("triad.n_step: "), message
    assert "positive integer or 'inf'" in message


def test_n_step_neither_int_nor_inf_lists_both_options(tiny_spec):
    tiny_spec["triad"] = {"n_step": "infinity"}
    messages = errors_of(tiny_spec)
    assert all(m.startswith("triad.n_step: ") for m in messages), messages
    joined = " ".join(messages)
    assert "valid integer" in joined
    assert "'inf'" in joined


def test_n_step_inf_and_positive_ints_are_accepted(tiny_spec):
    tiny_spec["agent"]["name"] = "semi_gradient_dp"
    for n_step in (1, 7, "inf"):
        tiny_spec["triad"] = {"n_step": n_step}
        assert parse_spec(tiny_spec).triad.n_step == n_step
        check_experiment(parse_spec(tiny_spec))


def test_initial_weights_element_of_wrong_type_names_index(tiny_spec):
    tiny_spec["agent"]["initial_weights"] = [1, "a", 1, 1, 1, 1, 10, 1]
    assert only_error(tiny_spec).startswith("agent.initial_weights.1: ")


def test_unknown_agent_lists_allowed_names(tiny_spec):
    tiny_spec["agent"]["name"] = "sarsa"
    message = only_error(tiny_spec)
    assert message.startswith("agent.name: ")
    assert "'sarsa'" in message
    for name in RULES:
        assert f"'{name}'" in message


def test_bad_name_cannot_escape_results_dir(tiny_spec):
    tiny_spec["name"] = "../elsewhere"
    assert only_error(tiny_spec).startswith("name: String should match pattern")


def test_section_that_is_not_a_mapping(tiny_spec):
    tiny_spec["env"] = "triad/Baird-v0"
    assert only_error(tiny_spec).startswith("env: Input should be a valid dictionary")


@pytest.mark.parametrize("data", [None, [], ["name", "x"], "name: x", 3])
def test_non_mapping_top_level(data):
    with pytest.raises(SpecError) as caught:
        parse_spec(data, "experiment file x.yaml")
    assert caught.value.where == "experiment file x.yaml"
    assert caught.value.messages == ["must be a mapping of fields (name, env, agent, run, ...)"]


def test_every_problem_is_reported_at_once(tiny_spec):
    tiny_spec["agent"]["alpha"] = -1
    tiny_spec["run"]["seeds"] = 0
    tiny_spec["colour"] = "red"
    fields = sorted(m.split(":")[0] for m in errors_of(tiny_spec))
    assert fields == ["agent.alpha", "colour", "run.seeds"]


# --- checks against the env and the agent ------------------------------------------------------


def test_unknown_env_lists_triad_ids(tiny_spec):
    tiny_spec["env"]["id"] = "triad/Nope-v0"
    messages = errors_of(tiny_spec)
    assert len(messages) == 2, "one message per grid point"
    for message in messages:
        assert message.startswith("env.id: unknown environment 'triad/Nope-v0'; available: ")
        for env_id in ("triad/Baird-v0", "triad/TwoState-v0", "triad/TsitsiklisVanRoy-v0"):
            assert env_id in message


def test_unknown_env_kwarg_lists_allowed(tiny_spec):
    tiny_spec["env"]["kwargs"] = {"gama": 0.9}
    tiny_spec["grid"] = {}
    assert only_error(tiny_spec) == (
        "env.kwargs.gama: not an argument of triad/Baird-v0; allowed: gamma"
    )


def test_bad_env_kwarg_value_names_the_argument(tiny_spec):
    tiny_spec["env"]["kwargs"] = {"gamma": 2}
    tiny_spec["grid"] = {}
    assert only_error(tiny_spec) == (
        "env.kwargs.gamma: must be in [0, 1) for this continuing task, got 2.0"
    )


def test_sampled_monte_carlo_on_continuing_env(tiny_spec):
    tiny_spec["triad"] = {"n_step": "inf"}
    tiny_spec["grid"] = {}
    message = only_error(tiny_spec)
    assert message.startswith("triad.n_step: a sampled Monte Carlo target ('inf')")
    assert "episodic" in message


def test_tdc_without_beta(tiny_spec):
    tiny_spec["agent"]["name"] = "tdc"
    tiny_spec["grid"] = {}
    assert only_error(tiny_spec) == "agent.beta: tdc needs a secondary step size beta > 0"


def test_beta_on_a_rule_without_it(tiny_spec):
    tiny_spec["agent"]["beta"] = 0.1
    tiny_spec["grid"] = {}
    assert only_error(tiny_spec).startswith("agent.beta: only tdc, tdrc and gtd2 use beta")


def test_rule_limits_are_checked(tiny_spec):
    tiny_spec["agent"] = {"name": "q_learning", "alpha": 0.1, "update": "expected"}
    tiny_spec["env"]["id"] = "triad/BairdControl-v0"
    tiny_spec["triad"] = {"off_policy": False}
    tiny_spec["grid"] = {}
    assert only_error(tiny_spec).startswith("triad.off_policy: q_learning")


def test_initial_weights_of_wrong_length(tiny_spec):
    tiny_spec["agent"]["initial_weights"] = [1.0, 2.0]
    tiny_spec["grid"] = {}
    assert only_error(tiny_spec) == (
        "agent.initial_weights: needs 8 values (the env's feature dimension), got 2"
    )


# --- grids -------------------------------------------------------------------------------------


def test_grid_over_missing_nested_field_names_it(tiny_spec):
    tiny_spec["grid"] = {"triad.bootstrap": [True, False]}
    assert only_error(tiny_spec) == (
        "grid.triad.bootstrap: 'triad.bootstrap' is not a field; "
        "allowed: feature_seed, feature_width, features, n_step, off_policy, "
        "target_update_period, target_update_tau"
    )


def test_grid_over_missing_top_level_field_names_it(tiny_spec):
    tiny_spec["grid"] = {"optimizer.lr": [0.1]}
    assert only_error(tiny_spec) == (
        f"grid.optimizer.lr: 'optimizer' is not a field; allowed: {TOP_FIELDS}"
    )


def test_grid_below_a_leaf_field(tiny_spec):
    tiny_spec["grid"] = {"triad.n_step.size": [1]}
    assert only_error(tiny_spec) == "grid.triad.n_step.size: 'n_step' has no sub-fields"


@pytest.mark.parametrize("path", ["name", "grid.x"])
def test_grid_cannot_vary_name_or_grid(tiny_spec, path):
    tiny_spec["grid"] = {path: ["a"]}
    assert only_error(tiny_spec).startswith(f"grid.{path}: cannot vary")


def test_empty_grid_values(tiny_spec):
    tiny_spec["grid"] = {"triad.off_policy": []}
    assert only_error(tiny_spec) == "grid.triad.off_policy: needs at least one value"


def test_grid_values_must_be_a_list(tiny_spec):
    tiny_spec["grid"] = {"triad.off_policy": True}
    assert only_error(tiny_spec).startswith("grid.triad.off_policy: Input should be a valid list")


def test_grid_value_of_wrong_type_names_the_grid_point(tiny_spec):
    tiny_spec["grid"] = {"run.steps": [10, "many"]}
    message = only_error(tiny_spec)
    assert message.startswith("run.steps: Input should be a valid integer")
    assert message.endswith("(in grid point run.steps='many')")


def test_grid_value_out_of_range_names_the_grid_point(tiny_spec):
    tiny_spec["agent"]["name"] = "semi_gradient_dp"
    tiny_spec["grid"] = {"triad.n_step": [1, 0, "inf"]}
    message = only_error(tiny_spec)
    assert message.startswith("triad.n_step: ")
    assert message.endswith("(in grid point triad.n_step=0)")


def test_grid_point_failing_env_check_names_the_point(tiny_spec):
    tiny_spec["grid"] = {"triad.n_step": [1, "inf"]}
    message = only_error(tiny_spec)
    assert message.startswith("triad.n_step: a sampled Monte Carlo target")
    assert message.endswith("(in grid point triad.n_step='inf')")


def test_grid_over_env_kwargs(tiny_spec):
    tiny_spec["grid"] = {"env.kwargs.gamma": [0.5, 0.9]}
    spec = parse_spec(tiny_spec)
    check_experiment(spec)
    assert [point.env.kwargs for _, point in grid_points(spec)] == [
        {"gamma": 0.5},
        {"gamma": 0.9},
    ]
    tiny_spec["grid"] = {"env.kwargs.gama": [0.5]}
    assert only_error(tiny_spec).endswith("(in grid point env.kwargs.gama=0.5)")


def test_grid_is_full_factorial_in_order(tiny_spec):
    grid = {
        "triad.features": ["tabular", "env"],
        "triad.n_step": [3, 1],
        "agent.alpha": [0.5, 0.01],
    }
    tiny_spec["grid"] = grid
    spec = parse_spec(tiny_spec)
    points = list(grid_points(spec))
    expected = [
        dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())
    ]
    assert [settings for settings, _ in points] == expected
    assert len(points) == 8
    seen = set()
    for settings, point in points:
        assert isinstance(point, ExperimentSpec)
        assert point.grid == {}
        assert point.triad.features == settings["triad.features"]
        assert point.triad.n_step == settings["triad.n_step"]
        assert point.agent.alpha == settings["agent.alpha"]
        # everything not on the grid is the base spec's
        assert point.agent.initial_weights == [1, 1, 1, 1, 1, 1, 10, 1]
        assert point.triad.off_policy is True
        assert point.run == spec.run
        seen.add((point.triad.features, point.triad.n_step, point.agent.alpha))
    assert len(seen) == 8


def test_no_grid_is_one_point(tiny_spec):
    tiny_spec["grid"] = {}
    spec = parse_spec(tiny_spec)
    [(settings, point)] = list(grid_points(spec))
    assert settings == {}
    assert point.model_dump(exclude={"grid"}) == spec.model_dump(exclude={"grid"})


def test_grid_does_not_mutate_the_base_spec(tiny_spec):
    tiny_spec["grid"] = {"agent.initial_weights": [[0, 0, 0, 0, 0, 0, 0, 1]]}
    spec = parse_spec(tiny_spec)
    list(grid_points(spec))
    assert spec.agent.initial_weights == [1, 1, 1, 1, 1, 1, 10, 1]


def test_plan_trials_seeds_and_override(tiny_spec):
    tiny_spec["run"]["first_seed"] = 5
    spec = parse_spec(tiny_spec)
    trials = plan_trials(spec)
    assert [t.variant for t in trials] == [0, 1]
    assert [t.settings for t in trials] == [
        {"triad.off_policy": False},
        {"triad.off_policy": True},
    ]
    assert all(t.seeds == (5, 6, 7) for t in trials)
    assert all(t.seeds == (5, 6) for t in plan_trials(spec, seeds=2))


def test_seed_list():
    assert RunSpec(steps=1).seed_list == [0]
    assert RunSpec(steps=1, seeds=3, first_seed=5).seed_list == [5, 6, 7]


def test_spec_is_frozen(tiny_spec):
    spec = parse_spec(tiny_spec)
    with pytest.raises(Exception, match="frozen"):
        spec.run.steps = 3  # type: ignore[misc]


# --- files -------------------------------------------------------------------------------------


def test_load_spec_round_trips_a_file(tmp_path, tiny_spec):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_spec))
    assert load_spec(path) == parse_spec(tiny_spec)


def test_malformed_yaml_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nenv:\n  id: [triad/Baird-v0\nagent: {}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.where == f"experiment file {path}"
    [message] = caught.value.messages
    assert message.startswith("is not valid YAML at line 4, column ")


def test_non_utf8_file_is_a_spec_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.messages[0].startswith("is not valid YAML: not UTF-8")


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "absent.yaml")
    assert caught.value.messages == ["cannot be read: No such file or directory"]


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_file_whose_top_level_is_not_a_mapping(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="must be a mapping of fields"):
        load_spec(path)


# --- inputs at the limits ----------------------------------------------------------------------


def load_text(tmp_path: Path, text: str) -> ExperimentSpec:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_spec(path)


def text_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as caught:
        load_text(tmp_path, text)
    [message] = caught.value.messages
    return message


TAIL = "env: {id: triad/Baird-v0}\nagent: {name: semi_gradient_td, alpha: 0.01}\nrun: {steps: 5}\n"


def test_duplicate_key_in_a_nested_mapping_names_key_and_lines(tmp_path):
    text = "name: t\nenv: {id: triad/Baird-v0}\nagent:\n  name: tdc\n  alpha: 0.1\n  alpha: 0.2\n"
    assert text_error(tmp_path, text + "run: {steps: 5}\n") == (
        "is not valid YAML at line 6, column 3: the key 'alpha' is given twice (first at line 5); "
        "each field may appear once"
    )


def test_any_alias_is_refused_even_a_small_one(tmp_path):
    text = "name: t\n" + TAIL + "description: &text hello\ngrid: {description: [*text]}\n"
    assert text_error(tmp_path, text).startswith("line 6: the YAML alias *text is not allowed")


def test_nesting_up_to_the_limit_is_read(tmp_path):
    def nested(depth: int) -> str:
        # the top-level mapping is one level; the value adds depth - 1 lists
        return "name: t\n" + TAIL + "description: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n"

    message = text_error(tmp_path, nested(32))
    assert "description: Input should be a valid string" in message
    assert "nested more than 32 levels" in text_error(tmp_path, nested(33))


def test_a_file_over_a_megabyte_is_refused(tmp_path):
    text = "name: t\n" + TAIL + "description: " + "x" * 1_000_000 + "\n"
    assert text_error(tmp_path, text) == (
        f"is {len(text):,} bytes; an experiment file may have 1,000,000"
    )


def test_the_last_seed_may_be_2_31_minus_1(tiny_spec):
    tiny_spec["run"] |= {"first_seed": 2**31 - 3, "seeds": 3}
    assert parse_spec(tiny_spec).run.seed_list[-1] == 2**31 - 1
    tiny_spec["run"]["seeds"] = 4
    assert only_error(tiny_spec).startswith("run.first_seed: the last seed, first_seed + seeds")


def test_grid_size_is_counted_not_expanded(tiny_spec):
    """40 fields of 10 values: 10^40 points, which no loop could ever list."""
    tiny_spec["grid"] = {f"no.such_{k}": list(range(10)) for k in range(40)}
    assert only_error(tiny_spec).startswith("grid: about 10^40 points (10 x 10 x")


def test_a_grid_at_the_limit_is_accepted(tiny_spec):
    tiny_spec["grid"] = {"agent.alpha": [0.01] * 100, "agent.initial_weight_noise": [0.0] * 100}
    assert len(plan_trials(parse_spec(tiny_spec))) == 10_000


def test_quoted_values_are_shortened(tiny_spec):
    tiny_spec["grid"] = {"agent.alpha": ["z" * 100_000]}
    [message] = errors_of(tiny_spec)
    assert len(message) < 300 and "'zzzzz" in message and "..." in message, message


def test_checkpoint_every_must_be_a_multiple_of_log_every(tiny_spec):
    tiny_spec["run"] |= {"log_every": 10, "checkpoint_every": 30}
    assert parse_spec(tiny_spec).run.checkpoint_every == 30
    tiny_spec["run"]["checkpoint_every"] = 25
    assert only_error(tiny_spec) == (
        "run.checkpoint_every: networks are saved at logged steps: must be a multiple of "
        "run.log_every (10) (got 25)"
    )
