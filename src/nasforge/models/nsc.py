"""The BlockQNN network (METHODS §5) built from a Network Structure Code, as a plain model.

What a code *means* as a network lives here: each layer's op, the ``add``/``concat`` wiring,
and the block output (the concatenation of every layer output nobody consumes, then a 1×1
ReLU-Conv-BN back to the block width). Which codes are valid is the space's business
(:mod:`nasforge.spaces.nsc`).
"""

from __future__ import annotations

import torch
from torch import nn

#: one layer of a code: (index, type, kernel, pred1, pred2)
Layer = tuple[int, str, int, int, int]
#: layer types that take two predecessors
PAIR = ("add", "concat")


def unused(layers: list[Layer]) -> list[int]:
    """The layers no other layer consumes: their outputs are concatenated into the block's."""
    body = [lay for lay in layers if lay[1] != "terminal"]
    used = {lay[3] for lay in body} | {lay[4] for lay in body if lay[1] in PAIR}
    return [lay[0] for lay in body if lay[0] not in used]


def format_block(layers: list[Layer]) -> str:
    """A readable listing: one line per layer with its inputs, and the output concat."""
    lines = ["  0  input"]
    for idx, typ, k, p1, p2 in layers:
        if typ == "terminal":
            label, src = "output", "concat(" + ", ".join(map(str, unused(layers))) + ")"
        elif typ in PAIR:
            label, src = typ, f"{p1}, {p2}"
        else:
            label, src = (f"{k}x{k} {typ}" if typ != "identity" else typ), str(p1)
        lines.append(f"{idx:3d}  {label:<13s} <- {src}")
    return "\n".join(lines)


class ReLUConvBN(nn.Sequential):
    """BlockQNN's convolution unit (pre-activation order, unlike ``ConvBNAct``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout))


class _Pool(nn.Module):
    def __init__(self, kind: str, k: int) -> None:
        super().__init__()
        cls = nn.MaxPool2d if kind == "max_pool" else nn.AvgPool2d
        extra = {} if kind == "max_pool" else {"count_include_pad": False}
        self.pool = cls(k, 1, k // 2, **extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class NSCBlock(nn.Module):
    """A block built from its code: a plain module, no search machinery."""

    def __init__(self, layers: list[Layer], channels: int) -> None:
        super().__init__()
        self.layers = [lay for lay in layers if lay[1] != "terminal"]
        self.code = list(layers)
        ch = [channels]
        self.ops = nn.ModuleList()
        self.proj = nn.ModuleDict()
        for idx, typ, k, p1, p2 in self.layers:
            if typ == "conv":
                self.ops.append(ReLUConvBN(ch[p1], channels, k))
                ch.append(channels)
            elif typ in ("max_pool", "avg_pool"):
                self.ops.append(_Pool(typ, k))
                ch.append(ch[p1])
            elif typ == "identity":
                self.ops.append(nn.Identity())
                ch.append(ch[p1])
            elif typ == "add":
                self.ops.append(nn.Identity())
                wide = max(ch[p1], ch[p2])
                for p in (p1, p2):
                    if ch[p] != wide:
                        self.proj[f"{idx}_{p}"] = ReLUConvBN(ch[p], wide, 1)
                ch.append(wide)
            else:  # concat
                self.ops.append(nn.Identity())
                ch.append(ch[p1] + ch[p2])
        self.outputs = unused(layers)
        self.out = ReLUConvBN(sum(ch[i] for i in self.outputs), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for op, (idx, typ, _k, p1, p2) in zip(self.ops, self.layers):
            if typ == "add":
                a = self.proj[f"{idx}_{p1}"](feats[p1]) if f"{idx}_{p1}" in self.proj \
                    else feats[p1]
                b = self.proj[f"{idx}_{p2}"](feats[p2]) if f"{idx}_{p2}" in self.proj \
                    else feats[p2]
                feats.append(a + b)
            elif typ == "concat":
                feats.append(torch.cat([feats[p1], feats[p2]], 1))
            else:
                feats.append(op(feats[p1]))
        outs = [feats[i] for i in self.outputs]
        return self.out(outs[0] if len(outs) == 1 else torch.cat(outs, 1))

    def extra_repr(self) -> str:
        return "\n" + format_block(self.code)


class NSCNetwork(nn.Module):
    def __init__(self, layers: list[Layer], widths: tuple[int, ...], repeats: int,
                 num_classes: int, in_channels: int, stem_stride: int = 1) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1,
                                           bias=False),
                                 nn.BatchNorm2d(widths[0])]
        for s, w in enumerate(widths):
            if s > 0:
                mods += [nn.MaxPool2d(2, 2), ReLUConvBN(widths[s - 1], w, 1)]
            mods += [NSCBlock(layers, w) for _ in range(repeats)]
        mods += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*mods)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


__all__ = ["Layer", "PAIR", "NSCBlock", "NSCNetwork", "ReLUConvBN", "format_block", "unused"]
