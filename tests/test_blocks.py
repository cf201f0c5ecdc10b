import pytest
import torch

from nasforge.blocks import ChannelShuffle, InvertedResidual, IRMasks, Skip, get_divisible_by


def test_channel_shuffle_is_a_permutation():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    y = ChannelShuffle(3)(x).flatten().tolist()
    assert sorted(y) == list(range(12)) and y != list(range(12))
    # (g, c/g) -> (c/g, g): channel j of group i lands at position i + g*j
    assert y[:6] == [0, 4, 8, 1, 5, 9]


def test_get_divisible_by_follows_the_seed():
    assert get_divisible_by(16, 8) == 16
    assert get_divisible_by(20, 8) == 24  # int(20+4)//8*8 = 24
    assert get_divisible_by(3, 8) == 8  # min_value
    assert get_divisible_by(27, 8) == 32  # 27+4 -> 24 < 0.9*27? no: 24 >= 24.3 false -> +8
    for v in range(1, 200):
        r = get_divisible_by(v, 8)
        assert r % 8 == 0 and r >= 0.9 * v


def test_inverted_residual_shapes_and_shortcut():
    b = InvertedResidual(16, 16, kernel=3, stride=1, hidden=48, groups=1)
    assert b.use_res and b(torch.randn(2, 16, 8, 8)).shape == (2, 16, 8, 8)
    b2 = InvertedResidual(16, 24, kernel=5, stride=2, hidden=16, groups=2)
    assert not b2.use_res and b2(torch.randn(2, 16, 8, 8)).shape == (2, 24, 4, 4)
    assert isinstance(b2.shuffle, ChannelShuffle)
    assert Skip(16, 16, 1).proj is None
    assert Skip(16, 24, 2)(torch.randn(1, 16, 8, 8)).shape == (1, 24, 4, 4)


def _masked_ir_reference(b, x, m_hid, m_se, m_out):
    """What the deleted ``spaces.masking.masked_ir`` computed, verbatim: the oracle for the
    block's own masked forward."""
    def mask(y, m):
        return y * m.view(1, -1, 1, 1).to(y.dtype)

    y = mask(b.pw(x), m_hid) if b.pw is not None else x
    y = mask(b.dw(y), m_hid)
    if b.se is not None:
        s = y.mean((2, 3), keepdim=True)
        z = b.se.act(b.se.fc1(s))
        if m_se is not None:
            z = mask(z, m_se)
        y = y * b.se.gate(b.se.fc2(z))
    y = mask(b.pwl(y), m_out)
    if b.use_res:
        if b.drop_path is not None:
            y = b.drop_path(y)
        y = y + x
    return y


@pytest.mark.parametrize("kw", [
    dict(cin=16, cout=16, hidden=48, se=True, act="hswish"),  # residual + SE
    dict(cin=16, cout=24, hidden=64, stride=2),  # no residual, no SE
    dict(cin=16, cout=16, hidden=16, se=True, skip_pw_when_equal=True),  # no expansion conv
])
def test_masked_forward_is_exactly_the_old_masked_ir(kw):
    torch.manual_seed(0)
    kw = dict(kw)
    b = InvertedResidual(kw.pop("cin"), kw.pop("cout"), kernel=3, stride=kw.pop("stride", 1),
                         **kw).train()
    x = torch.randn(2, b.cin, 8, 8)
    soft = lambda c: torch.rand(c)  # noqa: E731 - a soft (non-binary) mask, as during search
    se = None if b.se is None else soft(b.se.fc1.out_channels)
    for m_se in ([se, None] if se is not None else [None]):
        masks = IRMasks(soft(b.hidden), m_se, soft(b.cout))
        got = b(x, masks)
        want = _masked_ir_reference(b, x, masks.hidden, masks.se, masks.out)
        assert torch.equal(got, want)
    # unmasked is the plain block, and all-ones masks change nothing
    ones = IRMasks(torch.ones(b.hidden), None if se is None else torch.ones(se.numel()),
                   torch.ones(b.cout))
    assert torch.allclose(b(x, ones), b(x), atol=1e-6)
    assert not torch.allclose(b(x, IRMasks(torch.zeros(b.hidden), None, torch.ones(b.cout))),
                              b(x))


def test_inverted_residual_scripts_with_and_without_masks():
    """TorchScript needs the optional masks typed: plain models script and so does a masked
    call."""
    b = InvertedResidual(8, 8, kernel=5, stride=1, hidden=24, se=True, groups=1).eval()
    g = InvertedResidual(8, 16, kernel=3, stride=2, hidden=16, groups=2).eval()
    x = torch.randn(2, 8, 6, 6)
    for blk in (b, g):
        s = torch.jit.script(blk)
        assert torch.allclose(s(x), blk(x), atol=1e-6)
    m = IRMasks(torch.rand(24), torch.rand(b.se.fc1.out_channels), torch.rand(8))
    assert torch.allclose(torch.jit.script(b)(x, m), b(x, m), atol=1e-6)
