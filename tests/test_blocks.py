import torch

from nasforge.blocks import ChannelShuffle, InvertedResidual, Skip, get_divisible_by


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
