"""``--space`` help of every search method comes from the registries (issue 12): a space
registered for a method shows up in its help, and the sample-based methods list every
registered space, not only the NSC ones."""

from __future__ import annotations

import pytest

from nasforge.methods.registry import METHODS
from nasforge.methods.settings import options
from nasforge.spaces import nsc
from nasforge.spaces.registry import SPACES, space_names


def _space_help(method: str) -> str:
    return next(o.help for o in options(METHODS.get(method).settings_cls) if o.name == "space")


@pytest.mark.parametrize("method", ["blockqnn", "evolution", "reinforce", "random"])
def test_sample_based_methods_list_every_registered_space(method):
    text = _space_help(method)
    for name in space_names():
        assert f" {name} " in f" {text.replace(';', ' ').replace('(', ' ')} ", name
    # the decision-by-decision ones (BlockQNN/REINFORCE) are named apart from the others
    seq, rest = text.split("evolution and random also:")
    assert "nb201-fmnist" in seq and "nasnet" in seq and "nsc-fast" in seq
    assert "darts-fmnist" in rest and "fbnet-fmnist" in rest and "darts-fmnist" not in seq


def test_a_newly_registered_space_appears_in_the_help():
    name = "nsc-helptest"
    SPACES.register(name, lambda: nsc.NSCSpace())
    try:
        assert name in _space_help("blockqnn").split("evolution and random also:")[0]
    finally:
        SPACES.unregister(name)


def test_jointnas_lists_its_registered_skeletons():
    from nasforge.spaces.joint import SKELETONS

    text = _space_help("jointnas")
    assert SKELETONS.names() and all(n in text for n in SKELETONS.names())
