"""``nasforge search jointnas`` end to end on a small budget, then ``--reuse`` of its predictor
for another constraint (fine stage only: no candidate trained during the search)."""

import json

import pytest

from nasforge.errors import UserError
from nasforge.methods.api import make_settings, search
from nasforge.predictor.model import Predictor


def test_settings_refuse_what_jointnas_cannot_do():
    with pytest.raises(UserError, match="peak-memory"):
        make_settings("jointnas", peak_memory_mb=1.0)
    with pytest.raises(UserError, match="early-stop"):
        make_settings("jointnas", early_stop=0.0)


@pytest.mark.slow
def test_search_then_reuse_for_another_constraint(tmp_path):
    a = tmp_path / "a"
    res = search("jointnas", dataset="digits", subset=160, max_trials=2, eval_budget=1.0,
                 flops=2e6, free_samples=200, early_stop=0.25, batch=2, top=1,
                 train_budget=2.0, out=str(a), progress=False)
    assert res.flops <= 2e6
    run = json.loads((a / "run.json").read_text())["jointnas"]
    assert run["coarse"]["trials_done"] >= 2 and res.epochs["search"] == run["coarse"][
        "trials_done"]
    assert run["verification"] and all("predicted" in r and "measured" in r
                                       for r in run["verification"])
    p = Predictor.load(a)  # JSON + weights_only tensors
    assert p.history["space"] == res.space and p.history["results"] >= 2
    b = tmp_path / "b"
    res2 = search("jointnas", dataset="digits", subset=160, flops=1e6, reuse=str(a),
                  train_budget=2.0, out=str(b), progress=False)
    assert res2.flops <= 1e6
    assert res2.epochs["search"] == 0  # no candidate trained during the search
    assert not (b / "trials.sqlite").exists() and not (b / "candidates.json").exists()
    info = json.loads((b / "run.json").read_text())["jointnas"]
    assert info["reused"] == str(a) and info["verification"] == []


@pytest.mark.parametrize("top", [1, 3, 5])
def test_budget_gives_the_verification_room_for_every_candidate(top):
    """The verification trains --top candidates and the default recipe, each for a coarse
    trial's seconds (the search stage's over 2 · batch); the plain sample-based 10 % share held
    one of them, so the plan sizes the rank stage by --top and still sums to the budget."""
    from nasforge.methods.budget import SAMPLE_BASED, Budget
    from nasforge.methods.jointnas import rank_shares

    s = make_settings("jointnas", budget=240, top=top)
    b = Budget.for_settings(s, SAMPLE_BASED, n_candidates=top + 1,
                            shares=rank_shares(s, top + 1))
    trial = b.planned["search"] / (2 * s.batch) * s.workers
    assert b.planned["rank"] >= (top + 1) * trial
    assert sum(b.planned.values()) == pytest.approx(240)
    plain = Budget.for_settings(s, SAMPLE_BASED, n_candidates=top + 1)
    assert plain.planned["rank"] < (top + 1) * plain.planned["search"] / (2 * s.batch)


def test_verification_keeps_the_best_measured_default_recipe_included():
    from nasforge.methods.jointnas import best_verified

    rows = [{"arch": "a", "measured": 0.92, "default_recipe": False},
            {"arch": "b", "measured": 0.93, "default_recipe": False},
            {"arch": "a0", "measured": 0.99, "default_recipe": True}]
    assert best_verified(rows)["arch"] == "a0"  # the default recipe trained better: kept
    rows[2]["measured"] = 0.90
    assert best_verified(rows)["arch"] == "b"
    rows[0]["measured"] = 0.93
    assert best_verified(rows)["arch"] == "a"  # a tie: the predictor's first
