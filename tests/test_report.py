"""``nasforge report`` for a small real run of every method: every promised figure written,
non-empty and the very image the page embeds; the page parses and references only embedded
images; the derived architecture drawn (FBNet boxes, BlockQNN DAG, cell DAGs); a live report of
a run interrupted mid-search; and (when Chromium is installed) the FBNet and BlockQNN pages
render to non-blank screenshots.

Each run is made once per module, on first use, by the real search loops on the smallest
spaces (1–2 steps or trials); only the finish stage's exports (TorchScript/ONNX, tested
elsewhere) are skipped, the final latency is measured with 5 repeats instead of 100 and
JointNAS's predictor fits and genetic fine stage are the smallest."""

import base64
import functools
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from nasforge.cli import main
from nasforge.errors import UserError

pytest.importorskip("matplotlib")

TINY = ["--dataset", "digits", "--subset", "32", "--train-epochs", "1", "--candidate-epochs",
        "0", "--no-progress"]
SUPERNET = [*TINY, "--batch-size", "8", "--epochs", "1", "--epoch-steps", "1"]
SAMPLED = [*TINY, "--space", "nsc-fast", "--max-trials", "2", "--eval-epochs", "1",
           "--eval-budget", "2", "--eval-batch-size", "16", "--top", "1"]
NB201 = "nb201-report-tiny"
DARTS = "darts-report-tiny"
RUNS = {
    "fbnet": ["fbnet", *SUPERNET, "--epochs", "2", "--space", "fbnet-small", "--cost", "flops",
              "--samples", "1"],
    "fbnetv2": ["fbnetv2", *SUPERNET, "--samples", "1"],
    "densenas": ["densenas", *SUPERNET, "--cost", "flops", "--samples", "1"],
    "darts": ["darts", *SUPERNET, "--space", DARTS, "--order", "1"],
    "enas": ["enas", *TINY, "--batch-size", "16", "--epochs", "2", "--epoch-steps", "1",
             "--space", NB201, "--controller-steps", "1", "--controller-aggregate", "2",
             "--samples", "2"],
    "jointnas": ["jointnas", *TINY, "--max-trials", "2", "--eval-budget", "0.5", "--flops",
                 "2e6", "--free-samples", "20", "--early-stop", "0.25", "--selector-archs", "2",
                 "--batch", "2", "--top", "1", "--eval-batch-size", "16",
                 "--train-budget", "0.5"],
    **{m: [m, *SAMPLED] for m in ("blockqnn", "evolution", "reinforce", "random")},
}
SUPERNET_FIGS = {"tradeoff.png", "distribution.png", "curves.png", "budget.png"}
SAMPLED_FIGS = {"tradeoff.png", "reward.png", "budget.png"}
PROMISED = {"fbnet": SUPERNET_FIGS | {"theta.png"}, "fbnetv2": SUPERNET_FIGS,
            "densenas": SUPERNET_FIGS, "darts": SUPERNET_FIGS | {"alpha.png"},
            "enas": SUPERNET_FIGS | {"alpha.png"}, "jointnas": SAMPLED_FIGS,
            **{m: SAMPLED_FIGS for m in ("blockqnn", "evolution", "reinforce", "random")}}
PNG = b"\x89PNG\r\n\x1a\n"


def _register_tiny_cells():
    from nasforge.spaces import darts as ds
    from nasforge.spaces import nb201 as ns

    for reg, cfg in ((ns.CONFIGS, ns.NB201Config(NB201, 28, 1, channels=4, cells_per_stage=1)),
                     (ds.CONFIGS, ds.DartsConfig(DARTS, 28, 1, cells=3, channels=4,
                                                 final_cells=3, final_channels=4))):
        if cfg.name not in reg:
            reg.register(cfg.name, cfg)


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    """``make_run(method)``: the run directory of a tiny real run of ``method``, reported."""
    from nasforge.cost import measure as cm
    from nasforge.methods import finish, jointnas

    _register_tiny_cells()
    base, made = tmp_path_factory.mktemp("report-runs"), {}

    def no_export(model, arch, input_shape, out_dir):
        arch.save(out_dir / "arch.json")
        return {"skipped": "report tests (exports are tested in test_export_trainer)"}

    def quick_latency(module, input_shape, **kw):
        return cm.measure_latency(module, input_shape, **{**kw, "warmup": 2, "repeats": 5})

    def make(method):
        if method not in made:
            rd = base / method
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(finish, "export_model", no_export)
                mp.setattr(jointnas, "export_model", no_export)
                mp.setattr(finish, "measure_latency", quick_latency)
                # JointNAS's smallest predictor fits and fine stage (not CLI options)
                mp.setattr(jointnas, "FitConfig", functools.partial(
                    jointnas.FitConfig, frozen_epochs=2, end_to_end_epochs=2))
                mp.setattr(jointnas, "GeneticConfig", functools.partial(
                    jointnas.GeneticConfig, population=8, children=8, patience=1,
                    max_generations=3, init_samples=32))
                assert main(["search", *RUNS[method], "--out", str(rd)]) == 0
            assert main(["report", str(rd)]) == 0
            made[method] = rd
        return made[method]

    yield make
    from nasforge.spaces import darts as ds
    from nasforge.spaces import nb201 as ns

    ns.CONFIGS.unregister(NB201)
    ds.CONFIGS.unregister(DARTS)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "data", "srcset", "poster") or (k == "xlink:href"):
                self.refs.append((tag, k, v or ""))


def _embedded(page):
    p = _Page()
    p.feed(page)
    p.close()
    # only embedded images: every src is a data URI, nothing else is fetched or linked
    assert p.refs and all(k == "src" and v.startswith("data:image/png;base64,")
                          for _, k, v in p.refs), [r[:2] + (r[2][:40],) for r in p.refs]
    assert "<link" not in page and "<script" not in page and "url(http" not in page
    return p, {base64.b64decode(v.split(",", 1)[1]) for _, _, v in p.refs}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(RUNS))
def test_every_promised_figure_is_written_and_embedded(make_run, method):
    from nasforge.report import evidence
    from nasforge.report.html import expected_figures

    rd = make_run(method)
    page = (rd / "report.html").read_text()
    p, embedded = _embedded(page)
    assert "svg" in p.tags and "table" in p.tags
    written = {f.name for f in rd.glob("*.png")}
    assert PROMISED[method] <= written, PROMISED[method] - written
    assert set(expected_figures(evidence.load(rd))) == written  # nothing drawn unannounced
    for f in written:
        data = (rd / f).read_bytes()
        assert data.startswith(PNG) and len(data) > 3000, f
        assert data in embedded, f"{f} is not the image the page shows"
    assert len(embedded) == len(written)
    svg = (rd / "arch.svg").read_text()
    assert svg.startswith("<svg") and svg in page and "<rect" in svg
    for key in ("test acc", "Device fingerprint", "Configuration", "result.json", "Budget"):
        assert key in page, key


@pytest.mark.slow
def test_fbnet_diagram_has_one_box_per_layer_with_its_block(make_run):
    rd = make_run("fbnet")
    genes = json.loads((rd / "result.json").read_text())["arch"]["genes"]
    svg = (rd / "arch.svg").read_text()
    assert svg.count("<rect") == len(genes) + 2  # stem, layers, head
    for g in set(genes):
        assert f">{g}<" in svg
    assert "stride 2" in svg


@pytest.mark.slow
@pytest.mark.parametrize("method", ["darts", "enas"])
def test_cell_runs_draw_their_cells_as_dags_with_every_op(make_run, method):
    """DARTS (normal + reduction cell) and ENAS (here the NAS-Bench-201 cell): one labelled
    curve per kept edge, every op of the derived genotype written on the diagram."""
    from nasforge.models.nb201 import EDGES

    rd = make_run(method)
    genes = json.loads((rd / "result.json").read_text())["arch"]["genes"]
    svg = (rd / "arch.svg").read_text()
    edges = svg.split("</defs>", 1)[1].count("<path")  # the arrow marker's path is in <defs>
    if isinstance(genes, str):  # NAS-Bench-201
        ops = [e.split("~")[0] for node in genes.split("+") for e in node.strip("|").split("|")]
        kept = [op for op in ops if op != "none"]
        assert len(ops) == len(EDGES) and edges == len(kept)
    else:
        kept = [op for cell in ("normal", "reduce") for op, _ in genes[cell]]
        concat = len(genes["normal_concat"]) + len(genes["reduce_concat"])
        assert edges == len(kept) + concat and "reduce cell" in svg
    for op in set(kept):
        assert f">{op}<" in svg


@pytest.mark.slow
def test_sampled_report_reads_every_trial_of_the_store(make_run):
    from nasforge.report import evidence

    rd = make_run("blockqnn")
    ev = evidence.load(rd)
    done = [t for t in ev.trials if t["status"] == "done"]
    assert len(done) == ev.search["trials_done"] >= 1
    pts = [p for p in evidence.tradeoff_points(ev) if p["source"] == "trial"]
    assert len(pts) == len(done) and all(p["val_acc"] is not None for p in pts)
    assert "<line" in (rd / "arch.svg").read_text()  # the DAG's edges
    trials = [r for r in ev.scalars if r["kind"] == "trial"]  # logged as they finished
    assert sorted(r["step"] for r in trials) == sorted(t["id"] for t in done)
    assert trials[-1]["best"] == max(t["metrics"]["reward"] for t in done)


@pytest.mark.slow
def test_live_report_of_a_search_interrupted_after_two_epochs(tmp_path, monkeypatch):
    """A supernet search stopped after its 2nd of 4 epochs (no search.json, no result.json:
    the directory as a running search leaves it), one scalar line half written: the live
    report draws the distribution and curves of the 2 epochs logged so far."""
    import nasforge
    from nasforge.report import evidence
    from nasforge.strategies.bilevel import SupernetTrainer

    class Stop(Exception):
        pass

    save = SupernetTrainer.save

    def save_then_stop(self):
        save(self)
        if self.state.epoch == 2:
            raise Stop

    monkeypatch.setattr(SupernetTrainer, "save", save_then_stop)
    rd = tmp_path / "live"
    with pytest.raises(Stop):
        nasforge.search("fbnet", dataset="digits", subset=32, batch_size=8, epochs=4,
                        epoch_steps=1, space="fbnet-small", cost="flops", out=str(rd),
                        progress=False)
    assert not (rd / "search.json").exists() and not (rd / "result.json").exists()
    with open(rd / "scalars.jsonl", "a") as fh:
        fh.write('{"kind": "supernet", "step": 2, "w_lo')  # a write in progress
    assert main(["report", str(rd)]) == 2  # a finished-run report needs result.json
    assert main(["report", str(rd), "--live"]) == 0
    ev = evidence.load(rd, live=True)
    assert [h["epoch"] for h in ev.history] == [0, 1]
    assert len(evidence.distributions(ev)[0][2]) == 2  # two epochs of each layer's p_θ
    for f in ("distribution.png", "curves.png", "live.png"):
        assert (rd / f).read_bytes().startswith(PNG), f
    page = (rd / "report.html").read_text()
    assert "has not finished" in page
    _embedded(page)


@pytest.mark.slow
def test_live_report_of_a_sampled_run_mid_search(make_run, tmp_path):
    """The trial store and scalars of a sample-based run, before search.json and
    result.json exist."""
    live = tmp_path / "live"
    shutil.copytree(make_run("blockqnn"), live)
    for f in ["result.json", "search.json", "run.json", *[p.name for p in live.glob("*.png")]]:
        (live / f).unlink()
    assert main(["report", str(live), "--live"]) == 0
    for f in ("reward.png", "live.png"):
        assert (live / f).read_bytes().startswith(PNG), f
    assert "has not finished" in (live / "report.html").read_text()


def _validation(space, fingerprint, n=6):
    """A ``nasforge lut validate`` report (its format, cost/validate.py) with ``n`` archs."""
    archs = [{"genes": [], "measured_us": 1000.0 * (1 + i), "plain_us": 1150.0 * (1 + i),
              "improved_us": 1020.0 * (1 + i)} for i in range(n)]
    return {"space": space, "target": "cpu", "fingerprint": fingerprint, "statistic": "min",
            "samples": n, "scores": {"plain": {"mape": 15.0, "within_10": 0.0,
                                               "kendall_tau": 1.0},
                                     "improved": {"mape": 2.0, "within_10": 1.0,
                                                  "kendall_tau": 1.0}}, "archs": archs}


@pytest.mark.slow
def test_lut_predicted_vs_measured_when_a_validation_exists(make_run, tmp_path, monkeypatch):
    """A run that used a latency table, validated in the per-device cache: the page shows
    lut.png and the predictors' scores; another table's validation is not taken for it."""
    from nasforge.cost.lut import LatencyTable, cache_path
    from nasforge.report import evidence

    monkeypatch.setenv("NASFORGE_CACHE", str(tmp_path / "cache"))
    rd = tmp_path / "run"
    shutil.copytree(make_run("fbnet"), rd)
    for f in ("search.json", "run.json", "scalars.jsonl"):  # only the figures this test is about
        (rd / f).unlink()
    fp = {"target": "cpu", "cpu": "test", "threads": 1}
    LatencyTable("fbnet-small", "cpu", fp, {"a": 1.0}).save(rd / "lut.json")
    cached = cache_path("fbnet-small", fp, "min")
    cached.parent.mkdir(parents=True, exist_ok=True)
    other = cached.with_name(cached.stem + ".validate.json")
    other.write_text(json.dumps(_validation("fbnet-small", {**fp, "threads": 2})))
    assert evidence.lut_validation(rd) is None  # another device's validation
    other.write_text(json.dumps(_validation("fbnet-small", fp)))
    assert main(["report", str(rd)]) == 0
    assert (rd / "lut.png").read_bytes().startswith(PNG)
    page = (rd / "report.html").read_text()
    assert "LUT validation" in page and "MAPE" in page and ">15<" in page
    assert evidence.lut_points(evidence.lut_validation(rd))["plain"][0] == (1.0, 1.15)


def test_nasnet_and_nb201_cells_are_drawn_as_dags():
    import numpy as np

    from nasforge.models.nasnet import unused
    from nasforge.report.diagram import arch_svg
    from nasforge.spaces.registry import get_space

    space = get_space("nasnet")
    genes = space.sample(np.random.default_rng(0)).to_dict()["genes"]
    svg = arch_svg("nasnet", genes).split("</defs>", 1)[1]  # the arrow marker's path
    n_out = sum(len(unused(genes[c])) for c in ("normal", "reduce"))
    assert svg.count("<path") == 2 * 2 * 5 + n_out  # 2 op edges per block, + concat edges
    assert "block 4 (+)" in svg and "reduce cell" in svg
    for op in {b[k] for c in ("normal", "reduce") for b in genes[c] for k in (2, 3)}:
        assert f">{op}<" in svg
    cell = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|none~2|"
    svg = arch_svg("nb201-fmnist", cell).split("</defs>", 1)[1]
    assert svg.count("<path") == 4 and ">none<" not in svg and ">avg_pool_3x3<" in svg


def test_pareto_front_keeps_only_non_dominated_points():
    from nasforge.report.plots import front

    pts = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (3.0, 0.6), (4.0, 0.9), (0.5, 0.1)]
    assert front(pts) == [(0.5, 0.1), (1.0, 0.5), (2.0, 0.7), (4.0, 0.9)]


def test_report_of_a_missing_run_dir_is_a_user_error(tmp_path):
    from nasforge.report.html import write_html_report

    with pytest.raises(UserError, match="does not exist"):
        write_html_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="result.json"):
        write_html_report(tmp_path / "empty")
    assert main(["report", str(tmp_path / "nope")]) == 2


def test_missing_matplotlib_fails_with_the_install_hint(tmp_path, monkeypatch):
    from nasforge.report import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(UserError, match="plot"):
        plots._plt()


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") \
        or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (apt-get install "
                                                "chromium; .ci/run installs it)")
@pytest.mark.parametrize("method", ["fbnet", "blockqnn"])
def test_page_renders_in_headless_chromium(make_run, method, tmp_path):
    import matplotlib.image as mpimg
    import numpy as np

    shot = tmp_path / f"{method}.png"
    page = make_run(method) / "report.html"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1400,2000",
                    page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2000, 1400)
    grey = img.mean(-1)
    # a blank (white) or failed page has ~zero variance; the figures and the diagram do not
    assert grey.std() > 0.05
    assert (grey < 0.9).mean() > 0.02  # a real share of the page is drawn, not just text
    colour = np.abs(img - img.mean(-1, keepdims=True)).max(-1)
    assert (colour > 0.15).mean() > 0.005  # coloured figures/diagram boxes rendered


def test_compare_writes_one_table_and_one_pareto_plot(tmp_path):
    """Two hand-made finished runs (their result.json only) compared side by side."""
    base = {"space": "fbnet-small", "dataset": "digits", "seed": 0,
            "arch": {"space": "fbnet-small", "genes": ["skip"] * 5}, "params": 10, "flops": 20,
            "search_seconds": 1.0, "train_seconds": 1.0, "epochs": {"search": 1, "train": 1}}
    for name, acc, ms in (("a", 0.5, 1.0), ("b", 0.7, 2.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps(
            {**base, "method": name, "val_acc": acc, "test_acc": acc,
             "latency_ms": {"predicted": None, "measured": ms, "device": "cpu: x"}}))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 str(tmp_path / "cmp")]) == 0
    page = (tmp_path / "cmp" / "compare.html").read_text()
    p = _Page()
    p.feed(page)
    assert [k for _, k, _ in p.refs] == ["src"] and p.refs[0][2].startswith("data:image/png")
    assert p.tags.count("tr") == 3 + 2 and "0.7" in page  # header + 2 runs; 2 device rows
    assert (tmp_path / "cmp" / "compare.png").read_bytes().startswith(PNG)
    assert main(["compare", str(tmp_path / "a")]) == 2
