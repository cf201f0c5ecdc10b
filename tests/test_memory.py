"""Peak activation memory: computed from the graph vs brute force and vs the profiler."""

import numpy as np
import pytest
import torch
from torch import nn

from nasforge.cost.memory import activation_memory, measured_peak
from nasforge.errors import UserError
from nasforge.spaces.registry import get_space

F32 = 4


def _mlp():
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def test_chain_matches_brute_force_and_profiler():
    batch = 4
    widths = [256, 256, 128, 128, 10]  # output width of each layer
    a = [batch * w * F32 for w in widths]
    inp = batch * 64 * F32
    # the caller holds the input; layer i's input and output are alive while it runs
    brute = inp + max(a[i] + (a[i - 1] if i else 0) for i in range(len(a)))
    r = activation_memory(_mlp(), (64,), batch=batch)
    assert r.peak_bytes == brute
    assert r.input_bytes == inp and r.output_bytes == a[-1]
    # Linear/ReLU allocate nothing but their outputs: the profiler sees the same peak
    assert measured_peak(_mlp(), (64,), batch=batch) == r.peak_intermediate_bytes


class _Views(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(48, 48)

    def forward(self, x):
        y = x.view(x.shape[0], 3, 16).transpose(1, 2)  # views: no new memory
        y = y.reshape(x.shape[0], 48)  # a copy (y is not contiguous)
        return self.fc(y)


def test_views_are_not_counted_but_copies_are():
    r = activation_memory(_Views(), (48,), batch=2)
    row = 2 * 48 * F32
    assert r.peak_bytes == row * 3  # input + the reshaped copy + the output


def test_identity_skip_allocates_nothing():
    sp = get_space("fbnet-fmnist")
    genes = ["skip"] * sp.num_layers
    with_id = activation_memory(sp.build(sp.arch(genes), 10, 1), (1, 28, 28))
    genes[0] = "k3_e6"
    bigger = activation_memory(sp.build(sp.arch(genes), 10, 1), (1, 28, 28))
    assert bigger.peak_bytes > with_id.peak_bytes


def test_fbnet_models_computed_vs_measured():
    """The measured peak adds only what happens inside an op (oneDNN reorders of a conv's input
    and weights), so computed ≤ measured ≤ 1.6 × computed, and both scale with the batch."""
    sp = get_space("fbnet-fmnist")
    rng = np.random.default_rng(0)
    for _ in range(4):
        m = sp.build(sp.sample(rng), 10, 1)
        r = activation_memory(m, (1, 28, 28))
        c, me = r.peak_intermediate_bytes, measured_peak(m, (1, 28, 28))
        assert c <= me <= 1.6 * c
        r8 = activation_memory(m, (1, 28, 28), batch=8)
        assert r8.peak_bytes == 8 * r.peak_bytes


def test_untraceable_model_is_a_user_error():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UserError, match="torch.fx"):
        activation_memory(Branchy(), (4,))
    with pytest.raises(UserError, match="dtype"):
        activation_memory(_mlp(), (64,), dtype="int2")


def test_bfloat16_halves_the_bytes():
    a = activation_memory(_mlp(), (64,), batch=2)
    b = activation_memory(_mlp(), (64,), batch=2, dtype="bfloat16")
    assert b.peak_bytes * 2 == a.peak_bytes
    assert torch.get_default_dtype() == torch.float32
