"""Early-warning diagnostics of the penultimate features, batched over members.

- `effective_rank`: srank_delta (Kumar et al., ICLR 2021, "Implicit Under-Parameterization
  Inhibits Data-Efficient Deep RL", eq. 1): with sigma_1 >= sigma_2 >= ... the singular
  values of the feature matrix Phi [N, d], the smallest k with
  sum_{i<=k} sigma_i / sum_i sigma_i >= 1 - delta (delta = 0.01). A collapsing srank precedes
  poor learning in their experiments.
- `feature_cosine`: the mean cosine similarity of phi(s) and phi(s') over bootstrapped
  transitions (s, a, s'): the normalised form of DR3's feature co-adaptation
  phi(s, a)^T phi(s', a') (Kumar et al., ICLR 2022, "DR3: Value-Based Deep RL Requires
  Explicit Regularization"); with a Q-network whose head maps phi(s) to every action,
  phi(s, a) = phi(s). Growing similarity of consecutive features accompanies divergence.
- `self_excitation`: SEEM (Yue et al., NeurIPS 2023, "Understanding, Predicting and Better
  Resolving Q-Value Divergence in Offline-RL", Theorem 1): under the neural tangent kernel the
  Q-values u of a batch evolve as u <- (I + eta A) u + eta G r with
  A = (gamma G' - G) G^T, G's rows the gradients of Q(s_i, a_i) and G''s those of
  Q(s'_i, a*_i) with a*_i the greedy action; Q-values blow up when A's largest eigenvalue is
  positive, and in their runs it turns positive before they do.
"""

from __future__ import annotations

import torch

SRANK_DELTA = 0.01
FEATURE_METRICS = ("feature_srank", "feature_cosine", "seem")
"""The columns the fleet and sb3 backends log from these (the rllib backend logs NaN)."""
SEEM_TRANSITIONS = 32
"""Transitions of a member's last batch that SEEM's kernel matrix spans (SB3's default batch
size): its per-sample gradients take [K, 2 x 32, P] floats."""


def effective_rank(features: torch.Tensor, delta: float = SRANK_DELTA) -> torch.Tensor:
    """srank_delta of each member's feature matrix: features [K, N, d] -> [K] (float; 0 where
    every feature is 0, NaN where one is not finite)."""
    phi = features.to(torch.float64)
    finite = torch.isfinite(phi).flatten(1).all(dim=1)
    singular = torch.linalg.svdvals(torch.where(finite[:, None, None], phi, 0.0))
    total = singular.sum(dim=1, keepdim=True)
    share = singular.cumsum(dim=1) / torch.where(total > 0, total, torch.ones_like(total))
    reached = share >= 1.0 - delta
    rank = (reached.to(torch.int64).argmax(dim=1) + 1).to(torch.float64)
    rank = torch.where(total[:, 0] > 0, rank, 0.0)
    return torch.where(finite, rank, torch.nan)


def feature_cosine(
    features: torch.Tensor, next_features: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over the masked transitions of cos(phi(s_i), phi(s'_i)), per member.

    ``features``, ``next_features``: [K, B, d]; ``mask``: [K, B] bool (the transitions that
    bootstrap). A zero feature vector has cosine 0 with anything; a member without masked
    transitions gets NaN.
    """
    phi, phi_next = features.to(torch.float64), next_features.to(torch.float64)
    dot = (phi * phi_next).sum(dim=2)
    norms = torch.linalg.vector_norm(phi, dim=2) * torch.linalg.vector_norm(phi_next, dim=2)
    cosine = torch.where(norms > 0, dot / torch.where(norms > 0, norms, 1.0), 0.0)
    weights = mask.to(torch.float64)
    count = weights.sum(dim=1)
    return torch.where(count > 0, (cosine * weights).sum(dim=1) / count.clamp(min=1), torch.nan)


def self_excitation(
    gradients: torch.Tensor, next_gradients: torch.Tensor, discounts: torch.Tensor
) -> torch.Tensor:
    """SEEM per member: the largest real part of the eigenvalues of
    A = (D G' - G) G^T / P, divided by ||A||_F (a number in [-1, 1], unchanged by rescaling
    the gradients; its sign is the raw eigenvalue's).

    ``gradients`` G and ``next_gradients`` G': [K, N, P], row i the gradient of Q(s_i, a_i)
    and of Q(s'_i, a*_i) in the member's P parameters; ``discounts``: [K, N], the
    transitions' bootstrap discounts gamma^m (1 - terminated) (D = diag(discounts); gamma for
    every transition in the paper). The 1 / sqrt(P) scaling of each gradient and the Frobenius
    normalisation follow the authors' code, which logs this normalised eigenvalue beside the
    raw one. The kernels G G^T and G' G^T are products in the gradients' precision, the rest
    in float64. 0 where A = 0; NaN where a kernel is not finite (a gradient is not, or
    overflows their precision).
    """
    transposed = gradients.transpose(1, 2)
    kernel = (gradients @ transposed).to(torch.float64)
    cross = (next_gradients @ transposed).to(torch.float64)
    finite = torch.isfinite(kernel).flatten(1).all(dim=1) & torch.isfinite(cross).flatten(1).all(
        dim=1
    )
    excitation = discounts.to(torch.float64)[:, :, None] * cross - kernel
    matrix = torch.where(finite[:, None, None], excitation, 0.0) / gradients.shape[2]
    largest = torch.linalg.eigvals(matrix).real.amax(dim=1)
    norm = torch.linalg.matrix_norm(matrix)
    normalised = torch.where(norm > 0, largest / torch.where(norm > 0, norm, 1.0), 0.0)
    return torch.where(finite, normalised, torch.nan)
