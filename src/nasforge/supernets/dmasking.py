"""FBNetV2 DMaskingNAS supernet (METHODS §2) for the shared :class:`SupernetTrainer`.

The supernet is the FBNetV2 model of the space at every option's largest value; each decision
(input resolution, stem width, one width per stage, one expansion per block) holds a row of
θ. A relaxation sample is one (D × K) matrix of Gumbel weights ``G``; from it ``forward`` builds
every channel mask ``M = Σ_i g_i l_i`` (an inverted residual's hidden mask mixes its input-width
*and* expansion weights: ``Σ_ji g_j g_i l_{h(j,i)}``) and runs each layer once, whatever the
number of options. Resolutions: the trunk runs on each nearest-neighbour-subsampled input,
its final map is padded back with interspersed zeros and the maps are summed with the Gumbel
weights; global pooling divides by the *effective* pixel count ``Σ_r g_r h_r w_r`` so that a
one-hot sample equals the derived model exactly.

``expected_cost`` is the effective-shape cost (:mod:`nasforge.cost.effective`) from the same
``G`` — kMACs, kParams, or LUT latency in µs mixed over the option combinations of every
block (multilinear in the weights, exact at one-hot). ``extract`` slices the supernet's
weights into the derived standalone model (no masks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.arch import Arch
from nasforge.blocks import IRMasks, get_divisible_by, mask_channels
from nasforge.blocks.resample import intersperse_zeros, subsample_nearest
from nasforge.cost.effective import EffectiveCounts, mix, mix2
from nasforge.cost.lut import LatencyTable
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Move
from nasforge.errors import UserError
from nasforge.models.fbnetv2 import FBNetV2Model
from nasforge.spaces.masking import MaskingSpace
from nasforge.supernets.base import Supernet
from nasforge.supernets.gumbel import gumbel_softmax
from nasforge.supernets.masking_layers import channel_masks

COSTS = ("flops", "params", "latency")
Sample = tuple[torch.Tensor, int | None]


class DMaskingSupernet(Supernet):
    """Channel-masking + resolution supernet over a :class:`MaskingSpace`.

    ``cost``: which effective cost ``expected_cost`` returns — ``flops`` (kMACs), ``params``
    (thousands) or ``latency`` (µs; needs ``latency_tables`` from :func:`latency_tables`).
    """

    #: NHWC on the CPU too unless the loop says otherwise (1.31× per step on
    #: ``fbnetv2-fmnist``, 28², batch 64, 1 thread: docs/supernet_speed.md)
    cpu_channels_last = True

    def __init__(self, space: MaskingSpace, num_classes: int, in_channels: int,
                 cost: str = "flops", latency: LatencyTensors | None = None) -> None:
        super().__init__()
        if cost not in COSTS:
            raise UserError(f"unknown cost {cost!r}; choose from {list(COSTS)}")
        if cost == "latency" and latency is None:
            raise UserError("cost 'latency' needs a latency table (build one for the space)")
        space.check_supernet_widths()
        self.space, self.cost_kind, self.num_classes = space, cost, num_classes
        self.in_channels = in_channels
        sk = space.skeleton
        self.net = FBNetV2Model(space.setting(None), num_classes, in_channels)
        self.blocks = [b for st in self.net.stages for b in st]
        self.decisions = space.decisions()
        D, K = len(self.decisions), max(len(o) for _, o in self.decisions)
        self.theta = nn.Parameter(torch.zeros(D, K))
        valid = torch.zeros(D, K, dtype=torch.bool)
        for d, (_, o) in enumerate(self.decisions):
            valid[d, :len(o)] = True
        self.register_buffer("valid", valid, persistent=False)
        self.dindex = {n: d for d, (n, _) in enumerate(self.decisions)}
        # mask matrices (buffers, so they follow .to(device))
        self.register_buffer("L_stem", channel_masks(sk.stem, max(sk.stem)), persistent=False)
        for i, st in enumerate(sk.stages):
            self.register_buffer(f"L_stage{i}", channel_masks(st.widths, max(st.widths)),
                                 persistent=False)
        for b, spec in zip(self.blocks, space.blocks):
            hid = spec.hidden_table()
            self.register_buffer(f"L_hid{spec.index}", torch.stack(
                [channel_masks(row, b.hidden) for row in hid]), persistent=False)
            if spec.se:
                se = spec.se_table()
                self.register_buffer(f"L_se{spec.index}", torch.stack(
                    [channel_masks(row, b.se.fc1.out_channels) for row in se]), persistent=False)
        last = sk.stages[-1].widths
        self.pw_widths = [get_divisible_by(c * sk.last_pw, 8) for c in last]
        self.register_buffer("L_pw", channel_masks(self.pw_widths, max(self.pw_widths)),
                             persistent=False)
        # option values for the effective cost, as buffers so no step copies host → device
        sizes = [space.sizes(r) for r in sk.resolutions]
        self.final_sizes = [s[-1] for s in sizes]
        vals = {"sizes": sizes, "final": self.final_sizes, "stem": list(sk.stem),
                "pw": self.pw_widths}
        vals.update({f"stage{i}": list(st.widths) for i, st in enumerate(sk.stages)})
        for spec in space.blocks:
            vals[f"hid{spec.index}"] = spec.hidden_table()
            if spec.se:
                vals[f"se{spec.index}"] = spec.se_table()
        for k, v in vals.items():
            self.register_buffer(f"V_{k}", torch.tensor(v, dtype=torch.float64),
                                 persistent=False)
        self.latency = latency  # a submodule (its tables are buffers) or None

    # -- parameter groups ----------------------------------------------------------------------
    def weight_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.net.parameters()

    def arch_parameters(self) -> Iterator[nn.Parameter]:
        yield self.theta

    # -- relaxation ----------------------------------------------------------------------------
    def logits(self) -> torch.Tensor:
        return self.theta.masked_fill(~self.valid, float("-inf"))

    @classmethod
    def from_cost_model(cls, space: MaskingSpace, cost_model: CostModel) -> DMaskingSupernet:
        """The supernet for ``cost_model``'s loss cost; its latency tables (when the cost model
        has a LUT) come from the same table."""
        cm = cost_model
        lat = (latency_tensors(space, cm.lut, cm.num_classes, cm.in_channels)
               if cm.lut is not None else None)
        return cls(space, cm.num_classes, cm.in_channels, cost=cm.kind, latency=lat)

    def counts(self, arch: Arch) -> tuple[int, int]:
        """Exact (MACs, params) from the effective-shape counts at one-hot."""
        c = self.arch_cost(arch)
        return int(c["macs"]), int(c["params"])

    def sample_relaxation(self, generator: torch.Generator | None, tau: float,
                          hard: bool = False, phase: str = "weight") -> Sample:
        """Gumbel weights ``G`` (D×K, zero on padding); in hard mode also the chosen resolution
        (one small host copy per step, to run a single trunk)."""
        G = gumbel_softmax(self.logits(), tau, generator, hard=hard)
        return G, (int(G[0].detach().argmax()) if hard else None)

    def one_hot(self, arch: Arch) -> Sample:
        """The relaxation that selects exactly ``arch``."""
        G = torch.zeros_like(self.theta)
        for d, i in enumerate(self.space.indices(arch)):
            G[d, i] = 1.0
        return G, None

    def _weights(self, G: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: G[d, :len(o)] for d, (n, o) in enumerate(self.decisions)}

    def masks(self, G: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every channel mask ``M`` of this sample (one small matmul each)."""
        w = self._weights(G)
        m = {"stem": w["stem"] @ self.L_stem}
        for i in range(len(self.space.skeleton.stages)):
            m[f"stage{i}"] = w[f"stage{i}"] @ getattr(self, f"L_stage{i}")
        for spec in self.space.blocks:
            gi, ge = w[spec.in_decision], w[f"block{spec.index}"]
            m[f"hid{spec.index}"] = torch.einsum("j,i,jic->c", gi, ge,
                                                 getattr(self, f"L_hid{spec.index}"))
            if spec.se:
                m[f"se{spec.index}"] = torch.einsum("j,i,jic->c", gi, ge,
                                                    getattr(self, f"L_se{spec.index}"))
        last = len(self.space.skeleton.stages) - 1
        m["pw"] = w[f"stage{last}"] @ self.L_pw
        return m

    # -- forward -------------------------------------------------------------------------------
    def trunk(self, x: torch.Tensor, m: dict[str, torch.Tensor]) -> torch.Tensor:
        """stem → masked blocks → last_pw (masked), on one input resolution."""
        x = self.net.stem(x)
        x = mask_channels(x, m["stem"])
        for b, spec in zip(self.blocks, self.space.blocks):
            x = b(x, IRMasks(m[f"hid{spec.index}"], m.get(f"se{spec.index}"),
                             m[spec.out_decision]))
        x = self.net.last_pw(x)
        return mask_channels(x, m["pw"])

    def forward(self, x: torch.Tensor, sample: Sample) -> torch.Tensor:
        G, res_index = sample
        if x.shape[-1] != x.shape[-2]:
            raise UserError(f"resolution search needs square inputs, got {tuple(x.shape[-2:])}")
        m = self.masks(G)
        gr = G[0, :len(self.space.skeleton.resolutions)]
        full = self.final_sizes[0]
        size = x.shape[-1]
        y = None
        pixels = None
        for r, (res, hf) in enumerate(zip(self.space.skeleton.resolutions, self.final_sizes)):
            if res_index is not None and r != res_index:
                continue
            f = self.trunk(subsample_nearest(x, res), m)
            f = intersperse_zeros(f, (full, full), size / res) * gr[r].to(f.dtype)
            y = f if y is None else y + f
            n = gr[r] * (hf * hf)
            pixels = n if pixels is None else pixels + n
        pooled = y.sum((2, 3), keepdim=True) / pixels.to(y.dtype)  # type: ignore[union-attr]
        z = self.net.last_fc(pooled).flatten(1)
        return self.net.classifier(self.net.dropout(z))

    # -- effective-shape cost ------------------------------------------------------------------
    def effective_counts(self, G: torch.Tensor) -> EffectiveCounts:
        """Effective MACs/params of sample ``G`` (exactly ``count_module`` of the derived model
        when ``G`` is one-hot; pass float64 for integer-exact values)."""
        sk, w = self.space.skeleton, self._weights(G)

        def v(name: str) -> torch.Tensor:
            return getattr(self, f"V_{name}").to(G.dtype)

        eff = w["resolution"] @ v("sizes")  # effective h̄ (= w̄) at every point
        c = EffectiveCounts()
        cs = mix(w["stem"], v("stem"))
        c.conv(self.in_channels, cs, 3, eff[0], eff[0], bn=True)
        width = {"stem": cs}
        width.update({f"stage{i}": mix(w[f"stage{i}"], v(f"stage{i}"))
                      for i in range(len(sk.stages))})
        for spec in self.space.blocks:
            h_in, h_out = eff[1 + 2 * spec.index], eff[2 + 2 * spec.index]
            gi, ge = w[spec.in_decision], w[f"block{spec.index}"]
            hid = mix2(gi, ge, v(f"hid{spec.index}"))
            c.conv(width[spec.in_decision], hid, 1, h_in, h_in, bn=True)
            c.conv(hid, hid, spec.kernel, h_out, h_out, depthwise=True, bn=True)
            if spec.se:
                se = mix2(gi, ge, v(f"se{spec.index}"))
                c.conv(hid, se, 1, 1, 1, bias=True)
                c.conv(se, hid, 1, 1, 1, bias=True)
            c.conv(hid, width[spec.out_decision], 1, h_out, h_out, bn=True)
        last = len(sk.stages) - 1
        pw = mix(w[f"stage{last}"], v("pw"))
        hf = mix(w["resolution"], v("final"))
        c.conv(width[f"stage{last}"], pw, 1, hf, hf, bn=True)
        c.conv(pw, sk.last_fc, 1, 1, 1)
        c.linear(sk.last_fc, self.num_classes)
        return c

    def expected_latency_us(self, G: torch.Tensor) -> torch.Tensor:
        if self.latency is None:
            raise UserError("this supernet has no latency table")
        return self.latency.expected(self._weights(G))

    def expected_cost(self, sample: Sample) -> torch.Tensor:
        G = sample[0].float()
        if self.cost_kind == "latency":
            return self.expected_latency_us(G)
        c = self.effective_counts(G)
        v = c.macs if self.cost_kind == "flops" else c.params
        return v / 1e3  # type: ignore[return-value, operator]

    def arch_cost(self, arch: Arch) -> dict[str, float]:
        """Exact MACs, params (and predicted latency µs) of a concrete architecture."""
        G = self.one_hot(arch)[0].detach().double()
        c = self.effective_counts(G)
        out = {"macs": float(c.macs), "params": float(c.params)}
        if self.latency is not None:
            out["latency_us"] = float(self.latency.expected(self._weights(G)))
        return out

    # -- derivation ----------------------------------------------------------------------------
    def probabilities(self) -> list[list[float]]:
        p = torch.softmax(self.logits().detach().float(), -1)
        return [p[d, :len(o)].cpu().tolist() for d, (_, o) in enumerate(self.decisions)]

    def derive(self) -> Arch:
        """argmax per decision: one resolution, one width per stage, one expansion per block."""
        idx = self.logits().detach().argmax(-1).tolist()
        return self.space.arch_from_indices(idx)

    def arch_state(self) -> dict[str, Any]:
        return {"p_theta": self.probabilities()}

    def probability_rows(self) -> list[torch.Tensor]:
        """One row per decision (resolution, stem, stage widths, block expansions), valid
        options only."""
        p = torch.softmax(self.logits().detach().float(), -1)
        return [p[d, :len(o)] for d, (_, o) in enumerate(self.decisions)]

    def moves(self, arch: Arch) -> Iterable[Move]:
        """Every single decision moved to another option, with its loss of log P_θ."""
        logp = [np.log(np.maximum(p, 1e-12)) for p in self.probabilities()]
        idx = self.space.indices(arch)
        for d, (_, opts) in enumerate(self.decisions):
            for j in range(len(opts)):
                if j != idx[d]:
                    yield (self.space.arch_from_indices(idx[:d] + [j] + idx[d + 1:]),
                           float(logp[d][idx[d]] - logp[d][j]))

    def max_repair_steps(self, arch: Arch) -> int:
        return 10 * len(self.decisions)

    def sample(self, k: int, rng: np.random.Generator) -> list[Arch]:
        probs = self.probabilities()
        out = []
        for _ in range(k):
            idx = [int(rng.choice(len(p), p=np.asarray(p) / sum(p))) for p in probs]
            out.append(self.space.arch_from_indices(idx))
        return out

    def extract(self, arch: Arch) -> FBNetV2Model:
        """The derived model with the supernet's weights sliced to its widths (no masks)."""
        model = self.space.build(arch, self.num_classes, self.in_channels)
        src = self.net.state_dict()
        state = {}
        for k, v in model.state_dict().items():
            s = src[k]
            state[k] = s[tuple(slice(0, n) for n in v.shape)].clone() if v.dim() else s.clone()
        model.load_state_dict(state)
        return model.to(self.theta.device)


class LatencyTensors(nn.Module):
    """LUT latency (µs) of every option combination, mixed multilinearly by the weights.

    ``stem[s, r]``, per block ``[j, i, o, r]`` (input width, expansion, output width,
    resolution; within a stage ``j = o`` and the table is ``[j, i, r]``), ``head[c, r]``, plus a
    fixed part (one runtime overhead). One-hot weights give the LUT sum of that architecture.
    The tables are (non-persistent) buffers: they follow the supernet to its device.
    """

    def __init__(self, stem: torch.Tensor, blocks: list[torch.Tensor], head: torch.Tensor,
                 fixed_us: float, space: MaskingSpace) -> None:
        super().__init__()
        self.register_buffer("stem", stem, persistent=False)
        self.register_buffer("head", head, persistent=False)
        for i, t in enumerate(blocks):
            self.register_buffer(f"block{i}", t, persistent=False)
        self.fixed_us = fixed_us
        self.space = space

    def expected(self, w: dict[str, torch.Tensor]) -> torch.Tensor:
        gr = w["resolution"]
        dt = gr.dtype
        t = torch.einsum("s,r,sr->", w["stem"], gr, self.stem.to(dt))
        for spec in self.space.blocks:
            gi, ge, go = w[spec.in_decision], w[f"block{spec.index}"], w[spec.out_decision]
            tab = getattr(self, f"block{spec.index}").to(dt)
            if spec.in_decision == spec.out_decision:
                t = t + torch.einsum("j,i,r,jir->", gi, ge, gr, tab)
            else:
                t = t + torch.einsum("j,i,o,r,jior->", gi, ge, go, gr, tab)
        last = f"stage{len(self.space.skeleton.stages) - 1}"
        t = t + torch.einsum("c,r,cr->", w[last], gr, self.head.to(dt))
        return t + self.fixed_us


def latency_tensors(space: MaskingSpace, lut: LatencyTable, num_classes: int,
                    in_channels: int) -> LatencyTensors:
    """Arrange a LUT's corrected entries (µs) by option index for :class:`LatencyTensors`."""
    sk = space.skeleton
    R = len(sk.resolutions)
    stem = torch.zeros(len(sk.stem), R, dtype=torch.float64)
    blocks = []
    for b in space.blocks:
        same = b.in_decision == b.out_decision
        shape = ((len(b.in_widths), len(b.expansions), R) if same else
                 (len(b.in_widths), len(b.expansions), len(b.out_widths), R))
        blocks.append(torch.zeros(shape, dtype=torch.float64))
    last = sk.stages[-1].widths
    head = torch.zeros(len(last), R, dtype=torch.float64)
    for r, res in enumerate(sk.resolutions):
        hs = space.sizes(res)
        for s, c in enumerate(sk.stem):
            stem[s, r] = lut.corrected(space.lut_stem(c, res, in_channels).key)
        for b, tab in zip(space.blocks, blocks):
            h = hs[1 + 2 * b.index]
            for j, cin in enumerate(b.in_widths):
                for i, e in enumerate(b.expansions):
                    if tab.dim() == 3:
                        tab[j, i, r] = lut.corrected(space.lut_block(b, cin, e, cin, h).key)
                        continue
                    for o, cout in enumerate(b.out_widths):
                        tab[j, i, o, r] = lut.corrected(space.lut_block(b, cin, e, cout, h).key)
        for c_i, c in enumerate(last):
            head[c_i, r] = lut.corrected(space.lut_head(c, hs[-1], num_classes).key)
    return LatencyTensors(stem, blocks, head, lut.overhead_us, space)
