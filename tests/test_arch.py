import pytest

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.spaces.fbnet import FBNetSpace


def test_json_round_trip_and_stable_hash():
    a = Arch("fbnet-fmnist", ["k3_e1"] * 9, meta={"note": "x"})
    b = Arch.from_json(a.to_json())
    assert a == b and a.hash() == b.hash()
    assert Arch("fbnet-fmnist", ["k3_e3"] * 9).hash() != a.hash()


@pytest.mark.parametrize(
    "genes, needle",
    [
        (["k3_e1"] * 8 + ["k7_e9"], "genes[8]: unknown block 'k7_e9'"),
        (["k3_e1"] * 5, "has 5 layers"),
        (["k3_e1"] * 8 + [3], "genes[8] must be a block name"),
        ("k3_e1", "must be a list"),
    ],
)
def test_invalid_arch_names_the_field(genes, needle):
    space = FBNetSpace("fbnet-fmnist")
    with pytest.raises(UserError) as e:
        space.validate(Arch("fbnet-fmnist", genes))
    assert needle in str(e.value)


def test_bad_json_documents():
    with pytest.raises(UserError, match="not valid JSON"):
        Arch.from_json("{nope")
    with pytest.raises(UserError, match="missing field"):
        Arch.from_json('{"space": "fbnet-fmnist"}')
    with pytest.raises(UserError, match="unknown field"):
        Arch.from_json('{"space": "s", "genes": [], "extra": 1}')
    with pytest.raises(UserError, match="expected 'fbnet-fmnist'"):
        FBNetSpace("fbnet-fmnist").validate(Arch("fbnet-cifar", ["skip"] * 9))
    with pytest.raises(UserError, match="not JSON data"):
        Arch("s", [object()])
