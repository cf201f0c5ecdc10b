"""``nasforge report``: real tiny runs of a differentiable (FBNet) and a sample-based (BlockQNN)
method, every promised figure written and non-empty, the page parses and embeds everything,
and (when Chromium is installed) renders to a non-blank screenshot."""

import base64
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from nasforge.cli import main
from nasforge.errors import UserError

pytest.importorskip("matplotlib")

FB = ["search", "fbnet", "--dataset", "digits", "--subset", "100", "--batch-size", "40",
      "--epochs", "2", "--cost", "flops", "--samples", "2", "--candidate-epochs", "1",
      "--train-epochs", "1", "--no-progress"]
BQ = ["search", "blockqnn", "--dataset", "digits", "--subset", "100", "--space", "nsc-fast",
      "--max-trials", "2", "--eval-epochs", "1", "--eval-budget", "5", "--top", "1",
      "--train-epochs", "1",
      "--no-progress"]
PROMISED = {"fbnet": {"tradeoff.png", "distribution.png", "theta.png", "curves.png",
                      "budget.png"},
            "blockqnn": {"tradeoff.png", "reward.png", "budget.png"}}
PNG = b"\x89PNG\r\n\x1a\n"


def _run(base, name, args):
    rd = base / name
    assert main([*args, "--out", str(rd)]) == 0
    assert main(["report", str(rd)]) == 0
    return rd


@pytest.fixture(scope="module")
def fb_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("report-fb"), "fbnet", FB)


@pytest.fixture(scope="module")
def bq_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("report-bq"), "blockqnn", BQ)


@pytest.fixture
def runs(request):
    """Only the run a test asks for (each tiny run is made once per module, on first use)."""
    method = request.node.callspec.params.get("method") if hasattr(request.node, "callspec") \
        else None
    return {m: request.getfixturevalue(f) for m, f in (("fbnet", "fb_run"),
                                                       ("blockqnn", "bq_run"))
            if method in (None, m)}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "data", "srcset", "poster") or (k == "xlink:href"):
                self.refs.append((tag, k, v or ""))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fbnet", "blockqnn"])
def test_every_promised_figure_is_written_and_embedded(runs, method):
    rd = runs[method]
    page = (rd / "report.html").read_text()
    p = _Page()
    p.feed(page)
    p.close()
    assert "svg" in p.tags and "table" in p.tags
    # only embedded images: every src is a data URI, nothing else is fetched or linked
    assert p.refs and all(k == "src" and v.startswith("data:image/png;base64,")
                          for _, k, v in p.refs), [r[:2] + (r[2][:40],) for r in p.refs]
    assert "<link" not in page and "<script" not in page and "url(http" not in page
    embedded = {base64.b64decode(v.split(",", 1)[1]) for _, _, v in p.refs}
    for f in PROMISED[method]:
        data = (rd / f).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, f
        assert data in embedded, f"{f} is not the image the page shows"
    svg = (rd / "arch.svg").read_text()
    assert svg.startswith("<svg") and svg in page
    for key in ("test acc", "Device fingerprint", "Configuration", "result.json", "Budget"):
        assert key in page, key


@pytest.mark.slow
def test_fbnet_diagram_has_one_box_per_layer_with_its_block(fb_run):
    import json

    rd = fb_run
    genes = json.loads((rd / "result.json").read_text())["arch"]["genes"]
    svg = (rd / "arch.svg").read_text()
    assert svg.count("<rect") == len(genes) + 2  # stem, layers, head
    for g in set(genes):
        assert f">{g}<" in svg
    assert "stride 2" in svg


@pytest.mark.slow
def test_blockqnn_report_reads_every_trial_of_the_store(bq_run):
    from nasforge.report import evidence

    ev = evidence.load(bq_run)
    done = [t for t in ev.trials if t["status"] == "done"]
    assert len(done) == ev.search["trials_done"] >= 1
    pts = [p for p in evidence.tradeoff_points(ev) if p["source"] == "trial"]
    assert len(pts) == len(done) and all(p["val_acc"] is not None for p in pts)
    assert "<line" in (bq_run / "arch.svg").read_text()  # the DAG's edges


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
def test_page_renders_in_headless_chromium(runs, method, tmp_path):
    import matplotlib.image as mpimg
    import numpy as np

    shot = tmp_path / f"{method}.png"
    page = runs[method] / "report.html"
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


@pytest.mark.slow
def test_live_report_of_a_run_without_result_json(bq_run, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(bq_run, live)
    (live / "result.json").unlink()
    for f in live.glob("*.png"):
        f.unlink()
    assert main(["report", str(live)]) == 2  # a finished-run report needs result.json
    assert main(["report", str(live), "--live"]) == 0
    assert (live / "reward.png").read_bytes().startswith(PNG)
    assert "has not finished" in (live / "report.html").read_text()


def test_compare_writes_one_table_and_one_pareto_plot(tmp_path):
    """Two hand-made finished runs (their result.json only) compared side by side."""
    import json


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
