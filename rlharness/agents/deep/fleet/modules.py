"""A fleet member's Q-network as a plain torch module, and its state dict for saving.

`q_network` builds the member's MLP (`networks.NetworkShape`) as an ``nn.Sequential``:
Flatten, then per hidden layer Linear [-> LayerNorm] -> ReLU, then the Linear head; the
input is cast to float32 first. `state_dict` turns a member's parameter row into that
module's state dict (``nn.Linear`` keeps its weight as [fan_out, fan_in], the row as
[fan_in, fan_out]), so ``q_network(shape).load_state_dict(state_dict(row, shape))`` gives the
member's network. Its values equal the fleet's to float32 rounding: ``nn.Linear`` multiplies
by the transposed weight (``addmm``) where the fleet uses ``baddbmm``, and the two products may
sum in a different order.
"""

from __future__ import annotations

import io

import torch
from torch import nn

from rlharness.agents.deep.fleet.networks import LAYER_NORM_EPSILON, NetworkShape, layers


def q_network(shape: NetworkShape) -> nn.Sequential:
    """The member's MLP as torch modules: observations [N, *shape] -> Q(s, .) [N, actions]."""
    modules: list[nn.Module] = [nn.Flatten()]
    for index, (fan_in, fan_out) in enumerate(shape.layer_sizes()):
        modules.append(nn.Linear(fan_in, fan_out))
        if shape.normalised(index):
            modules.append(nn.LayerNorm(fan_out, eps=LAYER_NORM_EPSILON))
        if index < shape.depth:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def parameter_names(shape: NetworkShape) -> list[str]:
    """The names of `q_network`'s parameters, in the order of a member's row."""
    names: list[str] = []
    position = 1  # after the Flatten
    for index in range(len(shape.layer_sizes())):
        names += [f"{position}.weight", f"{position}.bias"]
        position += 1
        if shape.normalised(index):
            names += [f"{position}.weight", f"{position}.bias"]
            position += 1
        if index < shape.depth:
            position += 1  # the ReLU
    return names


def state_dict(row: torch.Tensor, shape: NetworkShape) -> dict[str, torch.Tensor]:
    """`q_network`'s state dict holding one member's parameter row [row_length]."""
    tensors: list[torch.Tensor] = []
    for weight, *vectors in layers(row.detach().cpu()[None], shape):
        tensors.append(weight[0].T.clone(memory_format=torch.contiguous_format))
        tensors.extend(vector[0, 0].clone() for vector in vectors)
    return dict(zip(parameter_names(shape), tensors, strict=True))


def state_dict_bytes(row: torch.Tensor, shape: NetworkShape) -> bytes:
    """`state_dict` as the bytes of a ``.pt`` file (``torch.save``; ``torch.load`` reads it
    with ``weights_only=True``)."""
    buffer = io.BytesIO()
    torch.save(state_dict(row, shape), buffer)
    return buffer.getvalue()
