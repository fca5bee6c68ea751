"""The members' Q-networks as stacked parameters: row k of one [K, P] tensor is member k's.

A member's network is SB3's DQN ``MlpPolicy`` Q-network: ``depth`` hidden
layers of ``width`` ReLU units and a linear head with one output per action,
initialised as torch's ``nn.Linear`` (weights and biases uniform in
+-1/sqrt(fan_in)), from the member's own initialisation stream. All of a
member's weights and biases are one row of a flat tensor, so gradient norms,
Adam and target updates are a few whole-tensor operations; every layer is one
batched matrix product over members (``torch.baddbmm`` on views of the rows),
so member k's values are its own computation whatever the other members are.

With ``layer_norm`` each hidden layer is Linear -> LayerNorm -> ReLU, as in
PQN (Gallici et al., ICLR 2025) and CleanRL's pqn.py: the pre-activations are
normalised over the layer's units (eps 1e-5, torch's and Equinox's default)
and scaled and shifted by a per-unit gain (initialised to 1) and bias (0),
which follow the layer's bias in the member's row. The learner differentiates
`forward` with autograd, so nothing else changes.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
from torch.nn import functional

from rlharness.agents.deep.fleet import streams

LAYER_NORM_EPSILON = 1e-5
ROW_ALIGNMENT = 64
"""Parameter rows are padded to a multiple of this many elements: whole iterations (two 512-bit
vectors of float32, unrolled) of torch's vectorised elementwise loops, with room to spare."""

Layers = list[tuple[torch.Tensor, ...]]
"""Each layer's weight [K, fan_in, fan_out] and bias [K, 1, fan_out], then, for a hidden layer
with LayerNorm, its gain and bias [K, 1, fan_out]."""


class NetworkShape(NamedTuple):
    """What must match for members to share a fleet: input size, actions, width, depth and
    whether hidden layers are layer-normalised."""

    inputs: int
    actions: int
    width: int
    depth: int
    layer_norm: bool = False

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each linear layer, input to head."""
        sizes = [self.inputs] + [self.width] * self.depth + [self.actions]
        return list(itertools.pairwise(sizes))

    def parameter_count(self) -> int:
        """Weights and biases of one member's network (LayerNorm gains and biases included)."""
        return sum(
            self._block(fan_in, fan_out, index)
            for index, (fan_in, fan_out) in enumerate(self.layer_sizes())
        )

    def normalised(self, index: int) -> bool:
        """Whether linear layer ``index`` (0 = first hidden) is followed by a LayerNorm."""
        return self.layer_norm and index < self.depth

    def _block(self, fan_in: int, fan_out: int, index: int) -> int:
        return (fan_in + 1) * fan_out + (2 * fan_out if self.normalised(index) else 0)

    def row_length(self) -> int:
        """A member's row: its parameters, padded with zeros to whole SIMD vectors.

        Elementwise kernels (Adam, clipping) then take the same vector path for
        every element of every row, whatever the number of rows before it.
        """
        return math.ceil(self.parameter_count() / ROW_ALIGNMENT) * ROW_ALIGNMENT


def initial_parameters(
    shape: NetworkShape, seeds: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Every member's initial parameter row [K, row_length], uniform in +-1/sqrt(fan_in).

    nn.Linear's initialisation; LayerNorm gains start at 1 and their biases at 0 (nn.LayerNorm's);
    the padding after the parameters is zero.
    """
    keys = streams.member_keys(seeds, streams.Stream.INITIALISATION)
    counters = torch.arange(shape.row_length()).expand(len(seeds), -1)
    uniform = streams.uniform(keys, counters)
    padding = shape.row_length() - shape.parameter_count()
    bounds, constants = [], []
    for index, (fan_in, fan_out) in enumerate(shape.layer_sizes()):
        bounds.append(torch.full(((fan_in + 1) * fan_out,), 1.0 / fan_in**0.5, dtype=torch.float64))
        constants.append(torch.zeros((fan_in + 1) * fan_out, dtype=torch.float64))
        if shape.normalised(index):
            bounds.append(torch.zeros(2 * fan_out, dtype=torch.float64))
            constants.append(torch.cat([torch.ones(fan_out), torch.zeros(fan_out)]).double())
    bounds.append(torch.zeros(padding, dtype=torch.float64))
    constants.append(torch.zeros(padding, dtype=torch.float64))
    parameters = (2.0 * uniform - 1.0) * torch.cat(bounds)
    if shape.layer_norm:
        parameters = parameters + torch.cat(constants)
    return parameters.to(torch.float32).to(device)


def layers(parameters: torch.Tensor, shape: NetworkShape) -> Layers:
    """Views of each layer's weight [K, fan_in, fan_out] and bias [K, 1, fan_out] (and a hidden
    layer's LayerNorm gain and bias), in the order of the row."""
    members = parameters.shape[0]
    views: Layers = []
    offset = 0
    for index, (fan_in, fan_out) in enumerate(shape.layer_sizes()):
        weight = parameters[:, offset : offset + fan_in * fan_out].view(members, fan_in, fan_out)
        offset += fan_in * fan_out
        vectors = 3 if shape.normalised(index) else 1
        rows = [
            parameters[:, offset + k * fan_out : offset + (k + 1) * fan_out].view(
                members, 1, fan_out
            )
            for k in range(vectors)
        ]
        offset += vectors * fan_out
        views.append((weight, *rows))
    return views


def q_values(
    parameters: torch.Tensor, shape: NetworkShape, observations: torch.Tensor
) -> torch.Tensor:
    """Q(s, .) of every member: observations [K, N, *observation shape] -> [K, N, actions]."""
    return forward(layers(parameters, shape), observations)


def forward(network: Layers, observations: torch.Tensor) -> torch.Tensor:
    """The MLP on observations flattened and cast to float32 (MinAtar's frames become 0/1)."""
    head_weight, head_bias = network[-1]
    return torch.baddbmm(head_bias, penultimate(network, observations), head_weight)


def penultimate(network: Layers, observations: torch.Tensor) -> torch.Tensor:
    """The last hidden layer's activations phi(s) [K, N, width]: Q(s, .) = head(phi(s))."""
    hidden = observations.reshape(*observations.shape[:2], -1).to(torch.float32)
    for weight, bias, *norm in network[:-1]:
        hidden = torch.baddbmm(bias, hidden, weight)
        if norm:
            gain, shift = norm
            normalised = functional.layer_norm(hidden, hidden.shape[-1:], eps=LAYER_NORM_EPSILON)
            hidden = torch.addcmul(shift, normalised, gain)
        hidden = torch.relu_(hidden)
    return hidden


def features(
    parameters: torch.Tensor, shape: NetworkShape, observations: torch.Tensor
) -> torch.Tensor:
    """phi(s) of every member: observations [K, N, *observation shape] -> [K, N, width]."""
    return penultimate(layers(parameters, shape), observations)


def value_gradients(
    parameters: torch.Tensor, shape: NetworkShape, observations: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """d Q_k(s_i, a_i) / d theta_k for every member k and sample i: observations
    [K, N, *observation shape] and actions [K, N] -> [K, N, parameter_count].

    Each (member, sample) pair gets its own copy of the member's row, so one backward pass of
    the summed values gives every per-sample gradient, and each is its own batched product
    whatever the other members are (vmap's fused products are not).
    """
    members, samples = actions.shape
    rows = parameters.detach().repeat_interleave(samples, dim=0).requires_grad_()
    single = observations.reshape(members * samples, 1, *observations.shape[2:])
    values = q_values(rows, shape, single)[:, 0].gather(1, actions.reshape(-1, 1))
    (gradients,) = torch.autograd.grad(values.sum(), rows)
    return gradients.view(members, samples, -1)[..., : shape.parameter_count()]
