"""Contract tests: every registered search space keeps the promises the engine and the methods
rely on — a seeded sample validates and builds into a plain network that trains (a finite
gradient on every parameter), exports to TorchScript and ONNX equal to eager, survives a JSON
round trip, mutates to a different valid architecture, encodes to a fixed-length vector, and
bad architectures are refused with a UserError. A space added to the registry is covered
without touching this file."""

import json

import numpy as np
import pytest
import torch

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.export import export_onnx, export_torchscript
from nasforge.spaces.registry import get_space, space_names

ATOL = 1e-4


@pytest.fixture(scope="module", params=space_names())
def case(request):
    """(space, a seeded sample, its model, input shape, num_classes): built once per space."""
    space = get_space(request.param)
    arch = space.sample(np.random.default_rng(0))
    in_ch, classes = space.default_io
    assert isinstance(space.input_size, int) and space.input_size > 0, \
        f"space {space.name!r} must set input_size (its networks' input resolution)"
    torch.manual_seed(0)
    model = space.build(arch, classes, in_ch)
    return space, arch, model, (in_ch, space.input_size, space.input_size), classes


def _plain(arch: Arch):
    """The genes as plain JSON data (lists and dicts), whatever Arch stores internally."""
    return json.loads(arch.to_json())["genes"]


def test_sample_validates_and_builds_a_network_that_trains(case):
    space, arch, model, shape, classes = case
    assert arch.space == space.name
    space.validate(arch)
    assert isinstance(model, torch.nn.Module)
    model.train()
    model.zero_grad(set_to_none=True)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    y = model(x)
    assert y.shape == (2, classes)
    assert torch.isfinite(y).all()
    torch.nn.functional.cross_entropy(y, torch.tensor([0, 1])).backward()
    params = list(model.named_parameters())
    assert params
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"{space.name}: no gradient reaches {missing[:5]}"
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not bad, f"{space.name}: non-finite gradient in {bad[:5]}"
    assert any(float(p.grad.abs().max()) > 0 for _, p in params)


def test_torchscript_and_onnx_exports_equal_eager(case, tmp_path):
    space, _arch, model, shape, _classes = case
    ts = export_torchscript(model, shape, tmp_path / "model.pt", atol=ATOL)
    onnx = export_onnx(model, shape, tmp_path / "model.onnx", atol=ATOL)
    assert 0.0 <= ts <= ATOL, f"{space.name}: TorchScript differs by {ts:.2e}"
    assert 0.0 <= onnx <= ATOL, f"{space.name}: ONNX differs by {onnx:.2e}"
    assert (tmp_path / "model.pt").stat().st_size > 0
    assert (tmp_path / "model.onnx").stat().st_size > 0


def test_json_round_trip(case):
    space, arch, *_ = case
    back = Arch.from_json(arch.to_json())
    assert back == arch
    assert back.hash() == arch.hash() and hash(back) == hash(arch)
    space.validate(back)
    np.testing.assert_array_equal(space.encode(back), space.encode(arch))


def test_mutate_gives_a_different_valid_arch(case):
    space, arch, *_ = case
    rng = np.random.default_rng(2)
    found = False
    for _ in range(5):
        m = space.mutate(arch, rng)
        space.validate(m)
        assert m.space == space.name
        if m.hash() != arch.hash():
            found = True
            break
    assert found, f"{space.name}: 5 mutations all returned the same architecture"


def test_encode_is_a_fixed_length_finite_vector(case):
    space, arch, *_ = case
    rng = np.random.default_rng(3)
    others = [space.sample(rng) for _ in range(3)] + [space.mutate(arch, rng)]
    vecs = [np.asarray(space.encode(a)) for a in [arch, *others]]
    for v in vecs:
        assert v.ndim == 1 and v.size > 0
        assert np.issubdtype(v.dtype, np.floating)
        assert np.isfinite(v).all()
    assert len({v.size for v in vecs}) == 1, f"{space.name}: encode lengths differ"


def test_cardinality(case):
    space, *_ = case
    n = space.cardinality()
    assert isinstance(n, int) and n >= 2


def _corrupt_first_leaf(genes):
    """A copy of ``genes`` with its first leaf replaced by a value no space accepts."""
    done = [False]

    def walk(v):
        if done[0]:
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        done[0] = True
        return "not-a-choice" if isinstance(v, str) else -7

    out = walk(genes)
    assert done[0]
    return out


def test_validate_rejects_corrupted_archs(case):
    space, arch, *_ = case
    genes = _plain(arch)
    bad = [Arch("no-such-space", genes), Arch(space.name, _corrupt_first_leaf(genes))]
    bad += [Arch(space.name, g) for g in (42, "x", {}, [], {"bogus": 1})]
    for a in bad:
        with pytest.raises(UserError):
            space.validate(a)
