"""DARTS's second-order architecture gradient (METHODS §6; Liu et al. 2019, eq. 7–8).

The architecture step descends ``∇_α L_val(w', α)`` with ``w' = w − ξ ∇_w L_train(w, α)`` the
weights after one virtual SGD step (with the weight optimiser's momentum and weight decay, as
the DARTS code does). By the chain rule

    ∇_α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) · ∇_{w'} L_val(w', α),

and the Hessian-vector product is a central finite difference:

    ∇²_{α,w} L_train · v ≈ (∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)) / 2ε,
    w± = w ± ε v,  v = ∇_{w'} L_val(w', α),  ε = 0.01 / ‖v‖.

The weights are changed in place and restored bit for bit (no copy of the model is built), and
so are the buffers (BN running statistics): the step only sets ``.grad`` of the architecture
parameters. With ``ξ = 0`` it is the first-order gradient ``∇_α L_val(w, α)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from nasforge.supernets.base import Supernet

#: ``loss_fn(x, y)``: the loss (or a tuple whose first item is the loss) of the supernet at its
#: current weights, drawing its relaxation inside (so every call builds a fresh graph to α)
LossFn = Callable[[torch.Tensor, torch.Tensor], Any]


def _loss(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]


@contextmanager
def frozen(params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """``params`` without ``requires_grad`` inside the block: a step or pass that needs only the
    other group's gradient builds no backward (and saves no activations) for them. Used by the
    bilevel loop's w/θ steps and by the second-order passes below."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def unrolled_arch_grad(net: Supernet, loss_fn: LossFn, x_train: torch.Tensor,
                       y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, *,
                       xi: float, w_momentum: float = 0.0, w_weight_decay: float = 0.0,
                       w_optimizer_state: Mapping[Any, Mapping[str, Any]] | None = None,
                       r: float = 0.01) -> Any:
    """Set ``.grad`` of ``net.arch_parameters()`` to DARTS's second-order gradient.

    ``xi``: the virtual step's learning rate (DARTS: the weights' current one);
    ``w_momentum``/``w_weight_decay``/``w_optimizer_state`` (``torch.optim.SGD.state``, keyed
    by parameter): the virtual step is ``w − ξ (μ·buf + ∇_w L_train + λ w)`` like the real one;
    ``r``: the finite-difference radius (ε = r/‖v‖). Returns ``loss_fn``'s output at
    ``(w', val)``, detached (what the loop logs)."""
    alphas = [a for a in net.arch_parameters() if a.requires_grad]
    ws = [p for p in net.weight_parameters() if p.requires_grad]
    bufs = list(net.buffers())
    buffers = [b.detach().clone() for b in bufs]
    saved = torch._foreach_mul([p.detach() for p in ws], 1.0)  # copies, one call
    data = [p.data for p in ws]  # in-place arithmetic on the weights, outside autograd
    try:
        if xi:
            with frozen(alphas):  # ∇_w only
                g_train = _grads(_loss(loss_fn(x_train, y_train)), ws)
            with torch.no_grad():
                step = list(g_train)
                if w_weight_decay:
                    step = list(torch._foreach_add(step, data, alpha=w_weight_decay))
                state = w_optimizer_state or {}
                bufs_m = [state.get(p, {}).get("momentum_buffer") for p in ws]
                if w_momentum and any(b is not None for b in bufs_m):
                    idx = [i for i, b in enumerate(bufs_m) if b is not None]
                    moved = torch._foreach_add([step[i] for i in idx],
                                               [bufs_m[i] for i in idx], alpha=w_momentum)
                    for i, m in zip(idx, moved):
                        step[i] = m
                torch._foreach_add_(data, step, alpha=-xi)
                del g_train, step
        out = loss_fn(x_val, y_val)
        grads = _grads(_loss(out), alphas + ws)
        d_alpha, v = grads[:len(alphas)], grads[len(alphas):]
        del grads
        with torch.no_grad():
            torch._foreach_copy_(data, saved)
        if xi:
            norm = float(torch.sqrt(sum(n.double() ** 2 for n in torch._foreach_norm(v))))
            if not math.isfinite(norm):  # a NaN ‖v‖ used to skip the correction silently
                raise FloatingPointError(
                    f"the DARTS second-order step got a non-finite validation gradient "
                    f"(‖∇w L_val‖ = {norm}); lower --w-lr or --alpha-lr, or use --order 1")
            if norm > 0:
                eps = r / norm
                grad_pm = []
                for sign in (1.0, -1.0):
                    with torch.no_grad():
                        torch._foreach_copy_(data, saved)
                        torch._foreach_add_(data, v, alpha=sign * eps)
                    with frozen(ws):  # ∇_α only: no weight gradient is built
                        grad_pm.append(_grads(_loss(loss_fn(x_train, y_train)), alphas))
                d_alpha = [d - xi * (gp - gn) / (2 * eps)
                           for d, gp, gn in zip(d_alpha, *grad_pm)]
    finally:
        with torch.no_grad():
            torch._foreach_copy_(data, saved)
            for b, s in zip(bufs, buffers):
                b.copy_(s)
    for a, d in zip(alphas, d_alpha):
        a.grad = d.detach().clone()
    if isinstance(out, (tuple, list)):
        return type(out)(t.detach() if isinstance(t, torch.Tensor) else t for t in out)
    return out.detach()
