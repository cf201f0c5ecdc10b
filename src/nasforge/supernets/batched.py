"""Candidate ops that read the same input, summed with their relaxation weights at less cost.

A mixed op computes ``Σ_i w_i · b_i(x)`` over candidate blocks that all read ``x`` (an FBNet
layer's blocks, a DenseNAS slot's drawn ops). :func:`weighted_sum` gives the same sum with
fewer kernels and fewer passes over the feature maps:

- **batched expansions**: the inverted residuals whose 1×1 expansion is a plain (ungrouped)
  conv and whose depthwise convs have the same kernel (after cropping, below) and stride run
  their expansions as one
  convolution (the weights concatenated along the output channels), one batch norm and one
  activation over the concatenated channels, and one depthwise conv (batch norm is per
  channel, so the concatenation computes exactly each block's statistics; each block's
  running statistics are updated as its own ``BatchNorm2d`` would);
- **depthwise kernels cropped to the map**: on a small map a k×k depthwise conv only ever
  multiplies zero padding with its outer taps, so it runs as the conv of the taps that touch
  the map (at 2×2 a 5×5 kernel is a 3×3 one and joins the k3 batch; at 1×1 either is a
  per-channel scale): the same sums without their zero terms, gradients included;
- **weights folded into the last batch norm**: ``w_i · BN_i(z) = BN(z; w_i γ_i, w_i β_i)``, so
  the multiply by ``w_i`` is not a pass of its own;
- **one identity term**: the identity shortcuts of the residual blocks and an identity
  ``skip`` contribute ``(Σ w_i) · x`` once instead of one addition per block.

The blocks keep their own parameters and buffers (state dicts, extraction and checkpoints do
not change); only the forward is batched. ``weighted_sum(..., batched=False)`` is the plain
sum of the block forwards, which the equality tests compare it with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.blocks import InvertedResidual, Skip


def _bn_apply(y: torch.Tensor, bn: nn.BatchNorm2d, weight: torch.Tensor,
              bias: torch.Tensor) -> torch.Tensor:
    """``bn(y)`` with its affine replaced by ``weight``/``bias``, updating ``bn``'s running
    statistics exactly as its own forward does (``bn``: a :func:`_simple_bn`)."""
    if bn.training:
        bn.num_batches_tracked.add_(1)
    return F.batch_norm(y, bn.running_mean, bn.running_var, weight, bias, bn.training,
                        bn.momentum, bn.eps)


def _bn_cat(y: torch.Tensor, bns: Sequence[nn.BatchNorm2d]) -> torch.Tensor:
    """The batch norms ``bns`` applied to their concatenated channels ``y`` at once."""
    if len(bns) == 1:
        return bns[0](y)
    weight = torch.cat([b.weight for b in bns])
    bias = torch.cat([b.bias for b in bns])
    b0 = bns[0]
    if not b0.training:
        return F.batch_norm(y, torch.cat([b.running_mean for b in bns]),
                            torch.cat([b.running_var for b in bns]), weight, bias, False, 0.0,
                            b0.eps)
    rm = torch.cat([b.running_mean for b in bns])
    rv = torch.cat([b.running_var for b in bns])
    out = F.batch_norm(y, rm, rv, weight, bias, True, b0.momentum, b0.eps)
    sizes = [b.num_features for b in bns]
    torch._foreach_copy_([b.running_mean for b in bns], list(rm.split(sizes)))
    torch._foreach_copy_([b.running_var for b in bns], list(rv.split(sizes)))
    torch._foreach_add_([b.num_batches_tracked for b in bns], 1)
    return out


def _simple_bn(bn: nn.Module) -> bool:
    return (isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.track_running_stats
            and bn.momentum is not None)


def _batchable(b: nn.Module) -> bool:
    """An inverted residual whose expansion and depthwise stages can join a batch."""
    return (isinstance(b, InvertedResidual) and b.pw is not None and b.groups == 1
            and b.se is None and b.shuffle is None and _simple_bn(b.pw[1])
            and _simple_bn(b.dw[1]) and type(b.pw[2]) is type(b.dw[2]))


def _foldable(b: nn.Module) -> bool:
    """A block whose output ends in a plain batch norm (the weight folds into its affine)."""
    if isinstance(b, InvertedResidual):
        return b.drop_path is None and isinstance(b.pwl[2], nn.Identity) and _simple_bn(b.pwl[1])
    if isinstance(b, Skip):
        return b.proj is None or (isinstance(b.proj[2], nn.Identity) and _simple_bn(b.proj[1]))
    return False


def _scaled_conv_bn(cbn: nn.Sequential, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``w · BN(conv(h))`` of a conv-BN(-identity) with ``w`` folded into the BN's affine."""
    conv, bn = cbn[0], cbn[1]
    return _bn_apply(conv(h), bn, bn.weight * w, bn.bias * w)


def _taps(k: int, pad: int, stride: int, size: int) -> tuple[int, int] | None:
    """The kernel taps ``[t0, t1)`` of a conv (kernel ``k``, padding ``pad``) that ever touch
    an input of ``size`` (the others only ever multiply zero padding); None: all of them."""
    out = (size + 2 * pad - k) // stride + 1
    t0 = max(0, pad - (out - 1) * stride)
    t1 = min(k, size + pad)
    p = pad - t0
    if (t0, t1) == (0, k) or (size + 2 * p - (t1 - t0)) // stride + 1 != out:
        return None
    return t0, t1


def _dw_plan(conv: nn.Conv2d, x: torch.Tensor) -> tuple:
    """How ``conv`` (depthwise) runs on ``x``: the kernel cropped to the taps that touch the
    map (on a small map, a 5×5 kernel is a 3×3 or a 1×1 one: the dropped taps only ever
    multiply zero padding, so the output and every gradient are the same sums without those
    zero terms) — ``(stride, rows, cols, padding)``; rows/cols: tap ranges."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    if conv.dilation != (1, 1) or isinstance(conv.padding, str):
        return ((sh, sw), (0, kh), (0, kw), conv.padding)
    ph, pw = conv.padding
    r = _taps(kh, ph, sh, x.shape[-2]) or (0, kh)
    c = _taps(kw, pw, sw, x.shape[-1]) or (0, kw)
    return ((sh, sw), r, c, (ph - r[0], pw - c[0]))


def _dw_conv(y: torch.Tensor, weights: list[torch.Tensor], plan: tuple) -> torch.Tensor:
    """The depthwise convs of ``weights`` (concatenated) over ``y``, cropped by ``plan``."""
    stride, (r0, r1), (c0, c1), pad = plan
    w = torch.cat([v[:, :, r0:r1, c0:c1] for v in weights]) if len(weights) > 1 else \
        weights[0][:, :, r0:r1, c0:c1]
    if (r1 - r0, c1 - c0) == (1, 1) and stride == (1, 1) and pad == (0, 0):
        return y * w.view(1, -1, 1, 1)  # a 1×1 depthwise conv is a per-channel scale
    return F.conv2d(y, w, None, stride, pad, 1, y.shape[1])


def _hidden(group: list[InvertedResidual], x: torch.Tensor,
            plan: tuple) -> list[torch.Tensor]:
    """Expansion → BN → act → depthwise (cropped by ``plan``) → BN → act of ``group`` (the
    same cropped kernel and stride) at once; the hidden map of each block."""
    if len(group) == 1:
        b = group[0]
        h = _dw_conv(b.pw(x), [b.dw[0].weight], plan)
        return [b.dw[2](b.dw[1](h))]
    pw = [b.pw[0] for b in group]
    y = F.conv2d(x, torch.cat([c.weight for c in pw]), None, pw[0].stride, pw[0].padding,
                 pw[0].dilation, 1)
    y = group[0].pw[2](_bn_cat(y, [b.pw[1] for b in group]))
    y = _dw_conv(y, [b.dw[0].weight for b in group], plan)
    y = group[0].dw[2](_bn_cat(y, [b.dw[1] for b in group]))
    return list(y.split([b.hidden for b in group], dim=1))


def weighted_sum(blocks: Sequence[nn.Module], x: torch.Tensor, w: torch.Tensor,
                 active: Sequence[int] | None = None, batched: bool = True) -> torch.Tensor:
    """``Σ_{i ∈ active} w[i] · blocks[i](x)`` (every block when ``active`` is None).

    ``batched``: the batched form of the module docstring; False: the blocks' own forwards."""
    idx = list(range(len(blocks))) if active is None else list(active)
    if not batched:
        out = blocks[idx[0]](x) * w[idx[0]]
        for i in idx[1:]:
            out = out + blocks[i](x) * w[i]
        return out
    terms: list[torch.Tensor] = []
    identity: list[int] = []  # blocks contributing w_i · x
    groups: dict[tuple, list[int]] = {}
    for i in idx:
        b = blocks[i]
        if not _foldable(b):
            terms.append(b(x) * w[i])
            continue
        if isinstance(b, Skip):
            if b.proj is None:
                identity.append(i)
            else:
                terms.append(_scaled_conv_bn(b.proj, x, w[i]))
            continue
        if b.use_res:
            identity.append(i)
        # one batch per cropped depthwise kernel (a shared expansion across kernels measured
        # no faster: its split copies the hidden maps)
        key = (("batch", type(b.pw[2]), _dw_plan(b.dw[0], x)) if _batchable(b)
               else ("single", i))
        groups.setdefault(key, []).append(i)
    for key, members in groups.items():
        if key[0] == "single":
            b = blocks[members[0]]
            h = b.pw(x) if b.pw is not None else x
            if b.shuffle is not None:
                h = b.shuffle(h)
            h = b.dw[2](b.dw[1](_dw_conv(h, [b.dw[0].weight], _dw_plan(b.dw[0], h))))
            if b.se is not None:
                h = b.se(h)
            terms.append(_scaled_conv_bn(b.pwl, h, w[members[0]]))
            continue
        group = [blocks[i] for i in members]
        for i, b, h in zip(members, group, _hidden(group, x, key[2])):  # type: ignore[arg-type]
            terms.append(_scaled_conv_bn(b.pwl, h, w[i]))
    if identity:
        coef = w[identity[0]]
        for i in identity[1:]:
            coef = coef + w[i]
        terms.append(x * coef)
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out
