"""Experiment specifications: pydantic models of the YAML files in experiments/.

An experiment names the three ingredients of the deadly triad explicitly
(`TriadSpec`) so that a grid can switch each one on and off. `load_spec`
reads and validates a file; every problem becomes a `SpecError` whose
messages name the field and the allowed values.
"""

from __future__ import annotations

import copy
import itertools
import math
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rlharness.errors import SpecError, short, short_text

# The names of rlharness.agents.linear.RULES (mypy checks its keys, a test that none is missing):
# a Literal, not derived from the registry, so that validating a spec never imports the learners.
AgentName = Literal[
    "semi_gradient_td",
    "semi_gradient_dp",
    "q_learning",
    "tdc",
    "tdrc",
    "gtd2",
    "emphatic_td",
    "least_squares_dp",
]
UpdateKind = Literal["sampled", "expected"]
AGENT_NAMES = frozenset((*typing.get_args(AgentName), "dqn", "pqn"))

MAX_COUNT = 2**62
"""The largest step count, period, size or n a spec takes: the compiled learners and NumPy
count in int64 and add and multiply these (t + 1, steps // log_every), so leave headroom."""
MAX_SEEDS = 1_000_000
"""Seeds per run: 250 compiled batches of 4,096 (the benchmarks use 10,000)."""
MAX_SEED = 2**31 - 1
"""The largest seed: np.random.seed (SB3, RLlib) takes seeds below 2^32, torch and numba any
int64, and the harness adds offsets (the evaluation env's seed is seed + 1,000,003)."""
MAX_FEATURE_WIDTH = 4096
"""The most projected features: the learners log every weight at every logged step."""
MAX_GRID_POINTS = 10_000
"""The largest full-factorial grid: validate resolves every point before anything runs."""
MAX_FILE_BYTES = 1_000_000
"""The largest experiment file; the shipped ones are about 2 KB."""
MAX_NESTING = 32
"""The deepest nesting of lists and mappings in an experiment file; the shipped ones use 4."""


class StrictModel(BaseModel):
    """A model that rejects unknown fields and is immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EnvSpec(StrictModel):
    """Which environment to learn on, by Gymnasium id, and its constructor arguments."""

    id: str = Field(description="A registered Gymnasium id, e.g. triad/Baird-v0.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Constructor arguments.")


class LinearAgentSpec(StrictModel):
    """A batched linear learning rule and its step sizes."""

    name: AgentName
    update: UpdateKind | None = Field(
        default=None,
        description="sampled transitions or expected updates over all states; "
        "None takes the rule's own (sampled for TD and Q-learning, expected for DP).",
    )
    alpha: float | None = Field(default=None, gt=0, description="Primary step size.")
    beta: float | None = Field(
        default=None, gt=0, description="Secondary step size of TDC and GTD2."
    )
    ridge: float = Field(
        default=0.0,
        ge=0,
        description="Ridge weight eta: each update also subtracts alpha eta w (Zhang, Yao & "
        "Whiteson 2021); semi_gradient_td, semi_gradient_dp and q_learning.",
    )
    projection_radius: float | None = Field(
        default=None,
        gt=0,
        description="Radius R of the ball the target weights are kept in: each target update "
        "moves w- towards w projected onto ||w|| <= R (Zhang, Yao & Whiteson 2021); None: no "
        "projection. The rules that take ridge; it acts only through a target network "
        "(target_update_period > 1 or target_update_tau < 1).",
    )
    correction_regularisation: float | None = Field(
        default=None,
        ge=0,
        description="TDRC's kappa: the ridge term -beta kappa v of its secondary weights "
        "(Ghiassian et al. 2020); None: the paper's 1.0. tdrc only.",
    )
    initial_weights: list[float] | None = Field(
        default=None,
        description="w0 in the env's feature space (None: zeros). Tabular learners "
        "start from the same initial values X w0.",
    )
    initial_weight_noise: float = Field(
        default=0.0, ge=0, description="Std of a per-seed Gaussian perturbation of w0."
    )


class NetworkSpec(StrictModel):
    """The Q-network: an MLP of ``depth`` hidden layers of ``width`` units (ReLU)."""

    width: StrictInt = Field(default=64, ge=1, le=MAX_COUNT, description="Units per hidden layer.")
    depth: StrictInt = Field(default=2, ge=1, le=MAX_COUNT, description="Number of hidden layers.")
    layer_norm: bool = Field(
        default=False,
        description="LayerNorm in each hidden layer, Linear -> LayerNorm -> ReLU with a learned "
        "gain and bias per unit (gain 1, bias 0 at the start; eps 1e-5), as in PQN (Gallici et al. "
        "2025) and CleanRL's pqn.py; the fleet and sb3 backends.",
    )


class PrioritySpec(StrictModel):
    """Prioritised replay (Schaul et al. 2016): P(i) ~ p_i^alpha, weights (N P(i))^-beta."""

    alpha: float = Field(default=0.0, ge=0, description="Priority exponent; 0 is uniform replay.")
    beta: float = Field(default=0.4, ge=0, le=1, description="Importance-correction exponent.")
    epsilon: float = Field(default=1e-6, gt=0, description="Added to |TD error| for priorities.")


class ExplorationSpec(StrictModel):
    """Epsilon-greedy exploration, decayed linearly over a fraction of training."""

    initial_epsilon: float = Field(default=1.0, ge=0, le=1)
    final_epsilon: float = Field(default=0.05, ge=0, le=1)
    fraction: float = Field(default=0.1, gt=0, le=1, description="Fraction of steps to decay.")


BootstrapTarget = Literal["q_learning", "target_q", "double_q", "inverse_double_q"]


class DQNAgentSpec(StrictModel):
    """A DQN-family agent with the knobs of van Hasselt et al. (2018), the deadly-triad study.

    The bootstrap target: ``q_learning`` bootstraps on the online network (no
    target network), ``target_q`` on the target network, ``double_q`` picks
    the action with the online network and evaluates it with the target
    network, ``inverse_double_q`` picks with the target and evaluates with the
    online network.
    """

    name: Literal["dqn"]
    backend: Literal["sb3", "rllib", "fleet"] = Field(
        default="sb3",
        description="sb3 (stable-baselines3, one seed at a time), rllib, or fleet (every seed "
        "and same-shaped grid point as members of one vectorised computation).",
    )
    bootstrap_target: BootstrapTarget = "target_q"
    replay_capacity: StrictInt = Field(
        default=50_000, ge=1, le=MAX_COUNT, description="Transitions kept."
    )
    n_step: StrictInt = Field(
        default=1, ge=1, le=MAX_COUNT, description="Multi-step return length."
    )
    target_update_period: StrictInt = Field(
        default=500, ge=1, le=MAX_COUNT, description="Env steps between target-network updates."
    )
    target_update_tau: float = Field(
        default=1.0, gt=0, le=1, description="Polyak rate of each target update (1: copy)."
    )
    prioritized_replay: PrioritySpec = Field(default_factory=PrioritySpec)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    gamma: float = Field(default=0.99, ge=0, lt=1)
    reward_clip: float | None = Field(
        default=1.0, gt=0, description="Clip rewards to [-c, c] (None: no clipping)."
    )
    exploration: ExplorationSpec = Field(default_factory=ExplorationSpec)
    learning_rate: float = Field(default=1e-3, gt=0)
    l2: float = Field(
        default=0.0,
        ge=0,
        description="L2 penalty: l2 / 2 times the squared norm of every network parameter "
        "(weights, biases, LayerNorm gains and biases) is added to the loss before the gradient "
        "is clipped, so the gradient gains l2 theta; the logged loss is the TD loss (PQN, "
        "Gallici et al. 2025); the fleet and sb3 backends.",
    )
    batch_size: StrictInt = Field(default=64, ge=1, le=MAX_COUNT)
    train_frequency: StrictInt = Field(
        default=4, ge=1, le=MAX_COUNT, description="Env steps per update."
    )
    gradient_steps: StrictInt = Field(
        default=1, ge=1, le=MAX_COUNT, description="Updates per training call."
    )
    learning_starts: StrictInt = Field(
        default=1000, ge=0, le=MAX_COUNT, description="Steps before learning."
    )
    max_grad_norm: float = Field(default=10.0, gt=0)
    eval_episodes: StrictInt = Field(
        default=5, ge=1, le=MAX_COUNT, description="Greedy episodes per log."
    )
    probe_states: StrictInt = Field(
        default=256,
        ge=1,
        le=MAX_COUNT,
        description="Fixed states (from a random policy) for max |Q|.",
    )

    @field_validator("n_step", "batch_size")
    @classmethod
    def _fits_in_replay(cls, value: int, info: ValidationInfo) -> int:
        capacity = info.data.get("replay_capacity")
        if capacity is not None and value > capacity:
            raise ValueError(f"must not exceed replay_capacity ({capacity})")
        return value


class PQNAgentSpec(StrictModel):
    """PQN (Gallici et al., ICLR 2025, "Simplifying Deep Temporal Difference Learning").

    Q-learning with neither a target network nor replay: each member acts
    epsilon-greedily in ``num_envs`` parallel envs for ``num_steps`` steps, computes
    Peng's Q(lambda) returns over that rollout backwards, and fits Q to them for
    ``update_epochs`` passes of ``num_minibatches`` minibatches with RAdam; LayerNorm
    in the hidden layers keeps the online bootstrapping stable. Defaults are
    CleanRL's pqn.py (CartPole-v1). Steps (``run.steps``, ``run.log_every``) count env
    steps of one member summed over its envs, CleanRL's ``global_step``.
    """

    name: Literal["pqn"]
    backend: Literal["fleet"] = Field(
        default="fleet",
        description="fleet: every seed and same-shaped grid point as members of one "
        "vectorised computation (the only backend).",
    )
    num_envs: StrictInt = Field(
        default=4, ge=1, le=MAX_COUNT, description="Parallel envs of each member."
    )
    num_steps: StrictInt = Field(
        default=128, ge=1, le=MAX_COUNT, description="Rollout length per env between updates."
    )
    gamma: float = Field(default=0.99, ge=0, lt=1)
    q_lambda: float = Field(
        default=0.65,
        ge=0,
        le=1,
        description="lambda of the Q(lambda) returns: 0 one-step Q-learning targets, 1 Monte "
        "Carlo returns bootstrapped at the rollout's end.",
    )
    learning_rate: float = Field(default=2.5e-4, gt=0, description="RAdam's step size.")
    anneal_lr: bool = Field(
        default=True, description="Decay the step size linearly to 0 over the run's updates."
    )
    num_minibatches: StrictInt = Field(
        default=4,
        ge=1,
        le=MAX_COUNT,
        description="Minibatches per epoch; must divide num_envs * num_steps.",
    )
    update_epochs: StrictInt = Field(
        default=4, ge=1, le=MAX_COUNT, description="Passes over each rollout."
    )
    max_grad_norm: float = Field(
        default=10.0, gt=0, description="Each member's gradient is scaled to this norm at most."
    )
    l2: float = Field(
        default=0.0,
        ge=0,
        description="L2 penalty: l2 / 2 times the squared norm of every network parameter is "
        "added to the loss before the gradient is clipped (the regularisation of PQN's "
        "analysis, Gallici et al. 2025); the logged loss is the TD loss.",
    )
    exploration: ExplorationSpec = Field(
        default_factory=lambda: ExplorationSpec(fraction=0.5),
        description="Epsilon decayed linearly from initial to final over fraction of run.steps.",
    )
    network: NetworkSpec = Field(
        default_factory=lambda: NetworkSpec(width=120, depth=2, layer_norm=True),
        description="The Q-network; LayerNorm on, as in PQN.",
    )
    reward_clip: float | None = Field(
        default=1.0, gt=0, description="Clip rewards to [-c, c] (None: no clipping)."
    )
    eval_episodes: StrictInt = Field(
        default=5, ge=1, le=MAX_COUNT, description="Greedy episodes per log."
    )
    probe_states: StrictInt = Field(
        default=256,
        ge=1,
        le=MAX_COUNT,
        description="Fixed states (from a random policy) for max |Q|.",
    )

    @field_validator("num_minibatches")
    @classmethod
    def _divides_rollout(cls, value: int, info: ValidationInfo) -> int:
        envs, steps = info.data.get("num_envs"), info.data.get("num_steps")
        if envs is not None and steps is not None and (envs * steps) % value:
            divisors = [d for d in range(1, min(envs * steps, 64) + 1) if (envs * steps) % d == 0]
            raise ValueError(
                f"must divide num_envs * num_steps = {envs * steps}; allowed: a divisor such as "
                + ", ".join(map(str, divisors))
            )
        return value


DeepAgentSpec = DQNAgentSpec | PQNAgentSpec
"""The deep agents: both log the same metrics and are judged by the same outcomes."""

AgentSpec = Annotated[LinearAgentSpec | DQNAgentSpec | PQNAgentSpec, Field(discriminator="name")]


class TriadSpec(StrictModel):
    """The three ingredients of the deadly triad, each a knob."""

    features: Literal["env", "tabular", "projected"] = Field(
        default="env",
        description="Function approximation: the env's linear features, one-hot (off), or "
        "feature_width random linear combinations of the env's features (Che et al. 2024's "
        "width knob: over-parameterised once they span the env's features).",
    )
    feature_width: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_FEATURE_WIDTH,
        validate_default=True,
        description="Number of projected features x'(s) = G x(s) / sqrt(width), G with "
        "standard normal entries; required by features 'projected', refused otherwise.",
    )
    feature_seed: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description="Seed of the projection G: the features are a fixed function of the "
        "spec, the same for every run seed.",
    )
    n_step: StrictInt | Literal["inf"] = Field(
        default=1,
        description="Bootstrapping: n of the n-step target (at most 2^62); 'inf' is a Monte "
        "Carlo target (off).",
    )
    target_update_period: StrictInt = Field(
        default=1,
        ge=1,
        le=MAX_COUNT,
        description="Steps between copies of w into the bootstrap target's w-.",
    )
    target_update_tau: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Polyak rate of each target update, w- <- w- + tau (w - w-) (1: a copy). "
        "With tau < 1 the target network exists even at target_update_period 1 (updated every "
        "step, as in Zhang, Yao & Whiteson 2021).",
    )
    off_policy: bool = Field(
        default=True,
        description="Off-policy learning: behaviour b and weighting mu differ from the "
        "target policy (true), or b = pi and on-policy weighting d_pi (false).",
    )

    @field_validator("feature_width")
    @classmethod
    def _width_of_projected_features(cls, value: int | None, info: ValidationInfo) -> int | None:
        features = info.data.get("features")
        if features == "projected" and value is None:
            raise ValueError("features 'projected' needs a feature_width (an int >= 1)")
        if features != "projected" and value is not None:
            raise ValueError(
                f"only features 'projected' takes a width; remove it for features '{features}'"
            )
        return value

    @field_validator("n_step")
    @classmethod
    def _positive_n_step(cls, value: int | str) -> int | str:
        if value != "inf" and not 1 <= int(value) <= MAX_COUNT:
            raise ValueError("n_step must be a positive integer or 'inf' (n at most 2^62)")
        return value


class RunSpec(StrictModel):
    """How long to run, how often to log, and which seeds."""

    steps: StrictInt = Field(
        ge=1, le=MAX_COUNT, description="Transitions (sampled) or sweeps (expected)."
    )
    log_every: StrictInt = Field(
        default=1, ge=1, le=MAX_COUNT, description="Steps between logged metrics."
    )
    seeds: StrictInt = Field(default=1, ge=1, le=MAX_SEEDS, description="Number of seeds.")
    device: Literal["cpu", "cuda"] = Field(
        default="cpu", description="Where a fleet computes (the fleet backend only)."
    )
    first_seed: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description="Seeds are first_seed, +1, ...; the last is at most 2^31 - 1.",
    )
    checkpoint_every: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Deep agents: env steps between saved networks (step<N> files beside "
        "final), a multiple of log_every (networks are saved at logs). None: the final only.",
    )
    tensorboard: bool = Field(
        default=True,
        description="Stream every logged metric, as it is logged, to TensorBoard event files "
        "in the run's tensorboard/ directory (one stream per grid point x seed).",
    )

    @field_validator("first_seed")
    @classmethod
    def _last_seed_in_range(cls, value: int, info: ValidationInfo) -> int:
        seeds = info.data.get("seeds")
        if seeds is not None and value + seeds - 1 > MAX_SEED:
            raise ValueError(
                f"the last seed, first_seed + seeds - 1 = {value + seeds - 1}, must be at most "
                f"2^31 - 1 ({MAX_SEED})"
            )
        return value

    @field_validator("checkpoint_every")
    @classmethod
    def _checkpoint_at_logs(cls, value: int | None, info: ValidationInfo) -> int | None:
        log_every = info.data.get("log_every")
        if value is not None and log_every is not None and value % log_every != 0:
            raise ValueError(
                f"networks are saved at logged steps: must be a multiple of run.log_every "
                f"({log_every})"
            )
        return value

    @property
    def seed_list(self) -> list[int]:
        """The seeds this run uses."""
        return list(range(self.first_seed, self.first_seed + self.seeds))


class DiagnosticsSpec(StrictModel):
    """Thresholds of the divergence outcomes.

    Linear learners judge the value error relative to its initial value
    (``divergence_factor``) and the weights relative to their initial scale
    (``hard_divergence_factor``), so that an outcome does not depend on the
    scale of w0 (see `rlharness.agents.linear.criterion`); DQN agents use the
    absolute bounds of van Hasselt et al. (2018).
    """

    soft_divergence_threshold: float | None = Field(
        default=None,
        gt=0,
        description="Absolute bound: max |v| (linear) or probe max |Q| (dqn) beyond this is soft "
        "divergence. None: the largest realisable return R_max / (1 - gamma); linear learners "
        "apply it only where some reward is non-zero.",
    )
    hard_divergence_threshold: float = Field(
        default=1e10,
        gt=0,
        description="dqn agents: |parameters| beyond this (or non-finite) is hard divergence. "
        "Linear learners use hard_divergence_factor instead.",
    )
    divergence_factor: float = Field(
        default=10.0,
        gt=1,
        description="Linear learners: the value error max |v - v_pi| ending more than this "
        "factor above its reference e_ref = max(e_0, R_max / (1 - gamma)) (e_0, its value at "
        "step 0, where every reward is 0), or growing fast enough to pass it within another "
        "run as long, is soft divergence.",
    )
    hard_divergence_factor: float = Field(
        default=1e9,
        gt=1,
        description="Linear learners: a weight beyond this factor times the seed's initial "
        "scale, max |w0| (at least R_max / (1 - gamma) where some reward is non-zero), or "
        "non-finite, is hard divergence.",
    )


LINEAR_DIAGNOSTICS = ("divergence_factor", "hard_divergence_factor")
"""The diagnostics fields only linear learners use."""


def diagnostics_problems(spec: ExperimentSpec) -> list[str]:
    """Field-named messages for diagnostics fields set away from their default that the agent
    family does not use (empty if none)."""
    diagnostics, defaults = spec.diagnostics, DiagnosticsSpec()
    if isinstance(spec.agent, DeepAgentSpec):
        return [
            f"diagnostics.{name}: only linear learners use it; {spec.agent.name} agents "
            "soft-diverge beyond soft_divergence_threshold (default R_max / (1 - gamma)); "
            "remove it"
            for name in LINEAR_DIAGNOSTICS
            if getattr(diagnostics, name) != getattr(defaults, name)
        ]
    if diagnostics.hard_divergence_threshold != defaults.hard_divergence_threshold:
        return [
            "diagnostics.hard_divergence_threshold: only dqn agents use it; linear learners "
            "hard-diverge beyond hard_divergence_factor times their initial scale; set that instead"
        ]
    return []


class ParameterSpec(StrictModel):
    """One dimension of a sweep's search space."""

    type: Literal["categorical", "int", "float"]
    choices: list[Any] | None = Field(default=None, description="Values of a categorical.")
    low: float | None = None
    high: float | None = None
    log: bool = Field(default=False, description="Sample on a log scale (int and float).")
    step: float | None = Field(default=None, gt=0, description="Grid step (int and float).")

    @model_validator(mode="after")
    def _bounds_match_type(self) -> ParameterSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical needs a non-empty 'choices' list")
            if not all(isinstance(c, str | int | float | bool | None) for c in self.choices):
                raise ValueError("choices must be strings, numbers, booleans or null")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"an {self.type} needs 'low' <= 'high'")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scale parameter needs 'low' > 0")
        elif self.log and self.step is not None:
            raise ValueError("'step' and 'log' cannot be combined")
        elif self.type == "int" and not all(
            float(bound).is_integer() for bound in (self.low, self.high, self.step or 1)
        ):
            raise ValueError("an int needs whole-number 'low', 'high' and 'step'")
        return self


class SweepSpec(StrictModel):
    """An Optuna study over spec fields; each trial runs ``run.seeds`` seeds of one point.

    Without a ``space``, the experiment's ``grid`` is the search space. The
    trial's value is ``aggregate`` over its seeds of the per-seed ``objective``.
    With a pruner, a trial runs its seeds ``seeds_per_step`` at a time and the
    pruner's step is the number of seeds finished.
    """

    sampler: Literal["grid", "tpe", "random", "cmaes"] = "grid"
    space: dict[str, ParameterSpec] = Field(
        default_factory=dict, description="Dotted spec field -> parameter, e.g. agent.alpha."
    )
    n_trials: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description="Trials to finish (grid: every point once, at most this).",
    )
    objective: Literal[
        "final_max_abs_value",
        "final_sqrt_ve",
        "final_sqrt_pbe",
        "divergence_rate",
        "final_return",
        "return_auc",
    ] = "divergence_rate"
    direction: Literal["minimize", "maximize"] = "minimize"
    aggregate: Literal["mean", "median", "iqm"] = Field(
        default="mean", description="How the per-seed values become the trial's value."
    )
    pruner: Literal["none", "median", "hyperband"] = "none"
    prune_hard_diverged: bool = Field(
        default=False, description="End a trial (pruned) as soon as one of its seeds hard-diverged."
    )
    seeds_per_step: StrictInt = Field(
        default=1,
        ge=1,
        le=MAX_SEEDS,
        description="Seeds per pruning step (only used with a pruner).",
    )
    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    retries: StrictInt = Field(
        default=2,
        ge=0,
        le=1000,
        description="Times Ray re-runs a trial whose worker died before the trial is failed "
        "and re-queued.",
    )
    seed: StrictInt = Field(default=0, ge=0, le=MAX_SEED, description="Seed of the sampler.")

    @property
    def prunes(self) -> bool:
        """Whether trials run their seeds in steps that a pruner may end early."""
        return self.pruner != "none" or self.prune_hard_diverged


class ExperimentSpec(StrictModel):
    """One experiment: env, agent, triad knobs, run length, diagnostics, optional grid and sweep."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    env: EnvSpec
    agent: AgentSpec
    triad: TriadSpec = Field(default_factory=TriadSpec)
    run: RunSpec
    diagnostics: DiagnosticsSpec = Field(default_factory=DiagnosticsSpec)
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Full-factorial grid: dotted field path -> values, e.g. triad.features.",
    )
    sweep: SweepSpec | None = Field(default=None, description="How rlharness sweep explores.")


class _RefuseDuplicateKeys:
    """Mappings that refuse a key given twice (YAML itself lets the last one win)."""

    def construct_mapping(self: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        """The mapping of ``node``, or a `yaml.constructor.ConstructorError` at a repeated key."""
        self.flatten_mapping(node)
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in first_lines
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key {short(key)} is given twice (first at line {first_lines[key]}); "
                    "each field may appear once",
                    key_node.start_mark,
                )
            first_lines[key] = key_node.start_mark.line + 1
        return dict(super().construct_mapping(node, deep))  # type: ignore[misc]


class SpecLoader(_RefuseDuplicateKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML with libyaml's fast parser where installed; keys given twice are refused."""


class ExplainingLoader(_RefuseDuplicateKeys, yaml.SafeLoader):
    """The same with PyYAML's own parser, to explain a file that libyaml refused.

    Slower, but its messages say more, and it has no nesting limit of its own
    (libyaml stops at 1,000 levels without saying so).
    """


def load_spec(path: Path, overrides: dict[str, Any] | None = None) -> ExperimentSpec:
    """Read, validate and grid-check an experiment file, or raise `SpecError`.

    ``overrides`` (dotted path -> value, from `parse_overrides`) are set in the file's
    mapping before it is validated, so that a bad value gets the file's own message.
    """
    where = f"experiment file {path}"
    data = _read_spec(path, where)
    if overrides:
        where += " with --set " + ", ".join(
            f"{short_text(key)}={short(value)}" for key, value in overrides.items()
        )
        data = _overridden(data, overrides)
    return parse_spec(data, where)


def parse_overrides(texts: list[str]) -> dict[str, Any]:
    """``--set PATH=VALUE`` options as dotted path -> value, each value read as YAML.

    ``agent.alpha=0.02`` sets a float, ``triad.features=[1,2]`` a list, ``env.kwargs.x=null``
    None; a path given twice, a missing ``=`` or a value that is not YAML is a `SpecError`.
    """
    overrides: dict[str, Any] = {}
    for text in texts:
        path, equals, value = text.partition("=")
        keys = path.strip().split(".")
        if not equals or not all(key.strip() for key in keys):
            raise SpecError(
                "--set",
                [f"{short(text)}: expected PATH=VALUE, a dotted field path, e.g. agent.alpha=0.02"],
            )
        path = ".".join(key.strip() for key in keys)
        if path in overrides:
            raise SpecError("--set", [f"{short_text(path)}: given twice; set each field once"])
        try:
            overrides[path] = _parse(value, "--set", SpecLoader)
        except yaml.YAMLError as error:
            raise SpecError(
                "--set", [f"{short_text(path)}: value {_yaml_problem(error)}"]
            ) from None
    return overrides


def _overridden(data: Any, overrides: dict[str, Any]) -> Any:
    """A copy of the file's ``data`` with each dotted path set (missing mappings created)."""
    if not isinstance(data, dict):
        return data  # parse_spec says what the file should be
    data = copy.deepcopy(data)
    for path, value in overrides.items():
        *parents, leaf = _override_keys(path)
        node = data
        for depth, key in enumerate(parents):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                prefix = ".".join(parents[: depth + 1])
                raise SpecError(
                    "--set",
                    [
                        f"{short_text(path)}: {short_text(prefix)} is {short(child)} in the file, "
                        "not a mapping of fields"
                    ],
                )
            node = child
        node[leaf] = value
    return data


PATH_KEYED = (("grid",), ("sweep", "space"))
"""Mappings whose keys are dotted field paths themselves: ``grid.triad.features=[...]`` sets
the grid's ``triad.features`` entry."""


def _override_keys(path: str) -> list[str]:
    """The keys a dotted ``--set`` path walks; inside `PATH_KEYED` mappings the rest is one key."""
    keys = path.split(".")
    for section in PATH_KEYED:
        depth = len(section)
        if tuple(keys[:depth]) == section and len(keys) > depth:
            return [*section, ".".join(keys[depth:])]
    return keys


def _read_spec(path: Path, where: str) -> Any:
    """The YAML document of an experiment file, or `SpecError` when it is not one."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SpecError(where, [f"cannot be read: {error.strerror}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(
            where, [f"is {len(raw):,} bytes; an experiment file may have {MAX_FILE_BYTES:,}"]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(
            where, [f"is not valid YAML: not UTF-8 text (byte {error.start}: {error.reason})"]
        ) from None
    try:
        data = _parse(text, where, SpecLoader)
    except yaml.YAMLError:
        try:
            data = _parse(text, where, ExplainingLoader)
        except yaml.YAMLError as error:
            raise SpecError(where, [_yaml_problem(error)]) from None
    return data


def _parse(text: str, where: str, loader: type[Any]) -> Any:
    """The document in ``text`` after `_check_structure`, or `yaml.YAMLError`."""
    _check_structure(text, where, loader)
    return yaml.load(text, Loader=loader)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong with a file that is not YAML, and where."""
    mark = getattr(error, "problem_mark", None)
    position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or str(error)
    return f"is not valid YAML{position}: {short_text(problem, 200)}"


def _check_structure(text: str, where: str, loader: type[Any]) -> None:
    """Refuse aliases and deep nesting from the parser's events, before any value is built.

    An alias repeats a value by reference, so a few hundred bytes can expand to
    gigabytes once validated; no experiment needs one. Deep nesting would
    exhaust the recursion of every later step.
    """
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise SpecError(
                where,
                [
                    f"line {line}: the YAML alias *{short_text(str(event.anchor), 40)} is not "
                    "allowed in experiment files (aliases can expand a few bytes to gigabytes); "
                    "write the value out"
                ],
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                raise SpecError(
                    where,
                    [
                        f"line {line}: lists and mappings are nested more than {MAX_NESTING} "
                        "levels deep; an experiment file needs a few"
                    ],
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_spec(data: Any, where: str = "experiment") -> ExperimentSpec:
    """Validate a mapping as an `ExperimentSpec`, grid points included."""
    if not isinstance(data, dict):
        raise SpecError(where, ["must be a mapping of fields (name, env, agent, run, ...)"])
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(where, format_validation_error(error, ExperimentSpec)) from None
    problems = []
    for path, values in spec.grid.items():
        if not values:
            problems.append(f"grid.{short_text(path)}: needs at least one value")
        elif path.split(".")[0] in ("grid", "name"):
            problems.append(f"grid.{short_text(path)}: cannot vary '{path.split('.')[0]}'")
    if problems:
        raise SpecError(where, problems)
    check_grid_size([len(values) for values in spec.grid.values()], "grid", where)
    for _ in grid_points(spec, where):
        pass
    return spec


def check_grid_size(lengths: list[int], source: str, where: str) -> int:
    """The number of points of a full factorial with these dimensions, or `SpecError` if too many.

    Counted, never expanded: a grid of 40 fields of 10 values has 10^40 points.
    """
    count = math.prod(lengths)
    if count > MAX_GRID_POINTS:
        sizes = " x ".join(count_text(n) for n in lengths[:10]) + (" x ..." * (len(lengths) > 10))
        product = f" ({sizes})" if len(lengths) > 1 else ""
        raise SpecError(
            where,
            [
                f"{source}: {count_text(count)} points{product} are more than the "
                f"{MAX_GRID_POINTS:,} a grid may have; vary fewer fields or values"
            ],
        )
    return count


def count_text(count: int) -> str:
    """A count in digits, or as a power of ten when it has more than 15 of them."""
    if count < 10**15:
        return f"{count:,}"
    return f"about 10^{math.floor(math.log10(count))}"


def grid_points(
    spec: ExperimentSpec, where: str = "experiment"
) -> Iterator[tuple[dict[str, Any], ExperimentSpec]]:
    """Each point of the full-factorial grid: its settings and the spec with them applied."""
    paths = list(spec.grid)
    for values in itertools.product(*(spec.grid[path] for path in paths)):
        settings = dict(zip(paths, values, strict=True))
        yield settings, with_settings(spec, settings, where)


def with_settings(
    spec: ExperimentSpec, settings: dict[str, Any], where: str = "experiment", source: str = "grid"
) -> ExperimentSpec:
    """The spec with dotted-path ``settings`` applied, re-validated, without grid and sweep.

    ``source`` names the section the settings come from in messages (grid or sweep.space).
    """
    data = spec.model_dump(exclude={"grid", "sweep"})
    for path, value in settings.items():
        _set_path(data, path, value, where, source)
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as error:
        label = ", ".join(f"{short_text(path)}={short(value)}" for path, value in settings.items())
        messages = format_validation_error(error, ExperimentSpec)
        raise SpecError(where, [f"{m} (in {source} point {label})" for m in messages]) from None


def _set_path(data: dict[str, Any], path: str, value: Any, where: str, source: str) -> None:
    keys = path.split(".")
    node: Any = data
    model: type[BaseModel] | None = ExperimentSpec
    for depth, key in enumerate(keys):
        is_leaf = depth == len(keys) - 1
        if model is not None and key not in model.model_fields:
            allowed = ", ".join(sorted(model.model_fields))
            prefix = ".".join(keys[:depth])
            raise SpecError(
                where,
                [
                    f"{source}.{short_text(path)}: '{short_text(prefix + '.' if prefix else '')}"
                    f"{short_text(key)}' is not a field; "
                    f"allowed: {allowed}"
                ],
            )
        if is_leaf:
            node[key] = value
            return
        if not isinstance(node.get(key), dict):
            raise SpecError(
                where, [f"{source}.{short_text(path)}: '{short_text(key)}' has no sub-fields"]
            )
        annotation = model.model_fields[key].annotation if model is not None else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
        node = node[key]


def format_validation_error(error: ValidationError, model: type[BaseModel]) -> list[str]:
    """Turn pydantic's errors into one line per field, listing allowed fields for unknown ones.

    The alternatives of a union (e.g. an integer or 'inf') are joined on one line.
    """
    problems: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if not _is_union_tag(part)]
        path = short_text(".".join(str(part) for part in location), 80) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(_fields_at(model, list(item["loc"][:-1]))))
            problem = f"unknown field; allowed fields here: {allowed}"
        elif item["type"] == "missing":
            problem = "required field is missing"
        elif item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            context = item.get("ctx", {})
            path = f"{path}.{str(context.get('discriminator', 'name')).strip(chr(39))}"
            expected = context.get("expected_tags", "")
            problem = (
                f"unknown value {context['tag']!r}; allowed: {expected}"
                if item["type"] == "union_tag_invalid"
                else "required field is missing"
            )
        else:
            message = item["msg"].removeprefix("Value error, ")
            problem = f"{message} (got {short(item.get('input'))})"
        problems.setdefault(path, []).append(problem)
    return [f"{path}: {' or '.join(found)}" for path, found in problems.items()]


def _is_union_tag(part: Any) -> bool:
    """Parts of pydantic's error locations that name a union member, not a field."""
    return isinstance(part, str) and (
        part in {"int", "literal['inf']", "list[float]", "float"} or part in AGENT_NAMES
    )


def _fields_at(model: type[BaseModel], location: list[Any]) -> list[str]:
    """The fields of the model at a raw error location (union members picked by their tag)."""
    current: type[BaseModel] = model
    index = 0
    while index < len(location):
        field = current.model_fields.get(str(location[index]))
        members = _model_members(field.annotation) if field is not None else []
        if len(members) == 1:
            current, index = members[0], index + 1
            continue
        tag = location[index + 1] if index + 1 < len(location) else None
        tagged = [m for m in members if tag in typing.get_args(m.model_fields["name"].annotation)]
        if not tagged:
            return []
        current, index = tagged[0], index + 2
    return list(current.model_fields)


def _model_members(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation admits (itself, or the members of a union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [member for arg in typing.get_args(annotation) for member in _model_members(arg)]
