"""The shared growth into a target's unused share (``cost.targets.grow``) on a toy space where
each move's cost and log-probability loss are known."""

from __future__ import annotations

from nasforge.arch import Arch
from nasforge.cost.model import Costs
from nasforge.cost.targets import Targets, grow


class ToyCosts:
    """MACs = the sum of the genes (a vector of small integers)."""

    def costs(self, a: Arch, *, memory: bool = False) -> Costs:
        return Costs(sum(a.genes["x"]), 0, None, None)


def _arch(x: list[int]) -> Arch:
    return Arch("toy", {"x": x})


def _moves(dlogp: list[float]):  # noqa: ANN202
    """Each gene may go up by 1 (to at most 5); raising gene i loses dlogp[i]."""
    def moves(a: Arch):  # noqa: ANN202
        x = a.genes["x"]
        for i, v in enumerate(x):
            if v < 5:
                yield _arch([*x[:i], v + 1, *x[i + 1:]]), dlogp[i]
    return moves


def test_grow_fills_the_target_along_the_likeliest_moves():
    t = Targets(flops=4)
    got = grow(_arch([0, 0, 0]), t, ToyCosts(), _moves([5.0, 0.1, 2.0]), 20)
    assert list(got.genes["x"]) == [0, 4, 0]  # the cheap-in-probability gene takes the whole slack
    got = grow(_arch([0, 0, 0]), t, ToyCosts(), _moves([5.0, 0.1, 2.0]), 2)
    assert list(got.genes["x"]) == [0, 2, 0]  # max_steps bounds the moves


def test_grow_never_leaves_the_target_and_leaves_a_violator_alone():
    t = Targets(flops=7)
    got = grow(_arch([1, 1, 1]), t, ToyCosts(), _moves([1.0, 1.0, 1.0]), 50)
    assert sum(got.genes["x"]) == 7
    over = _arch([5, 5, 5])
    assert grow(over, t, ToyCosts(), _moves([1.0, 1.0, 1.0]), 50) == over
    assert t.fill(ToyCosts().costs(got)) == 1.0 and Targets().fill(ToyCosts().costs(got)) == 0.0


class OverheadCosts:
    """Gene ``x`` adds MACs and latency; gene ``r`` (a lower input resolution) adds latency
    through its resize while taking MACs away, as a measured table can price FBNetV2's
    resolutions on one CPU thread."""

    def costs(self, a: Arch, *, memory: bool = False) -> Costs:
        x, r = a.genes["x"], a.genes["r"]
        return Costs(max(10 * x - 4 * r, 0), 0, 0.1 * x + 0.3 * r, None)


def test_grow_does_not_spend_the_target_on_a_move_that_computes_less():
    def moves(a: Arch):  # noqa: ANN202
        x, r = a.genes["x"], a.genes["r"]
        yield Arch("toy", {"x": x + 1, "r": r}), 1.0
        yield Arch("toy", {"x": x, "r": r + 1}), 0.0  # likelier, more latency, fewer MACs
    got = grow(Arch("toy", {"x": 1, "r": 0}), Targets(latency_ms=0.5), OverheadCosts(), moves, 20)
    assert got.genes == {"x": 5, "r": 0}
