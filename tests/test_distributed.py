"""Data-parallel supernet search on torch.distributed: 2 gloo processes on 127.0.0.1 (CPU).

- every rank holds the same θ and w after k steps, while each draws its own Gumbel noise
  (FBNet), and the same α with DenseNAS's op sampling and its rescale of the drawn ops;
  only rank 0 writes the checkpoint, which carries both ranks' noise streams;
- 2 processes = 1 process at the same global batch (deterministic mode: a supernet without
  sampling noise and without batch statistics; tolerance 1e-5 absolute on every parameter,
  float32 summation order);
- ``kill -9`` of one rank of ``nasforge search --nproc 2`` ends the command non-zero with a
  one-line error within 15 s, no rank left running, and ``--resume`` (on 1 process) finishes it.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasforge import distributed
from nasforge.cost.loss import CostLoss
from nasforge.spaces.dense import DenseSpace, DenseSpec
from nasforge.strategies.bilevel import SupernetConfig, SupernetTrainer
from nasforge.supernets.densenas import DenseSupernet
from nasforge.testing import tiny_dataset, tiny_fbnet_supernet

TOL = 1e-5


def _fbnet_trainer(ckpt: Path | None, dist: distributed.Context) -> SupernetTrainer:
    net = tiny_fbnet_supernet()
    cfg = SupernetConfig(epochs=2, warmup_epochs=1, batch_size=16)  # 3 w steps an epoch
    return SupernetTrainer(net, tiny_dataset(n_train=48, n_val=24, size=12), cfg,
                           CostLoss("paper"), seed=0, checkpoint=ckpt, progress=False,
                           dist=dist)


def _fbnet_rank(out: str) -> None:
    """One rank: the tiny FBNet supernet, 2 epochs (6 w steps, 3 θ steps), every checkpoint
    write recorded."""
    import nasforge.files as files

    ctx = distributed.init("cpu")
    writes: list[str] = []
    real = files.save_checkpoint
    files.save_checkpoint = lambda path, sd: (writes.append(str(path)), real(path, sd))
    t = _fbnet_trainer(Path(out) / "s.ckpt", ctx)
    g = torch.Generator()
    g.set_state(t.gumbel_gen.get_state())
    draw = torch.rand(4, generator=g)  # the first draws of this rank's noise stream
    t.fit()
    dense = _dense_trainer(ctx)
    dense.fit()
    torch.save({"net": t.net.state_dict(), "draw": draw, "writes": writes,
                "history": t.state.history,
                "alpha": [a.detach() for a in dense.net.arch_parameters()]},
               Path(out) / f"rank{ctx.rank}.pt")


def _dense_trainer(dist: distributed.Context) -> SupernetTrainer:
    """DenseNAS with the official op sampling: its θ-step hook rescales the drawn ops' α."""
    spec = DenseSpec("dense-tiny", 16, 8, 2, widths=(8, 8, 12, 16, 16),
                     sizes=(8, 8, 8, 4, 4), layers=(0, 1, 2, 1, 1), last_channels=24,
                     connect=3, stages=(0, 1, 1, 2, 2, 3), in_channels=1)
    torch.manual_seed(0)
    net = DenseSupernet(DenseSpace(spec), 5, 1, cost="flops")
    net.set_op_sampling(weight_ops=1, arch_ops=2)
    cfg = SupernetConfig(epochs=2, warmup_epochs=1, batch_size=16, w_lr=0.2, theta_lr=3e-2,
                         tau0=1.0, tau_decay=0.0)
    return SupernetTrainer(net, tiny_dataset(32, 32, 16, size=16, num_classes=5), cfg,
                           CostLoss(form="additive", lam=0.15, base=15), seed=0,
                           progress=False, dist=dist)


def test_two_ranks_hold_identical_theta_and_weights_and_only_rank_0_writes(tmp_path):
    distributed.launch(2, _fbnet_rank, (str(tmp_path),), threads=1)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(r0["draw"], r1["draw"])  # each rank its own noise stream
    init = _fbnet_trainer(None, distributed.SINGLE).net.state_dict()
    assert not torch.equal(r0["net"]["theta"], init["theta"])  # θ moved in epoch 2
    for k, v in r0["net"].items():
        if "running" not in k and "num_batches" not in k:  # BN statistics stay per rank
            assert torch.equal(v, r1["net"][k]), k
    assert r0["history"] == r1["history"]  # metrics reduced over the ranks
    start = [a.detach() for a in _dense_trainer(distributed.SINGLE).net.arch_parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(r0["alpha"], start))
    assert all(torch.equal(a, b) for a, b in zip(r0["alpha"], r1["alpha"]))  # DenseNAS too
    ckpt = str(tmp_path / "s.ckpt")
    assert r0["writes"] == [ckpt, ckpt] and r1["writes"] == []
    sd = torch.load(ckpt, weights_only=True)
    assert sd["world_size"] == 2 and len(sd["rank_gens"]) == 2
    assert not torch.equal(sd["rank_gens"][0]["gumbel"], sd["rank_gens"][1]["gumbel"])


class MixedLinear(nn.Module):
    """A test supernet without sampling noise or batch statistics (the deterministic mode in
    which N processes equal one): two layers, each a softmax(α)-weighted mix of 3 linear ops."""

    uses_tau = True

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.ModuleList(nn.Linear(144, 16) for _ in range(3))
        self.l2 = nn.ModuleList(nn.Linear(16, 10) for _ in range(3))
        self.alpha = nn.Parameter(torch.zeros(2, 3))
        self.register_buffer("cost", torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))

    def weight_parameters(self):
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def arch_parameters(self):
        return [self.alpha]

    def sample_relaxation(self, generator, tau, hard, phase="weight"):
        return torch.softmax(self.alpha / tau, -1)

    def forward(self, x, w):
        h = sum(w[0, i] * F.relu(op(x.flatten(1))) for i, op in enumerate(self.l1))
        return sum(w[1, i] * op(h) for i, op in enumerate(self.l2))

    def expected_cost(self, w):
        return (w * self.cost).sum()

    def snapshot_arch(self):
        return None

    def after_arch_step(self, sample, before):
        pass

    def arch_state(self):
        return {}

    def concentration(self):
        p = torch.softmax(self.alpha.detach(), -1)
        return {"max_prob": float(p.max(-1).values.mean()),
                "entropy": float(-(p * p.log()).sum(-1).mean())}


def _linear_trainer(dist: distributed.Context) -> SupernetTrainer:
    torch.manual_seed(0)
    cfg = SupernetConfig(epochs=3, warmup_epochs=1, batch_size=16, theta_lr=0.05)
    return SupernetTrainer(MixedLinear(), tiny_dataset(n_train=48, n_val=32, size=12), cfg,
                           CostLoss("paper"), seed=0, progress=False, dist=dist)


def _linear_rank(out: str) -> None:
    ctx = distributed.init("cpu")
    t = _linear_trainer(ctx)
    t.fit()
    if ctx.is_main:
        torch.save({"net": t.net.state_dict(), "history": t.state.history},
                   Path(out) / "two.pt")


def test_two_ranks_equal_one_rank_at_the_same_global_batch(tmp_path):
    distributed.launch(2, _linear_rank, (str(tmp_path),), threads=1)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    one = _linear_trainer(distributed.SINGLE)
    one.fit()  # 9 w steps, 6 θ steps at global batch 16
    start = _linear_trainer(distributed.SINGLE).net.state_dict()
    assert (one.net.alpha - start["alpha"]).abs().max() > 1e-3  # θ did move
    for k, v in one.net.state_dict().items():
        assert (v - two["net"][k]).abs().max() <= TOL, k
    for a, b in zip(one.state.history, two["history"]):
        for key in ("w_loss", "w_acc", "a_loss", "cost"):
            if a[key] is not None:
                assert a[key] == pytest.approx(b[key], abs=TOL), key


def test_shards_cover_the_global_batch_and_rank_seeds_differ():
    idx = torch.arange(17)
    parts = [distributed.Context(r, 2).shard(idx) for r in (0, 1)]
    assert torch.equal(torch.cat(parts), idx) and abs(len(parts[0]) - len(parts[1])) <= 1
    assert torch.equal(distributed.SINGLE.shard(idx), idx)
    seeds = {distributed.seed_for(0, r, s) for r in range(3) for s in (1, 2)}
    assert len(seeds) == 6


def _children(pid: int) -> list[int]:
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids]


def _is_rank(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "spawn_main" in cmd and "resource_tracker" not in cmd


def test_killed_rank_stops_the_job_and_resume_finishes_it(tmp_path):
    from nasforge.methods.api import search

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MASTER_ADDR": "127.0.0.1"}
    args = ["search", "fbnet", "--dataset", "digits", "--subset", "60", "--batch-size", "20",
            "--space", "fbnet-small", "--cost", "flops", "--epochs", "6", "--epoch-steps",
            "1", "--samples", "0", "--candidate-epochs", "0", "--train-epochs", "1",
            "--no-progress", "--nproc", "2", "--out", str(run)]
    p = subprocess.Popen([sys.executable, "-m", "nasforge.cli", *args], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "supernet.ckpt").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    ranks = [c for c in _children(p.pid) if _is_rank(c)]
    assert len(ranks) == 2 and p.poll() is None, p.stderr.read() if p.poll() else ranks
    os.kill(ranks[1], signal.SIGKILL)
    t0 = time.time()
    _, err = p.communicate(timeout=15)  # the bound: stopped within 15 s, not hung
    assert p.returncode != 0 and time.time() - t0 < 15
    assert "was killed by SIGKILL" in err and "--resume" in err and "Traceback" not in err
    assert not any(Path(f"/proc/{r}").exists() and _is_rank(r) for r in ranks)
    assert not (run / "result.json").exists()
    done = torch.load(run / "supernet.ckpt", weights_only=True)["loop"]["epoch"]
    assert 1 <= done < 6
    res = search("fbnet", resume=run, nproc=1, progress=False)
    assert res.world_size == 1 and res.epochs["search"] == 6
    hist = json.loads((run / "search.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == list(range(6))
