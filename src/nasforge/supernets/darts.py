"""DARTS supernets (METHODS §6): every edge of the cell is a mixed op ``Σ_o softmax(α_e)_o ·
o(x)`` over all candidates, so the architecture is continuous and trained by gradient.

- :class:`DartsSupernet` relaxes the ``darts`` space: ``α_normal`` and ``α_reduce`` (14 edges ×
  8 ops), shared by all normal / all reduction cells; ``derive()`` keeps per node the two inputs
  whose strongest non-``none`` op weighs most (DARTS's rule).
- :class:`NB201Supernet` relaxes the ``nb201`` space: one α (6 edges × 5 ops); ``derive()`` is
  the argmax per edge (``none`` included, as the benchmark's DARTS baseline does).

As in DARTS, the BNs inside the searched cells have no affine parameters (so the mixed op's
weights alone scale each candidate). The relaxation is plain softmax (no temperature, no
noise): ``sample_relaxation`` returns the per-edge weights and ``forward(x, weights)`` reads
them; ``one_hot(arch)`` weighs exactly the genotype's ops 1 and every other candidate and edge
0, which makes ``forward`` *equal* to ``extract(arch)``: the derived network with the
supernet's weights (its BN scale and shift stay 1 and 0, what an affine-free BN computes).

DARTS has no cost term (its loss form is ``none``); :meth:`expected_cost` still gives the
expected cost (kMACs, kparams or LUT µs from the :class:`~nasforge.cost.model.CostModel`'s
``unit_cost`` of every (cell, edge, op)) for a cost-aware variant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasforge.arch import Arch
from nasforge.blocks.cell_ops import DARTS_OPS, NB201_OPS
from nasforge.cost.flops import count_module
from nasforge.cost.model import CostModel
from nasforge.cost.targets import Move
from nasforge.errors import UserError
from nasforge.models import darts as dm
from nasforge.models import nb201 as nm
from nasforge.spaces.darts import CELLS, CHOICES, DartsSpace, derive_genotype
from nasforge.spaces.nb201 import NB201Space
from nasforge.supernets.base import Supernet
from nasforge.supernets.fbnet import MixedOp

Weights = tuple[torch.Tensor, ...]


class CellSupernet(Supernet):
    """What both DARTS relaxations share: softmax(α) per edge, the expected cost, the
    distribution's JSON and rows, and extraction of the derived network's weights."""

    uses_tau = False
    space: Any
    alphas: nn.ParameterList
    op_names: tuple[str, ...]
    parametric_ops: tuple[str, ...]  # the ops with weights (collapse: skip beats them all)

    def normal_ops(self) -> list[str]:
        """The ops of the derived normal cell (one per kept edge)."""
        raise NotImplementedError

    def collapse(self) -> dict[str, Any]:
        """DARTS's known failure: skip connections take over the normal cell. ``warning`` is
        set when at least half the derived normal cell's edges are ``skip_connect``, or when the
        mean skip weight over its edges is clearly (10 %) above every parametric op's (not the
        noise of a near-uniform α)."""
        ops = self.normal_ops()
        n = sum(o == "skip_connect" for o in ops)
        mean = self.probabilities()[0].mean(0)
        skip = float(mean[self.op_names.index("skip_connect")])
        para = max(float(mean[self.op_names.index(o)]) for o in self.parametric_ops)
        warning = None
        if 2 * n >= len(ops):
            warning = f"skip collapse: {n}/{len(ops)} normal-cell edges are skip_connect"
        elif skip > 1.1 * para:
            warning = f"skip collapse: mean skip weight {skip:.3f} > every parametric op's"
        return {"skip_edges": n, "edges": len(ops), "warning": warning}

    def _init_costs(self, shapes: list[tuple[int, int]]) -> None:
        self.alphas = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(s)) for s in shapes)
        for t, s in enumerate(shapes):
            self.register_buffer(f"cost_table_{t}", torch.zeros(s))
        self.register_buffer("fixed_cost", torch.zeros(()))
        self._counts: dict[str, tuple[int, int]] = {}
        self._io: tuple[int, int] = (0, 0)
        self._cost_model: CostModel | None = None  # from_cost_model: tables not yet filled

    @classmethod
    def from_cost_model(cls, space: Any, cost_model: CostModel) -> CellSupernet:
        """The supernet whose expected cost uses ``cost_model``'s value of every op. The tables
        are filled on the first :meth:`expected_cost`: DARTS's loss has no cost term, and
        counting every (cell, edge, op) item builds hundreds of modules (seconds, more on a
        busy CPU, out of a short budget)."""
        net = cls(space, cost_model.num_classes, cost_model.in_channels)
        net._cost_model = cost_model
        return net

    def _fill_costs(self) -> None:
        cm = self._cost_model
        self._cost_model = None
        layout = self.space.cost_layout(cm.num_classes, cm.in_channels)
        with torch.no_grad():
            self.fixed_cost.fill_(sum(cm.unit_cost(i.key) for i in layout.fixed)
                                  + cm.fixed_cost())
            for t in range(len(self.alphas)):
                getattr(self, f"cost_table_{t}").zero_()
            for t, edges in layout.cells:  # every cell of type t adds its ops' costs
                table = getattr(self, f"cost_table_{t}")
                table += torch.tensor([[cm.unit_cost(i.key) for i in row] for row in edges])

    def counts(self, arch: Arch) -> tuple[int, int]:
        """(MACs, params) of ``arch`` summed over its cost items (each counted once)."""
        nc, ic = self._io
        items = {str(i.key): i for i in self.space.cost_layout(nc, ic).items()}
        macs = params = 0
        for key in self.space.lut_keys(arch, nc, ic):
            k = str(key)
            if k not in self._counts:
                c = count_module(items[k].build(), items[k].input_shape)
                self._counts[k] = (c.macs, c.params)
            macs += self._counts[k][0]
            params += self._counts[k][1]
        return macs, params

    # -- parameter groups ---------------------------------------------------------------------
    def arch_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.alphas

    # -- relaxation ---------------------------------------------------------------------------
    def sample_relaxation(self, generator: torch.Generator | None, tau: float,
                          hard: bool = False, phase: str = "weight") -> Weights:
        """softmax(α) per edge (deterministic: no noise, no temperature)."""
        if hard:
            raise UserError("DARTS relaxes every edge to a softmax mixture; it has no "
                            "single-path (hard) mode")
        return tuple(torch.softmax(a, dim=-1) for a in self.alphas)

    def expected_cost(self, sample: Weights) -> torch.Tensor:
        if self._cost_model is not None:
            self._fill_costs()
        cost = self.fixed_cost
        for t, w in enumerate(sample):
            cost = cost + (w * getattr(self, f"cost_table_{t}")).sum()
        return cost

    def probabilities(self) -> list[torch.Tensor]:
        return [torch.softmax(a.detach().float(), dim=-1).cpu() for a in self.alphas]

    def probability_rows(self) -> list[torch.Tensor]:
        """One row per edge (its candidate ops)."""
        return [row for p in self.probabilities() for row in p]

    def _logp(self) -> list[np.ndarray]:
        return [torch.log_softmax(a.detach().double().cpu(), -1).numpy() for a in self.alphas]

    def _collapse_state(self) -> dict[str, Any]:
        c = self.collapse()
        return {"skip_edges": c["skip_edges"], "collapse": c["warning"]}

    # -- extraction ---------------------------------------------------------------------------
    def _extract(self, model: nn.Module, mapping: dict[str, str]) -> nn.Module:
        """Load into ``model`` every supernet tensor, renamed by ``mapping`` (model prefix →
        supernet prefix) or by its own name; the only model tensors left are the BN scale and
        shift the affine-free supernet BNs do not have (kept at 1 and 0)."""
        own = self.state_dict()
        state = model.state_dict()
        missing = []
        for k in state:
            src = k
            for dst_prefix, src_prefix in mapping.items():
                if k.startswith(dst_prefix):
                    src = src_prefix + k[len(dst_prefix):]
                    break
            if src in own and own[src].shape == state[k].shape:
                state[k] = own[src]
            else:
                missing.append(k)
        bn = {f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
              for p in ("weight", "bias")}
        unexpected = [k for k in missing if k not in bn]
        if unexpected:
            raise RuntimeError(f"supernet has no weights for {unexpected[:5]}")
        model.load_state_dict(state)
        return model


@dataclass(frozen=True)
class FastPath:
    """The search cell's speed-ups: each computes the same mixture ``Σ_o w_o·o(x)`` with fewer
    or cheaper kernels, and each can be switched off (``benchmarks/darts_step.py --ablate``
    times them; ``tests/test_darts.py`` checks the step against the plain sum).

    - ``skip_none``: the ``none`` candidate adds ``w·0``; it is left out (α_none still gets
      its gradient through the softmax of the edge).
    - ``shared_relu``: the four conv candidates (and a strided skip's FactorizedReduce) start
      with ReLU of the same input; it is computed once per edge.
    - ``box_avg``: ``avg_pool_3x3`` (count_include_pad=False) as a 3×3 box sum (a depthwise
      conv with an all-ones kernel) times a cached reciprocal-count map (torch's CPU
      avg_pool2d and its backward are slow).
    - ``fold_bn``: a conv candidate ends in an affine-free BN; ``w·BN(t)`` is computed as one
      BN whose scale is ``w`` (one kernel, α's gradient from BN's own backward).
    - ``channels_last``: activations in NHWC (oneDNN's fast depthwise and pooling kernels on
      the CPU; on CUDA the loop already runs channels_last).
    - ``space_to_batch``: a ``dil_conv`` (dilation 2) as a dense depthwise conv: at stride 1
      on the four parity sub-images of its input (H/2 × W/2, stacked in the batch), at stride
      2 on the even one alone (oneDNN's dilated depthwise backward is 3–8× slower than the
      dense one on the CPU). Both ``dil_conv`` candidates of an edge share the rearranged
      input and are summed before the one inverse rearrangement.
    - ``share_sources``: every edge that reads the same cell state (4 edges read each cell
      input, 3 the first node, …) shares that state's parameter-free work — its ReLU, max
      pool, average pool and parity rearrangement are computed once per state, not once per
      edge; a node's ``dil_conv`` parts are summed in the parity layout over its in-edges and
      rearranged back once; the cell's mixing weights are split into scalars and BN scale
      vectors by one op each (not two indexing ops per candidate).
    ``enabled=False``: the plain :class:`~nasforge.supernets.fbnet.MixedOp` sum."""

    enabled: bool = True
    skip_none: bool = True
    shared_relu: bool = True
    box_avg: bool = True
    fold_bn: bool = True
    channels_last: bool = True
    space_to_batch: bool = True
    share_sources: bool = True

    @classmethod
    def plain(cls) -> FastPath:
        return cls(enabled=False, skip_none=False, shared_relu=False, box_avg=False,
                   fold_bn=False, channels_last=False, space_to_batch=False,
                   share_sources=False)


_INV_COUNT: dict[tuple[Any, ...], torch.Tensor] = {}


_ONES: dict[tuple[Any, ...], torch.Tensor] = {}


def _box_sum(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Σ over each 3×3 window (zero padding 1) at ``stride``: a depthwise conv with a constant
    all-ones kernel (its forward + backward were 2–3× faster than summing nine shifted slices,
    whose backward pads and scatters each slice)."""
    c = x.shape[1]
    key = (c, x.device, x.dtype)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = torch.ones(c, 1, 3, 3, dtype=x.dtype, device=x.device)
    return F.conv2d(x, ones, None, stride, 1, 1, c)


def avg_pool_3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``AvgPool2d(3, stride, 1, count_include_pad=False)``: box sum / in-image count (the
    count map is cached per size, stride, device and dtype: no per-step allocation)."""
    key = (x.shape[-2], x.shape[-1], stride, x.device, x.dtype)
    inv = _INV_COUNT.get(key)
    if inv is None:
        ones = torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
        inv = _INV_COUNT[key] = 1.0 / _box_sum(ones, stride)
    return _box_sum(x, stride) * inv


def _bn(m: nn.BatchNorm2d, x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``scale · m(x)`` in one ``batch_norm`` call (the module's own running statistics,
    momentum and counter, updated as ``m.forward`` updates them).

    The scale vector is materialised (``repeat``, not ``expand``): torch's CPU batch-norm
    backward, for a channels_last input *and* gradient, reads a stride-0 weight wrongly (its
    input gradient was off by O(1) in float64; ``tests/test_darts.py`` pins it), which made
    the fast DARTS step differ from the plain one (issue 11). A 1-d ``scale`` (one value per
    channel, already materialised) is used as it is."""
    momentum = 0.0
    if m.training and m.track_running_stats:
        m.num_batches_tracked.add_(1)
        momentum = (1.0 / float(m.num_batches_tracked) if m.momentum is None
                    else m.momentum)
    use_batch = m.training or m.running_mean is None
    weight, bias = m.weight, m.bias
    if scale is not None:
        if scale.dim() == 0 and weight is None:
            scale = scale.repeat(x.shape[1])
        weight = scale if weight is None else weight * scale
        bias = None if bias is None else bias * scale
    return F.batch_norm(x, m.running_mean if not m.training or m.track_running_stats else None,
                        m.running_var if not m.training or m.track_running_stats else None,
                        weight, bias, use_batch, momentum, m.eps)


def _conv_unit(unit: nn.Module, r: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """A ``DilConv`` (ReLU → depthwise → 1×1 → BN) on its already-rectified input."""
    return _bn(unit[3], unit[2](unit[1](r)), scale)


def to_parity_batch(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (4N, C, H/2, W/2): the sub-images ``x[..., p::2, q::2]`` stacked in the
    batch, ordered (p, q, n), in NHWC memory (one copy)."""
    n, c, h, w = x.shape
    t = x.permute(0, 2, 3, 1).reshape(n, h // 2, 2, w // 2, 2, c)
    return t.permute(2, 4, 0, 1, 3, 5).reshape(4 * n, h // 2, w // 2, c).permute(0, 3, 1, 2)


def from_parity_batch(y: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_parity_batch` (NHWC memory, one copy)."""
    m, c, h, w = y.shape
    t = y.permute(0, 2, 3, 1).reshape(2, 2, m // 4, h, w, c)
    return t.permute(2, 3, 0, 4, 1, 5).reshape(m // 4, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def _dense_dil_unit(unit: nn.Module, r: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """A ``DilConv`` (dilation 2) on a parity sub-image batch (or the even sub-image of a
    stride-2 input): the same taps as a dense depthwise conv, stride 1, ``(k − 1)/2`` padding.
    BN over the rearranged batch sees the same pixels, so the same statistics."""
    dw: nn.Conv2d = unit[1]
    k = dw.kernel_size[0]
    t = F.conv2d(r, dw.weight, dw.bias, 1, (k - 1) // 2, 1, dw.groups)
    return _bn(unit[3], unit[2](t), scale)


def _dil_as_dense(op: nn.Module, stride: int, r: torch.Tensor) -> bool:
    """Whether :func:`_dense_dil_unit` computes ``op`` on ``r`` (dilation 2, square odd
    kernel, stride 1 on even sizes or stride 2)."""
    dw = op[1]
    k = dw.kernel_size
    return (dw.dilation == (2, 2) and k[0] == k[1] and k[0] % 2 == 1
            and dw.padding == (k[0] - 1, k[0] - 1) and dw.stride == (stride, stride)
            and (stride == 2 or (stride == 1 and r.shape[-1] % 2 == 0
                                 and r.shape[-2] % 2 == 0)))


#: the conv candidates of the fast DARTS edge, and every candidate's α column
_CONVS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
_DILS = ("dil_conv_3x3", "dil_conv_5x5")
_DARTS_INDEX = {op: i for i, op in enumerate(dm.PRIMITIVES)}
_NB201_INDEX = {op: i for i, op in enumerate(nm.OPS)}


def _mix(out: torch.Tensor | None, t: torch.Tensor, wk: torch.Tensor | None) -> torch.Tensor:
    """``out + wk·t`` (``wk`` None: already weighted) in one kernel."""
    if wk is None:
        return t if out is None else out + t
    return t * wk if out is None else torch.addcmul(out, t, wk)


def nb201_edge(blocks: nn.ModuleList, src: Source, w: torch.Tensor) -> torch.Tensor:
    """``Σ_o w_o·o(x)`` over the NAS-Bench-201 candidates of one edge (``nm.OPS`` order) on
    the state ``src`` (its ReLU and average pool shared with the state's other out-edges when
    ``share_sources``)."""
    ops = _NB201_INDEX
    fast, x = src.fast, src.x
    out = None
    if not fast.skip_none:
        out = _mix(out, blocks[ops["none"]](x), w[ops["none"]])
    out = _mix(out, x, w[ops["skip_connect"]])
    k = ops["avg_pool_3x3"]
    out = _mix(out, src.avg_pool(blocks[k]), w[k])
    for name in ("nor_conv_1x1", "nor_conv_3x3"):
        k = ops[name]
        op = blocks[k]  # ReLUConvBN: ReLU → conv → BN
        t = op[1](src.relu())
        if fast.fold_bn:
            out = _mix(out, _bn(op[2], t, w[k]), None)
        else:
            out = _mix(out, op[2](t), w[k])
    assert out is not None
    return out


def set_fast(net: nn.Module, fast: FastPath) -> None:
    """Use ``fast`` in every search cell of ``net`` (and for its input layout)."""
    net.fast = fast
    for m in net.modules():
        if isinstance(m, (SearchCell, NB201MixedCell)):
            m.fast = fast


def _layout(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    fast: FastPath = net.fast
    if fast.enabled and fast.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class Source:
    """One cell state and the parameter-free work its out-edges' candidates do on it (ReLU,
    pools, the parity rearrangement), computed on first use and kept for the next edge
    (``FastPath.share_sources``; without it each edge gets a fresh ``Source``)."""

    def __init__(self, x: torch.Tensor, stride: int, fast: FastPath) -> None:
        self.x, self.stride, self.fast = x, stride, fast
        self._memo: dict[str, torch.Tensor] = {}

    def _get(self, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        t = self._memo.get(key)
        if t is None:
            t = self._memo[key] = make()
        return t

    def relu(self) -> torch.Tensor:
        """ReLU(x), once (``shared_relu``) or afresh for each candidate."""
        if not self.fast.shared_relu:
            return F.relu(self.x)
        return self._get("relu", lambda: F.relu(self.x))

    def max_pool(self, op: nn.Module) -> torch.Tensor:
        return self._get("max", lambda: op(self.x))

    def avg_pool(self, op: nn.Module) -> torch.Tensor:
        return self._get("avg", lambda: avg_pool_3x3(self.x, self.stride) if self.fast.box_avg
                         else op(self.x))

    def dil_input(self) -> torch.Tensor:
        """ReLU(x) as the dense ``dil_conv`` reads it: the parity sub-image batch (stride 1) or
        the even sub-image (stride 2), one copy in the fast path's memory layout."""
        def make() -> torch.Tensor:
            r = self.relu()
            if self.stride == 1:
                return to_parity_batch(r)
            layout = (torch.channels_last if self.fast.channels_last
                      else torch.contiguous_format)
            return r[:, :, ::2, ::2].contiguous(memory_format=layout)
        if not self.fast.shared_relu:
            return make()
        return self._get("dil", make)


class EdgeWeights:
    """A cell's mixing weights (edges × ops) as the fast edges read them: ``scalar(e, k)`` and
    ``vector(e, k)`` (the weight repeated over the cell's channels, a BN scale). With
    ``share_sources`` each form comes from one op over the whole table (one backward node,
    not two indexing ops per candidate); without it, as indexing and ``repeat`` per use."""

    def __init__(self, w: torch.Tensor, channels: int, shared: bool) -> None:
        self.w, self.c, self.shared = w, channels, shared
        self._n = w.shape[-1]
        if shared:
            self._scalars = w.reshape(-1).unbind(0)
            self._vectors = w.reshape(-1, 1).expand(-1, channels).contiguous().unbind(0)

    def scalar(self, e: int, k: int) -> torch.Tensor:
        return self._scalars[e * self._n + k] if self.shared else self.w[e][k]

    def vector(self, e: int, k: int) -> torch.Tensor:
        """The BN scale of candidate ``k`` of edge ``e`` (a 0-d weight without sharing:
        :func:`_bn` repeats it)."""
        return self._vectors[e * self._n + k] if self.shared else self.w[e][k]


def darts_edge(blocks: nn.ModuleList, src: Source, weights: EdgeWeights, e: int,
               dil_parts: list[torch.Tensor] | None = None) -> torch.Tensor:
    """``Σ_o w_o·o(x)`` over the DARTS candidates of edge ``e`` (``blocks`` in PRIMITIVES
    order) on the state ``src``, the way ``src.fast`` says. With ``dil_parts`` (a list) the
    parity-layout ``dil_conv`` sum of a stride-1 edge is appended there instead of being
    rearranged back and added (the caller sums a node's parts and rearranges once)."""
    ops = _DARTS_INDEX
    fast, x, stride = src.fast, src.x, src.stride
    out: torch.Tensor | None = None

    def add(t: torch.Tensor, wk: torch.Tensor | None) -> None:
        nonlocal out
        out = _mix(out, t, wk)

    def scale(k: int) -> torch.Tensor | None:
        return weights.vector(e, k) if fast.fold_bn else None

    if not fast.skip_none:
        add(blocks[ops["none"]](x), weights.scalar(e, ops["none"]))
    k = ops["max_pool_3x3"]
    add(src.max_pool(blocks[k]), weights.scalar(e, k))
    k = ops["avg_pool_3x3"]
    add(src.avg_pool(blocks[k]), weights.scalar(e, k))
    k = ops["skip_connect"]
    if stride == 1:
        add(x, weights.scalar(e, k))
    else:
        fr = blocks[k]
        rr = src.relu()
        cat = torch.cat([fr.conv_1(rr), fr.conv_2(rr[:, :, 1:, 1:])], dim=1)
        if fast.fold_bn:
            add(_bn(fr.bn, cat, scale(k)), None)
        else:
            add(fr.bn(cat), weights.scalar(e, k))
    dense = fast.space_to_batch and all(_dil_as_dense(blocks[ops[n]], stride, x)
                                        for n in _DILS)
    if dense:  # both dil_convs on the rearranged input, summed, then one inverse rearrangement
        acc: torch.Tensor | None = None
        for name in _DILS:
            k = ops[name]
            t = _dense_dil_unit(blocks[k], src.dil_input(), scale(k))
            acc = _mix(acc, t, None if fast.fold_bn else weights.scalar(e, k))
        assert acc is not None
        if stride == 1 and dil_parts is not None:
            dil_parts.append(acc)
        else:
            add(from_parity_batch(acc) if stride == 1 else acc, None)
    for name in _CONVS:
        if dense and name in _DILS:
            continue
        k = ops[name]
        op = blocks[k]
        rr = src.relu()
        if name.startswith("sep"):
            t = _conv_unit(op[1], F.relu(_conv_unit(op[0], rr, None)), scale(k))
        else:
            t = _conv_unit(op, rr, scale(k))
        add(t, None if fast.fold_bn else weights.scalar(e, k))
    assert out is not None
    return out


class SearchCell(nn.Module):
    """A DARTS search cell: preprocessing and 14 mixed edges over the 8 candidates (one module
    per candidate per edge: ``edges[e].blocks[o]``, what ENAS shares and ``extract`` maps)."""

    def __init__(self, spec: dm.CellSpec, affine: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.fast = FastPath()
        self.preprocess0, self.preprocess1 = dm.preprocess(spec, affine)
        self.edges = nn.ModuleList(
            MixedOp([DARTS_OPS[op](spec.c, spec.stride(j), affine) for op in dm.PRIMITIVES])
            for i in range(dm.STEPS) for j in range(i + 2))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        fast = self.fast
        if not fast.enabled:
            for i in range(dm.STEPS):
                o = dm.EDGE_OFFSETS[i]
                states.append(sum_in_order(self.edges[o + j](states[j], w[o + j])
                                           for j in range(i + 2)))
            return torch.cat(states[2:], dim=1)
        share = fast.share_sources
        weights = EdgeWeights(w, self.spec.c, share)
        srcs = [Source(s, self.spec.stride(j), fast) for j, s in enumerate(states)]
        for i in range(dm.STEPS):
            o = dm.EDGE_OFFSETS[i]
            parts: list[torch.Tensor] | None = [] if share else None
            hs = []
            for j in range(i + 2):
                src = srcs[j] if share else Source(states[j], self.spec.stride(j), fast)
                hs.append(darts_edge(self.edges[o + j].blocks, src, weights, o + j, parts))
            if parts:
                hs.append(from_parity_batch(sum_in_order(parts)))
            states.append(sum_in_order(hs))
            srcs.append(Source(states[-1], 1, fast))
        return torch.cat(states[2:], dim=1)


def sum_in_order(ts: Iterable[torch.Tensor]) -> torch.Tensor:
    """``t0 + t1 + …`` left to right (the plain cell's order)."""
    out: torch.Tensor | None = None
    for t in ts:
        out = t if out is None else out + t
    assert out is not None
    return out


class DartsSupernet(CellSupernet):
    """The DARTS search network over a :class:`DartsSpace` (its ``cells`` and ``channels``)."""

    op_names = dm.PRIMITIVES
    parametric_ops = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")

    def __init__(self, space: DartsSpace, num_classes: int, in_channels: int,
                 affine: bool = False) -> None:
        super().__init__()
        cfg = space.cfg
        self.space = space
        plan = dm.cell_plan(cfg.cells, cfg.channels, space.input_size)
        self.stem = dm.make_stem(in_channels, cfg.channels)
        self.cells = nn.ModuleList(SearchCell(s, affine) for s in plan)
        self.reduction = [s.reduction for s in plan]
        self.classifier = nn.Linear(len(dm.CONCAT) * plan[-1].c, num_classes)
        self._init_costs([(dm.NUM_EDGES, len(dm.PRIMITIVES))] * 2)
        self._io = (num_classes, in_channels)
        set_fast(self, FastPath())

    def forward(self, x: torch.Tensor, sample: Weights) -> torch.Tensor:
        w_normal, w_reduce = sample
        s0 = s1 = self.stem(_layout(self, x))
        for cell, red in zip(self.cells, self.reduction):
            s0, s1 = s1, cell(s0, s1, w_reduce if red else w_normal)
        return self.classifier(s1.mean((2, 3)))

    def one_hot(self, arch: Arch) -> Weights:
        m = torch.from_numpy(self.space.one_hot(arch)).to(self.alphas[0])
        return m[0], m[1]

    # -- derivation ---------------------------------------------------------------------------
    def derive(self) -> Arch:
        return self.space.arch(derive_genotype([p.numpy() for p in self.probabilities()]))

    def normal_ops(self) -> list[str]:
        return [op for op, _ in self.space.genotype(self.derive())["normal"]]

    def arch_state(self) -> dict[str, Any]:
        p = self.probabilities()
        return {"ops": list(dm.PRIMITIVES),
                "edges": [f"{i + 2}<-{j}" for i in range(dm.STEPS) for j in range(i + 2)],
                "normal": p[0].tolist(), "reduce": p[1].tolist(),
                **self._collapse_state()}

    def sample(self, k: int, rng: np.random.Generator) -> list[Arch]:
        """K genotypes from softmax(α): per node two distinct inputs drawn without replacement
        with probability ∝ each edge's non-``none`` mass, each with an op drawn from its
        non-``none`` ops (renormalised)."""
        none = dm.PRIMITIVES.index("none")
        probs = [np.delete(p.double().numpy(), none, axis=1) for p in self.probabilities()]
        out = []
        for _ in range(k):
            genes: dict[str, Any] = {}
            for cell, p in zip(CELLS, probs):
                g = []
                for i in range(dm.STEPS):
                    rows = p[dm.EDGE_OFFSETS[i]:dm.EDGE_OFFSETS[i] + i + 2]
                    mass = rows.sum(1)
                    for j in sorted(rng.choice(i + 2, 2, replace=False, p=mass / mass.sum())):
                        g.append([CHOICES[int(rng.choice(len(CHOICES), p=rows[j] / mass[j]))],
                                  int(j)])
                genes[cell] = g
                genes[f"{cell}_concat"] = list(dm.CONCAT)
            out.append(self.space.arch(genes))
        return out

    def moves(self, arch: Arch) -> Iterable[Move]:
        """Every one-gene change — another op on the same edge, or the same op from another
        input the node does not read — with its loss of log P (the sum over the genotype's
        edges of log softmax(α_e)[op])."""
        logp = self._logp()
        genes = self.space.genotype(arch)
        for t, cell in enumerate(CELLS):
            for k, (op, j) in enumerate(genes[cell]):
                node, other = k // 2, genes[cell][k ^ 1][1]
                e, o = dm.edge_index(node, j), dm.PRIMITIVES.index(op)
                for op2 in CHOICES:
                    if op2 != op:
                        yield (self._with(genes, cell, k, (op2, j)),
                               float(logp[t][e, o] - logp[t][e, dm.PRIMITIVES.index(op2)]))
                for j2 in range(node + 2):
                    if j2 not in (j, other):
                        yield (self._with(genes, cell, k, (op, j2)),
                               float(logp[t][e, o] - logp[t][dm.edge_index(node, j2), o]))

    def _with(self, genes: dict[str, Any], cell: str, k: int, gene: dm.Gene) -> Arch:
        g = {key: list(v) for key, v in genes.items()}
        g[cell][k] = gene
        return self.space.arch(g)

    def max_repair_steps(self, arch: Arch) -> int:
        return 10 * 2 * 2 * dm.STEPS

    def extract(self, arch: Arch) -> dm.DartsNetwork:
        """The derived network of ``arch`` (search-sized) with this supernet's weights."""
        model = self.space.build(arch, self.classifier.out_features,
                                 self.stem[0].in_channels)
        genes = self.space.genotype(arch)
        mapping = {}
        for ci, red in enumerate(self.reduction):
            for k, (op, j) in enumerate(genes["reduce" if red else "normal"]):
                e = dm.edge_index(k // 2, j)
                mapping[f"cells.{ci}.ops.{k}."] = (
                    f"cells.{ci}.edges.{e}.blocks.{dm.PRIMITIVES.index(op)}.")
        return self._extract(model, mapping)


class NB201MixedCell(nn.Module):
    """A NAS-Bench-201 search cell: 6 mixed edges over the 5 candidates."""

    def __init__(self, channels: int, affine: bool = False) -> None:
        super().__init__()
        self.fast = FastPath()
        self.edges = nn.ModuleList(MixedOp([NB201_OPS[o](channels, affine) for o in nm.OPS])
                                   for _ in nm.EDGES)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        fast = self.fast
        nodes = [x]
        srcs = [Source(x, 1, fast)]
        k = 0
        for i in range(1, 4):
            hs = []
            for j in range(i):
                if not fast.enabled:
                    hs.append(self.edges[k + j](nodes[j], w[k + j]))
                else:
                    src = srcs[j] if fast.share_sources else Source(nodes[j], 1, fast)
                    hs.append(nb201_edge(self.edges[k + j].blocks, src, w[k + j]))
            k += i
            nodes.append(sum_in_order(hs))
            srcs.append(Source(nodes[-1], 1, fast))
        return nodes[3]


class NB201Supernet(CellSupernet):
    """DARTS over the NAS-Bench-201 cell (the benchmark's macro skeleton around it)."""

    op_names = nm.OPS
    parametric_ops = ("nor_conv_1x1", "nor_conv_3x3")

    def __init__(self, space: NB201Space, num_classes: int, in_channels: int,
                 affine: bool = False) -> None:
        super().__init__()
        cfg = space.cfg
        self.space = space
        self.stem = nm.make_stem(in_channels, cfg.channels)
        self.cells = nn.ModuleList(
            NB201MixedCell(cout, affine) if kind == "cell" else nm.ResNetBasicBlock(cin, cout)
            for kind, cin, cout in nm.stage_plan(cfg.channels, cfg.cells_per_stage))
        self.searched = [isinstance(c, NB201MixedCell) for c in self.cells]
        last = cfg.channels * 4
        self.lastact = nn.Sequential(nn.BatchNorm2d(last), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(last, num_classes)
        self._init_costs([(len(nm.EDGES), len(nm.OPS))])
        self._io = (num_classes, in_channels)
        set_fast(self, FastPath())

    def forward(self, x: torch.Tensor, sample: Weights) -> torch.Tensor:
        (w,) = sample
        x = self.stem(_layout(self, x))
        for cell, searched in zip(self.cells, self.searched):
            x = cell(x, w) if searched else cell(x)
        return self.classifier(self.lastact(x).mean((2, 3)))

    def one_hot(self, arch: Arch) -> Weights:
        m = torch.from_numpy(self.space.encode(arch)).to(self.alphas[0])
        return (m.view(len(nm.EDGES), len(nm.OPS)),)

    def derive(self) -> Arch:
        return self.space.arch([nm.OPS[int(i)] for i in self.probabilities()[0].argmax(-1)])

    def normal_ops(self) -> list[str]:
        return list(self.space.cell(self.derive()))

    def arch_state(self) -> dict[str, Any]:
        return {"ops": list(nm.OPS), "edges": [f"{i}<-{j}" for i, j in nm.EDGES],
                "cell": self.probabilities()[0].tolist(), **self._collapse_state()}

    def sample(self, k: int, rng: np.random.Generator) -> list[Arch]:
        """K cells drawn from Π_e softmax(α_e)."""
        p = self.probabilities()[0].double().numpy()
        return [self.space.arch([nm.OPS[int(rng.choice(len(nm.OPS), p=row / row.sum()))]
                                 for row in p]) for _ in range(k)]

    def moves(self, arch: Arch) -> Iterable[Move]:
        """Every single-edge op change, with its loss of log P."""
        logp = self._logp()[0]
        ops = list(self.space.cell(arch))
        for e, op in enumerate(ops):
            o = nm.OPS.index(op)
            for o2, op2 in enumerate(nm.OPS):
                if o2 != o:
                    yield (self.space.arch(ops[:e] + [op2] + ops[e + 1:]),
                           float(logp[e, o] - logp[e, o2]))

    def max_repair_steps(self, arch: Arch) -> int:
        return 10 * len(nm.EDGES)

    def extract(self, arch: Arch) -> nm.NB201Network:
        """The benchmark's network of ``arch`` with this supernet's weights."""
        model = self.space.build(arch, self.classifier.out_features, self.stem[0].in_channels)
        ops = self.space.cell(arch)
        mapping = {f"cells.{ci}.edges.{e}.": f"cells.{ci}.edges.{e}.blocks.{nm.OPS.index(op)}."
                   for ci, searched in enumerate(self.searched) if searched
                   for e, op in enumerate(ops)}
        return self._extract(model, mapping)
