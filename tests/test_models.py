import pytest
import torch

from nasforge.cost.flops import count_module
from nasforge.errors import UserError
from nasforge.models import create_model, get_setting, model_names
from nasforge.models.fbnetv2 import ModelSetting, setting_counts

NAMES = model_names()


def test_zoo_has_the_published_families():
    assert {f"fbnetv3_{c}" for c in "abcdefg"} <= set(NAMES)
    assert {"fbnetv2_f1", "fbnetv2_f4", "fbnetv2_l2"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_every_param_gets_a_grad(name):
    torch.manual_seed(0)
    m = create_model(name, num_classes=7, in_channels=1)
    x = torch.randn(2, 1, 64, 64)
    y = m(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_zoo_model_scripts_like_eager():
    """The optional masks argument of the shared block forward keeps plain models scriptable
    (FBNetV3 has SE, hswish, dw_padding overrides and skipped expansion convs)."""
    torch.manual_seed(0)
    m = create_model("fbnetv3_a", num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(torch.jit.script(m)(x), m(x), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_analytic_counts_equal_the_hook_counter(name):
    # the analytic count (used at full resolution below) is checked against real forward hooks
    s = get_setting(name)
    assert setting_counts(s, 10, 1, 64) == count_module(create_model(name, 10, 1), (1, 64, 64))


@pytest.mark.parametrize("name", [n for n in NAMES if get_setting(n).published])
def test_macs_and_params_match_the_published_figures(name):
    s = get_setting(name)
    c = setting_counts(s, 1000, 3)
    macs, params = s.published
    assert abs(c.macs / 1e6 / macs - 1) < 0.02, (c.macs, macs)
    if params is not None:
        assert abs(c.params / 1e6 / params - 1) < 0.02, (c.params, params)


def test_se_rounding_and_less_se_channels():
    a = create_model("fbnetv3_a")  # less_se_channels: SE sized from hidden / (4e)
    blk = a.stages[2][0]  # [5, 40, 2, 1, 5, se]: cin 24 → hidden 120, SE 120·0.25/5 = 6 → 8
    assert blk.hidden == 120 and blk.se.fc1.out_channels == 8
    f4 = create_model("fbnetv2_f4")  # full SE: hidden / 4 rounded by get_divisible_by
    blk = f4.stages[2][0]  # cin 24, e 5.3501 → hidden get_divisible_by(128.4) = 128, SE 32
    assert blk.hidden == 128 and blk.se.fc1.out_channels == 32


def test_lookup_is_forgiving_and_a_miss_lists_names():
    assert get_setting("FBNetV3-A") is get_setting("fbnetv3_a")
    with pytest.raises(UserError, match="fbnetv3_a"):
        create_model("fbnetv9")


def test_bad_rows_are_rejected_with_the_field_named():
    with pytest.raises(UserError, match="stage 0 row 0"):
        ModelSetting("bad", 8, (((4, 8, 1, 1, 1, 0, "relu"),),))
    with pytest.raises(UserError, match="activation"):
        ModelSetting("bad", 8, (((3, 8, 1, 1, 1, 0, "gelu"),),))
    with pytest.raises(UserError, match="unknown option"):
        ModelSetting("bad", 8, (((3, 8, 1, 1, 1, 0, "relu", {"pad": 1}),),))


@pytest.mark.slow
def test_cli_trains_a_zoo_model(tmp_path):
    from nasforge.cli import main

    rc = main(["train", "--model", "fbnetv2_f0", "--dataset", "digits", "--subset", "60",
               "--epochs", "1", "--out", str(tmp_path / "t"), "--no-progress"])
    assert rc == 0 and (tmp_path / "t" / "train.json").is_file()
