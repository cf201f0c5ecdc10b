"""Gumbel-softmax relaxation (FBNet, FBNetV2), drawn from an explicit generator.

``m_i = exp((θ_i + g_i)/τ) / Σ_j exp((θ_j + g_j)/τ)``, ``g ~ Gumbel(0, 1)``. ``hard=True`` gives
the straight-through one-hot (forward one-hot, gradient of the soft weights) used by the
single-path mode.
"""

from __future__ import annotations

import torch


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return -torch.log(-torch.log(u.clamp_(1e-10, 1.0 - 1e-7)))


def gumbel_softmax(logits: torch.Tensor, tau: float, generator: torch.Generator | None = None,
                   hard: bool = False, dim: int = -1) -> torch.Tensor:
    if tau <= 0:
        raise ValueError(f"temperature must be positive, got {tau}")
    g = gumbel_noise(logits.shape, generator, logits.device, logits.dtype)
    soft = torch.softmax((logits + g) / tau, dim=dim)
    if not hard:
        return soft
    index = soft.argmax(dim, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return one_hot - soft.detach() + soft


def temperature(epoch: int, tau0: float = 5.0, decay_rate: float = 0.045) -> float:
    """FBNet's schedule: τ0 · exp(−decay_rate · epoch) (paper: 5.0, 0.045 per epoch)."""
    return float(tau0 * torch.exp(torch.tensor(-decay_rate * epoch)).item())
