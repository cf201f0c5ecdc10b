"""Each finish stage on its own (a tiny NSC space, 200 digits, one epoch), then composed."""

import json

import pytest
import torch

from nasforge.cost.model import CostModel, MeasuredLatency
from nasforge.cost.targets import Targets
from nasforge.data import load_dataset
from nasforge.errors import UserError
from nasforge.methods import finish as fin
from nasforge.methods.common import rng_for
from nasforge.methods.settings import SearchSettings
from nasforge.run.result import read_result
from nasforge.run.rundir import RunDir
from nasforge.spaces.registry import get_space


@pytest.fixture(scope="module")
def tiny():
    data = load_dataset("digits", subset=200, seed=0)
    space = get_space("nsc-fast")
    archs = []
    for i in range(20):  # two distinct blocks of different cost
        a = space.sample(rng_for(0, i))
        if a not in archs:
            archs.append(a)
    cm = CostModel(space, data.num_classes, data.input_shape)
    archs.sort(key=lambda a: cm.counts(a)[0])
    assert cm.counts(archs[0])[0] < cm.counts(archs[-1])[0]
    return data, space, cm, [archs[0], archs[-1]]


@pytest.fixture(scope="module")
def trained(tiny):
    data, space, _, archs = tiny
    return fin.train_final(space, archs[0], data, epochs=1)


def test_price_dedupes_and_checks_the_targets(tiny):
    _, _, cm, (small, big) = tiny
    priced = fin.price([big, small, big], cm, Targets(flops=cm.counts(small)[0]))
    assert [c.arch for c in priced] == [big, small]
    assert [c.meets for c in priced] == [False, True]
    assert priced[1].costs == cm.costs(small)
    assert all(c.costs.latency_ms is None for c in priced)  # no table, no latency target


def test_a_latency_target_is_checked_on_the_cost_models_latency(tiny):
    data, space, cm, (small, _) = tiny
    with pytest.raises(UserError, match="latency target needs a latency"):
        fin.price([small], cm, Targets(latency_ms=1.0))  # no table, no measurement: refused
    measured = CostModel(space, data.num_classes, data.input_shape,
                         latency=MeasuredLatency(space, data.num_classes, data.input_shape))
    (c,) = fin.price([small], measured, Targets(latency_ms=1e-6))
    assert c.latency_measured and c.costs.latency_ms > 1e-6 and not c.meets
    assert c.row()["measured_ms"] == c.costs.latency_ms and c.row()["predicted_ms"] is None
    (c,) = fin.price([small], measured, Targets(latency_ms=1e6))
    assert c.meets


def test_rank_trains_the_candidates_and_resumes_from_candidates_json(tiny, tmp_path,
                                                                     monkeypatch):
    data, _, cm, archs = tiny
    rd = RunDir(tmp_path)
    r = fin.rank(archs, data, cm, Targets(), epochs=1, run_dir=rd)
    saved = json.loads((tmp_path / "candidates.json").read_text())
    assert len(saved) == len(r.ranked) == 2
    best = fin.pick_ranked(saved, len(data.val))["arch"]
    assert json.dumps(r.best.genes) == json.dumps(best)

    def no_training(*a, **k):
        raise AssertionError("a recorded candidate was trained again")

    monkeypatch.setattr(fin, "train_model", no_training)
    again = fin.rank(archs, data, cm, Targets(), epochs=1, run_dir=rd)
    assert again.best == r.best and again.ranked == saved
    # one candidate, or no ranking epochs: nothing to train
    assert fin.rank(archs, data, cm, Targets(), epochs=0).best == archs[0]
    assert fin.rank(archs[1:], data, cm, Targets(), epochs=1).best == archs[1]


def test_a_ranking_tie_goes_to_the_candidate_that_computes_most():
    """Within one binomial standard error of the best validation accuracy (0.0092 at p 0.78
    on 2,000 images) the larger model wins; beyond it, the better accuracy does."""
    small = {"arch": ["a"], "macs": 2_500_000, "val_acc": 0.7845}
    big = {"arch": ["b"], "macs": 4_350_000, "val_acc": 0.7835}
    assert fin.pick_ranked([small, big], 2000) is big
    assert fin.pick_ranked([small, {**big, "val_acc": 0.7745}], 2000) is small  # 1.1 SE
    assert fin.pick_ranked([small, big], 200_000) is small  # SE 0.0009: not a tie
    assert fin.pick_ranked([{**small, "val_acc": 0.70}, big], 2000) is big


def test_a_budgeted_rank_trains_only_the_candidates_it_can_give_their_steps(tiny, monkeypatch):
    data, _, cm, archs = tiny
    p = fin.step_probe(archs[0], data, cm, None, epochs=1)
    assert p.per_step > 0 and p.eval_s > 0 and p.max_steps >= 1
    trained = []
    real = fin.train_model

    def counting(model, data_, recipe, **k):
        trained.append((recipe.budget_s, recipe.steps))
        return real(model, data_, recipe, **k)

    monkeypatch.setattr(fin, "train_model", counting)
    probes = []
    ten = fin.StepProbe(per_step=10.0 / fin.MIN_RANK_STEPS, eval_s=0.0, max_steps=10**6)
    monkeypatch.setattr(fin, "step_probe", lambda *a, **k: probes.append(1) or ten)
    r = fin.rank(archs, data, cm, Targets(), epochs=1, budget_s=fin.MIN_RANK_S / 2)
    assert trained == [] and probes == [] and r.best == archs[0]  # too short even to time one
    r = fin.rank(archs, data, cm, Targets(), epochs=1, budget_s=15.0)
    assert trained == [] and r.best == archs[0] and r.ranked == []  # one fits: no ranking
    monkeypatch.setattr(fin, "step_probe", lambda *a, **k: fin.StepProbe(
        per_step=0.001, eval_s=0.0, max_steps=p.max_steps))  # each fits its epoch
    r = fin.rank(archs, data, cm, Targets(), epochs=1, budget_s=25.0)
    assert len(trained) == 2 and len(r.ranked) == 2  # both fit
    assert all(b is not None and b > 0 for b, _ in trained)
    assert [s for _, s in trained] == [p.max_steps] * 2  # the steps are capped at the epochs'


def test_equal_steps_fit_the_seconds_and_every_candidate_gets_them():
    cheap = fin.StepProbe(per_step=0.01, eval_s=1.0, max_steps=10**6)
    dear = fin.StepProbe(per_step=0.03, eval_s=1.0, max_steps=10**6)
    s = fin.equal_steps([cheap, dear], 100.0)
    assert s == int((fin.RANK_SLACK * 100.0 - 2.0) / 0.04)
    assert cheap.seconds(s) + dear.seconds(s) <= 100.0  # the slack included, they fit
    assert fin.equal_steps([cheap], 1e9) == 10**6  # never more than the epochs hold
    assert fin.equal_steps([dear], 0.5) == 1


def test_a_budgeted_rank_gives_a_bigger_candidate_the_same_steps(tiny, monkeypatch):
    data, _, cm, (small, big) = tiny
    steps = []
    real = fin.train_model

    def counting(model, data_, recipe, **k):
        m, res = real(model, data_, recipe, **k)
        steps.append(recipe.steps)
        return m, res

    monkeypatch.setattr(fin, "train_model", counting)
    r = fin.rank([small, big], data, cm, Targets(), epochs=50, budget_s=20.0)
    assert len(r.ranked) == 2 and steps[0] == steps[1] >= fin.MIN_RANK_STEPS
    assert [x["steps"] for x in r.ranked] == steps  # recorded, so a resume keeps them


def test_rank_refuses_when_no_candidate_meets_the_target(tiny):
    data, _, cm, archs = tiny
    with pytest.raises(UserError, match="no derived candidate meets the target "
                                        r"\(params=1\).*Relax the target"):
        fin.rank(archs, data, cm, Targets(params=1), epochs=1)


def test_train_final_export_and_measure_alone(tiny, trained, tmp_path):
    data, _, cm, (small, _) = tiny
    model, res = trained
    assert res.epochs == 1 and 0.0 <= res.test_acc <= 1.0
    assert not model.training and next(model.parameters()).device.type == "cpu"
    ex = fin.export_model(model, small, data.input_shape, tmp_path / "out")
    for f in ("arch.json", "model.pt", "model.ts"):
        assert (tmp_path / "out" / f).is_file(), f
    assert ex["torchscript_max_diff"] < 1e-4
    sd = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
    m = fin.measure(model, small, cm, Targets(peak_memory_mb=100.0))
    assert m.latency_ms > 0 and m.costs.macs == cm.counts(small)[0]
    assert m.costs.peak_memory == cm.peak_memory(small) > 0
    assert fin.measure(model, small, cm, Targets()).costs.peak_memory is None
    assert m.device.startswith("cpu: ") and m.predicted_ms is None  # no table


def test_write_outputs_alone(tiny, trained, tmp_path):
    data, space, cm, (small, _) = tiny
    model, res = trained
    m = fin.measure(model, small, cm, Targets())
    ranking = fin.rank([small], data, cm, Targets())
    result = fin.result_of(method="random", space=space.name, dataset="digits", seed=0,
                           arch=small, train=res, m=m, search_seconds=1.5, search_epochs=2)
    fin.write_outputs(RunDir(tmp_path), result, run_info={"note": 1}, ranking=ranking)
    assert read_result(tmp_path / "result.json") == result
    assert json.loads((tmp_path / "run.json").read_text()) == {"note": 1}
    report = (tmp_path / "report.md").read_text()
    assert f"{res.test_acc:.4f}" in report and "| 0 |" in report


def test_finish_composes_the_stages_and_records_peak_memory(tiny, tmp_path):
    data, space, cm, archs = tiny
    s = SearchSettings(method="random", out=str(tmp_path), candidate_epochs=0, train_epochs=1,
                       progress=False, peak_memory_mb=100.0)
    rd = RunDir.create(tmp_path / "run", s.to_dict())
    f = fin.Finish(space=space, candidates=archs, cost_model=cm,
                   targets=Targets.from_settings(s), search_seconds=0.5, search_epochs=1)
    result = fin.finish(s, rd, data, f)
    assert read_result(rd.file("result.json")) == result
    assert result["arch"]["genes"] == json.loads(json.dumps(archs[0].genes))
    run = json.loads(rd.file("run.json").read_text())
    assert run["peak_memory_mb"] == pytest.approx(cm.peak_memory(archs[0]) / 2**20)
    assert all("peak_memory_mb" in r for r in run["candidates"])
    assert "peak activation memory" in rd.file("report.md").read_text()
