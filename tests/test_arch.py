import copy
import json
import pickle

import pytest

from nasforge.arch import Arch, thaw
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


def _nested() -> Arch:
    return Arch("s", {"blocks": [{"id": 1, "layers": ["a", "b"]}], "res": 28, "w": [8, 16]})


def test_genes_are_frozen_all_the_way_down():
    a = _nested()
    key, h = a.key(), hash(a)
    g = a.genes
    assert isinstance(g, dict) and isinstance(g["blocks"], tuple)
    assert isinstance(g["blocks"][0], dict) and isinstance(g["blocks"][0]["layers"], tuple)
    with pytest.raises(TypeError):
        g["res"] = 32
    with pytest.raises(TypeError):
        g["blocks"][0]["id"] = 2  # a nested dict
    with pytest.raises(TypeError):
        g["blocks"][0]["layers"][0] = "c"  # a nested list (now a tuple)
    with pytest.raises(AttributeError):
        g["w"].append(32)
    for mutate in (lambda: g.update(res=1), lambda: g.pop("res"), lambda: g.setdefault("z", 1),
                   lambda: g.clear(), lambda: g.popitem(), lambda: g.__delitem__("res")):
        with pytest.raises(TypeError):
            mutate()
    with pytest.raises(AttributeError):
        a.genes = ["other"]  # the record itself is frozen
    with pytest.raises(AttributeError):
        g.extra = 1  # no attribute can be hung on the genes either
    assert a.key() == key and hash(a) == h and a == _nested()


def test_caller_data_is_copied_not_shared():
    genes = {"blocks": [{"id": 1, "layers": ["a"]}]}
    a = Arch("s", genes)
    genes["blocks"][0]["layers"].append("b")
    assert a.to_dict()["genes"] == {"blocks": [{"id": 1, "layers": ["a"]}]}
    out = a.to_dict()
    out["genes"]["blocks"][0]["layers"].append("z")  # plain data out: changing it is harmless
    assert thaw(a.genes) == {"blocks": [{"id": 1, "layers": ["a"]}]}


def test_plain_json_out_and_round_trip(tmp_path):
    a = _nested()
    d = a.to_dict()
    assert type(d["genes"]) is dict and type(d["genes"]["blocks"]) is list
    assert type(d["genes"]["blocks"][0]["layers"]) is list
    assert json.loads(a.to_json()) == d
    assert Arch.from_json(a.to_json()) == a and Arch.from_dict(d).hash() == a.hash()
    a.save(tmp_path / "arch.json")
    assert Arch.load(tmp_path / "arch.json") == a
    # the same choices given as lists or tuples are the same architecture
    assert Arch("s", ("x", ("y", 1))) == Arch("s", ["x", ["y", 1]])


def test_usable_as_dict_key_pickled_and_copied():
    a = _nested()
    table = {a: 1.0}
    assert table[Arch.from_json(a.to_json())] == 1.0
    assert len({a, _nested(), Arch("s", ["other"])}) == 2
    for b in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a), copy.copy(a)):
        assert b == a and hash(b) == hash(a)
        with pytest.raises(TypeError):
            b.genes["res"] = 1
    assert hash(a.genes) == hash(_nested().genes)


def test_from_dict_copies_meta():
    data = {"space": "fbnet-fmnist", "genes": ["k3_e1"] * 9, "meta": {"networks": {"c": 8}}}
    a = Arch.from_dict(data)
    data["meta"]["networks"]["c"] = 16  # the caller's dict changes afterwards …
    assert a.meta["networks"]["c"] == 8  # … the arch does not
