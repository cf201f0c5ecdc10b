"""Effective-shape cost (FBNetV2, METHODS §2): MACs and params of a layer whose channel counts
and spatial sizes are Gumbel-weighted mixtures of options, differentiable in the weights.

With Gumbel weights ``g`` over options, the *effective* value is ``Σ_i g_i · v_i`` (``mix``):
``C̄_out = Σ g_i C_i`` for a searched width, ``h̄ = Σ g_r h_r`` over input resolutions. A conv
without options has ``C̄_out = C_out``; a depthwise conv propagates ``C̄_out = C̄_in``; the next
layer's ``C̄_in`` is this one's ``C̄_out``. Per conv:

- MACs   ``k² · h̄_out · w̄_out · C̄_in · C̄_out / γ`` (γ groups; depthwise: ``k² · h̄ w̄ · C̄``)
- params ``k² · C̄_in · C̄_out / γ`` (+ ``C̄_out`` bias, + ``2 C̄_out`` BatchNorm affine)

The counting convention is exactly :func:`nasforge.cost.flops.count_module`'s (conv + linear
MACs; every parameter, BatchNorm affine included), so with one-hot weights the effective cost
of a supernet *equals* ``count_module`` of the derived network — tests check this. Values may
be Python numbers or 0-d tensors; use float64 tensors when you need integer-exact results.

Typical use (one block)::

    c = EffectiveCounts()
    cin, hid = mix(g_in, widths_in), mix(g_e, hidden_options)
    c.conv(cin, hid, 1, h, w, bn=True)                # expansion 1×1
    c.conv(hid, hid, k, h2, w2, depthwise=True, bn=True)
    cost = c.macs                                      # a tensor, differentiable in g
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Scalar = float | torch.Tensor


def mix(weights: torch.Tensor | None, values: Sequence[float] | torch.Tensor) -> Scalar:
    """The effective value ``Σ_i g_i · v_i`` (``weights`` None: the single fixed value)."""
    if weights is None:
        if len(values) != 1:
            raise ValueError(f"{len(values)} options need Gumbel weights")
        return float(values[0])
    v = torch.as_tensor(values, dtype=weights.dtype, device=weights.device)
    if v.shape != weights.shape[-1:]:
        raise ValueError(f"{weights.shape[-1]} weights for {v.numel()} options")
    return (weights * v).sum(-1)


def mix2(w1: torch.Tensor, w2: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``Σ_ij w1_i w2_j t_ij``: the effective value of a quantity set by two decisions (an
    inverted residual's hidden width depends on its input width *and* its expansion)."""
    return torch.einsum("i,j,ij->", w1, w2, table.to(w1.dtype))


def conv_out(size: int, kernel: int, stride: int = 1, padding: int | None = None,
             dilation: int = 1) -> int:
    """Output length of a conv ('same' padding ``dilation·(k−1)//2`` unless given)."""
    p = dilation * (kernel - 1) // 2 if padding is None else padding
    return (size + 2 * p - dilation * (kernel - 1) - 1) // stride + 1


@dataclass
class EffectiveCounts:
    """Accumulates effective MACs and params (numbers or tensors)."""

    macs: Scalar = 0.0
    params: Scalar = 0.0

    def conv(self, cin: Scalar, cout: Scalar, kernel: int, h_out: Scalar, w_out: Scalar, *,
             groups: int = 1, depthwise: bool = False, bias: bool = False,
             bn: bool = False) -> Scalar:
        """Add one conv (``depthwise``: groups = channels, ``cout`` must equal ``cin``);
        returns the effective output channels (for chaining)."""
        k2 = kernel * kernel
        if depthwise:
            cout = cin
            per_out = k2  # each output channel sees k² inputs of its own channel
        else:
            per_out = k2 * cin / groups
        self.macs = self.macs + per_out * cout * h_out * w_out
        self.params = self.params + per_out * cout + (cout if bias else 0.0) + (
            2 * cout if bn else 0.0)
        return cout

    def linear(self, fin: Scalar, fout: Scalar, bias: bool = True) -> Scalar:
        self.macs = self.macs + fin * fout
        self.params = self.params + fin * fout + (fout if bias else 0.0)
        return fout

    def __add__(self, other: EffectiveCounts) -> EffectiveCounts:
        return EffectiveCounts(self.macs + other.macs, self.params + other.params)
