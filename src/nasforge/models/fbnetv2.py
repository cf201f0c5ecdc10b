"""The FBNetV2/V3 model family as data: a :class:`ModelSetting` and the builder that reads it.

Format (the seed's ``FBNetV2``/``FBNetV3`` classes, METHODS §2):

- ``stem``: conv 3×3, stride ``stem_stride`` (2), BN, hard-swish, ``stem`` channels.
- ``stages``: a tuple of stages; a stage is a tuple of rows ``[k, c, s, n, e, se, act]``
  (kernel, output channels, stride of the first block, repeats, expansion, SE on/off,
  activation ``relu``/``hswish``), optionally with an 8th element, a dict of per-row options
  (``{"dw_padding": p}`` overrides the depthwise padding of the row's first block, as
  FBNetV3 does on two stride-2 layers). ``k == 0`` is FBNet's ``skip`` (identity, or a 1×1
  conv + BN where the shape changes); ``k == 1`` is a plain 1×1 conv-BN-act.
- An inverted residual's hidden width is ``get_divisible_by(c_in · e, 8)``; SE has reduction
  4, a hard-sigmoid gate and ``get_divisible_by(…, 8)`` rounding; ``less_se_channels`` (FBNetV3)
  sizes the SE from ``hidden / (4e)`` instead of ``hidden / 4``. When the hidden width equals
  ``c_in`` the expansion 1×1 is skipped (the seed) unless ``always_pw``.
- Head: ``last_pw`` 1×1 conv-BN-hswish to ``get_divisible_by(c · last_pw, 8)`` channels (the
  seed: 6×), global average pool, ``last_fc`` 1×1 conv (no BN, no bias) + hswish, dropout,
  linear classifier.

Training-recipe hooks (FBNetV3's recipe search sets them through the trainer):
``dropout_p`` is the classifier dropout; ``drop_path_prob`` is the stochastic-depth rate p:
the residual branch of the l-th of L blocks is dropped with probability ``p · (l + 1) / L``
(the usual linear-in-depth rule), in training only (no parameters: the state dict, the
exports and the counts are those of the plain model).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from nasforge.blocks import ConvBNAct, HSwish, InvertedResidual, Skip, get_divisible_by
from nasforge.blocks.layers import DropPath
from nasforge.blocks.resample import InputResize
from nasforge.cost.effective import EffectiveCounts, conv_out
from nasforge.cost.flops import Counts
from nasforge.errors import UserError

Row = tuple  # (k, c, s, n, e, se, act[, options])
ROW_OPTIONS = {"dw_padding"}


@dataclass(frozen=True)
class ModelSetting:
    name: str
    stem: int
    stages: tuple[tuple[Row, ...], ...]
    last_pw: float = 6.0
    last_fc: int = 1984
    input_size: int = 224
    dropout: float = 0.2
    less_se_channels: bool = False
    always_pw: bool = False
    stem_stride: int = 2
    #: (MMACs, Mparams) the source reports for 1000 classes at ``input_size``, when known
    published: tuple[float | None, float | None] | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for si, stage in enumerate(self.stages):
            for ri, row in enumerate(stage):
                where = f"setting {self.name!r} stage {si} row {ri}"
                if len(row) not in (7, 8):
                    raise UserError(f"{where}: a row is [k, c, s, n, e, se, act] (+ options), "
                                    f"got {list(row)}")
                k, c, s, n, e, se, act = row[:7]
                if k not in (0, 1, 3, 5, 7) or c < 1 or s not in (1, 2) or n < 1 or e <= 0:
                    raise UserError(f"{where}: bad values {list(row[:7])} (k ∈ 0,1,3,5,7; "
                                    "c ≥ 1; s ∈ 1,2; n ≥ 1; e > 0)")
                if act not in ("relu", "hswish"):
                    raise UserError(f"{where}: activation {act!r} is not relu or hswish")
                bad = sorted(set(row[7]) - ROW_OPTIONS) if len(row) == 8 else []
                if bad:
                    raise UserError(f"{where}: unknown option(s) {bad}; known: "
                                    f"{sorted(ROW_OPTIONS)}")

    def blocks(self) -> list[tuple[int, int, int, int, float, bool, str, dict]]:
        """Every block as ``(stage, k, c, s, e, se, act, options)`` (repeats unrolled)."""
        out = []
        for si, stage in enumerate(self.stages):
            for row in stage:
                k, c, s, n, e, se, act = row[:7]
                opts = dict(row[7]) if len(row) == 8 else {}
                for j in range(n):
                    out.append((si, k, c, s if j == 0 else 1, e, bool(se), act,
                                opts if j == 0 else {}))
        return out

    def with_(self, **kw: Any) -> ModelSetting:
        return replace(self, **kw)


def hidden_width(cin: int, e: float) -> int:
    return get_divisible_by(cin * e, 8)


def se_width(hidden: int, e: float, less_se_channels: bool) -> int:
    ratio = 0.25 / e if less_se_channels else 0.25
    return get_divisible_by(int(hidden * ratio), 8)


def make_block(cin: int, k: int, c: int, s: int, e: float, se: bool, act: str,
               opts: dict, *, less_se_channels: bool = False,
               always_pw: bool = False) -> nn.Module:
    """One block of a setting row (shared by the zoo and the masking space's derived models)."""
    if k == 0:
        return Skip(cin, c, s)
    if k == 1:
        return ConvBNAct(cin, c, 1, s, act=act)
    hid = hidden_width(cin, e)
    b = InvertedResidual(cin, c, kernel=k, stride=s, hidden=hid, se=se, act=act,
                         skip_pw_when_equal=not always_pw,
                         se_mid=se_width(hid, e, less_se_channels) if se else None)
    if "dw_padding" in opts:
        p = int(opts["dw_padding"])
        b.dw[0].padding = (p, p)
    return b


class FBNetV2Model(nn.Module):
    """stem → stages → last_pw → pool → last_fc → dropout → classifier (optionally preceded by
    nearest-neighbour subsampling of the input to ``input_resize``)."""

    __jit_unused_properties__ = ["dropout_p", "drop_path_prob"]  # training-time hooks only

    def __init__(self, setting: ModelSetting, num_classes: int = 1000, in_channels: int = 3,
                 dropout: float | None = None, input_resize: int | None = None,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.setting = setting
        self.resize = InputResize(input_resize) if input_resize else None
        self.stem = ConvBNAct(in_channels, setting.stem, 3, setting.stem_stride, act="hswish")
        cin = setting.stem
        stages: list[list[nn.Module]] = [[] for _ in setting.stages]
        for si, k, c, s, e, se, act, opts in setting.blocks():
            stages[si].append(make_block(cin, k, c, s, e, se, act, opts,
                                         less_se_channels=setting.less_se_channels,
                                         always_pw=setting.always_pw))
            cin = c
        self.stages = nn.ModuleList(nn.Sequential(*st) for st in stages)
        blocks = [b for st in self.stages for b in st]
        #: (residual block, its depth factor (l + 1) / L) for drop path
        self._residual = [(b, (i + 1) / len(blocks)) for i, b in enumerate(blocks)
                          if isinstance(b, InvertedResidual) and b.use_res]
        for b, _ in self._residual:
            b.drop_path = DropPath(0.0)
        self.drop_path_prob = drop_path
        pw = get_divisible_by(cin * setting.last_pw, 8)
        self.last_pw = ConvBNAct(cin, pw, 1, act="hswish")
        self.last_fc = nn.Sequential(nn.Conv2d(pw, setting.last_fc, 1, bias=False), HSwish())
        p = setting.dropout if dropout is None else dropout
        self.dropout = nn.Dropout(p) if p > 0 else nn.Identity()
        self.classifier = nn.Linear(setting.last_fc, num_classes)

    @property
    def dropout_p(self) -> float:
        return self.dropout.p if isinstance(self.dropout, nn.Dropout) else 0.0

    @dropout_p.setter
    def dropout_p(self, p: float) -> None:
        self.dropout = nn.Dropout(float(p)) if p > 0 else nn.Identity()

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        if not 0 <= p < 1:
            raise UserError(f"drop path rate must be in [0, 1), got {p}")
        self._drop_path = float(p)
        for b, depth in self._residual:
            b.drop_path.p = float(p) * depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize is not None:
            x = self.resize(x)
        x = self.stem(x)
        for st in self.stages:
            x = st(x)
        x = self.last_pw(x).mean((2, 3), keepdim=True)
        x = self.last_fc(x).flatten(1)
        return self.classifier(self.dropout(x))


class FBNetV2Head(nn.Module):
    """The model's head (last_pw → pool → last_fc → classifier) alone, as one LUT item of the
    FBNetV2 masking space (dropout is an identity at inference)."""

    def __init__(self, c: int, pw: int, fc: int, num_classes: int) -> None:
        super().__init__()
        self.last_pw = ConvBNAct(c, pw, 1, act="hswish")
        self.last_fc = nn.Sequential(nn.Conv2d(pw, fc, 1, bias=False), HSwish())
        self.classifier = nn.Linear(fc, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last_pw(x).mean((2, 3), keepdim=True)
        return self.classifier(self.last_fc(x).flatten(1))


def setting_counts(setting: ModelSetting, num_classes: int = 1000, in_channels: int = 3,
                   input_size: int | None = None) -> Counts:
    """MACs and params of a setting, analytically (no forward pass: cheap at 320²). Same
    convention as :func:`nasforge.cost.flops.count_module`; tests check they agree."""
    h = conv_out(input_size or setting.input_size, 3, setting.stem_stride)
    c = EffectiveCounts()
    c.conv(in_channels, setting.stem, 3, h, h, bn=True)
    cin = setting.stem
    for _, k, cout, s, e, se, _act, opts in setting.blocks():
        if k in (0, 1):
            if k == 1 or cin != cout or s != 1:
                h = conv_out(h, 1, s)
                c.conv(cin, cout, 1, h, h, bn=True)
        else:
            hid = hidden_width(cin, e)
            if hid != cin or setting.always_pw:
                c.conv(cin, hid, 1, h, h, bn=True)
            h = conv_out(h, k, s, opts.get("dw_padding"))
            c.conv(hid, hid, k, h, h, depthwise=True, bn=True)
            if se:
                m = se_width(hid, e, setting.less_se_channels)
                c.conv(hid, m, 1, 1, 1, bias=True)
                c.conv(m, hid, 1, 1, 1, bias=True)
            c.conv(hid, cout, 1, h, h, bn=True)
        cin = cout
    pw = get_divisible_by(cin * setting.last_pw, 8)
    c.conv(cin, pw, 1, h, h, bn=True)
    c.conv(pw, setting.last_fc, 1, 1, 1)
    c.linear(setting.last_fc, num_classes)
    return Counts(int(round(float(c.macs))), int(round(float(c.params))))
