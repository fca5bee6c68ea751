"""The members' Q-networks as stacked parameters: row k of one [K, P] tensor is member k's.

A member's network is SB3's DQN ``MlpPolicy`` Q-network: ``depth`` hidden
layers of ``width`` ReLU units and a linear head with one output per action,
initialised as torch's ``nn.Linear`` (weights and biases uniform in
+-1/sqrt(fan_in)), from the member's own initialisation stream. All of a
member's weights and biases are one row of a flat tensor, so gradient norms,
Adam and target updates are a few whole-tensor operations; every layer is one
batched matrix product over members (``torch.baddbmm`` on views of the rows),
so member k's values are its own computation whatever the other members are.

A network option (say LayerNorm after each hidden layer) is one line in
`q_values` plus its spec field: the learner differentiates `q_values` with
autograd, so nothing else changes.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch

from rlharness.agents.deep.fleet import streams

ROW_ALIGNMENT = 64
"""Parameter rows are padded to a multiple of this many elements: whole iterations (two 512-bit
vectors of float32, unrolled) of torch's vectorised elementwise loops, with room to spare."""

Layers = list[tuple[torch.Tensor, torch.Tensor]]
"""Each layer's weight [K, fan_in, fan_out] and bias [K, 1, fan_out]."""


class NetworkShape(NamedTuple):
    """What must match for members to share a fleet: input size, actions, width, depth."""

    inputs: int
    actions: int
    width: int
    depth: int

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each linear layer, input to head."""
        sizes = [self.inputs] + [self.width] * self.depth + [self.actions]
        return list(itertools.pairwise(sizes))

    def parameter_count(self) -> int:
        """Weights and biases of one member's network."""
        return sum((fan_in + 1) * fan_out for fan_in, fan_out in self.layer_sizes())

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

    nn.Linear's initialisation; the padding after the parameters is zero.
    """
    keys = streams.member_keys(seeds, streams.Stream.INITIALISATION)
    counters = torch.arange(shape.row_length()).expand(len(seeds), -1)
    uniform = streams.uniform(keys, counters)
    padding = shape.row_length() - shape.parameter_count()
    bounds = torch.cat(
        [
            torch.full(((fan_in + 1) * fan_out,), 1.0 / fan_in**0.5, dtype=torch.float64)
            for fan_in, fan_out in shape.layer_sizes()
        ]
        + [torch.zeros(padding, dtype=torch.float64)]
    )
    return ((2.0 * uniform - 1.0) * bounds).to(torch.float32).to(device)


def layers(parameters: torch.Tensor, shape: NetworkShape) -> Layers:
    """Views of each layer's weight [K, fan_in, fan_out] and bias [K, 1, fan_out]."""
    members = parameters.shape[0]
    views = []
    offset = 0
    for fan_in, fan_out in shape.layer_sizes():
        weight = parameters[:, offset : offset + fan_in * fan_out].view(members, fan_in, fan_out)
        offset += fan_in * fan_out
        bias = parameters[:, offset : offset + fan_out].view(members, 1, fan_out)
        offset += fan_out
        views.append((weight, bias))
    return views


def q_values(
    parameters: torch.Tensor, shape: NetworkShape, observations: torch.Tensor
) -> torch.Tensor:
    """Q(s, .) of every member: observations [K, N, *observation shape] -> [K, N, actions]."""
    return forward(layers(parameters, shape), observations)


def forward(network: Layers, observations: torch.Tensor) -> torch.Tensor:
    """The MLP on observations flattened and cast to float32 (MinAtar's frames become 0/1).

    A network option goes here, e.g. ``hidden = functional.layer_norm(hidden, hidden.shape[-1:])``
    after each hidden layer's ReLU.
    """
    *hidden_layers, (head_weight, head_bias) = network
    hidden = observations.reshape(*observations.shape[:2], -1).to(torch.float32)
    for weight, bias in hidden_layers:
        hidden = torch.relu_(torch.baddbmm(bias, hidden, weight))
    return torch.baddbmm(head_bias, hidden, head_weight)
