"""FBNet on full Fashion-MNIST: search → derive → train from scratch → export → measure.

Prints test accuracy, params, MACs, measured (and predicted) latency and search time, one
line of JSON at the end. Target for the found model: ≥ 93 % test accuracy at < 100K params.

On CUDA the defaults are the paper's schedule shape (90 search epochs; a 100-epoch final
training); on CPU a reduced budget is used (time-budgeted search, single path, a subset and
a short final training) — the figures are then *not* the target's.

    python benchmarks/fbnet_fashion_mnist.py                 # CUDA: full; CPU: reduced
    python benchmarks/fbnet_fashion_mnist.py --budget 600 --train-epochs 40
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from nasforge.cli import main as cli


def main() -> None:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--budget", type=float, default=None if cuda else 300.0)
    ap.add_argument("--epochs", type=int, default=90 if cuda else None)
    ap.add_argument("--subset", type=int, default=None if cuda else 20000)
    ap.add_argument("--train-epochs", type=int, default=100 if cuda else 10)
    ap.add_argument("--candidate-epochs", type=int, default=5 if cuda else 1)
    ap.add_argument("--samples", type=int, default=6 if cuda else 3)
    ap.add_argument("--params", type=float, default=100_000, help="parameter target")
    ap.add_argument("--target", default="cuda" if cuda else "cpu")
    ap.add_argument("--single-path", action="store_true", default=not cuda)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="fbnet-fmnist-")
    argv = ["search", "fbnet", "--dataset", "fashion-mnist", "--target", a.target,
            "--out", out, "--train-epochs", str(a.train_epochs),
            "--candidate-epochs", str(a.candidate_epochs), "--samples", str(a.samples),
            "--params", str(a.params)]
    for flag, v in (("--budget", a.budget), ("--epochs", a.epochs), ("--subset", a.subset)):
        if v is not None:
            argv += [flag, str(v)]
    if a.single_path:
        argv.append("--single-path")
    t0 = time.time()
    rc = cli(argv)
    if rc:
        raise SystemExit(rc)
    r = json.loads(open(f"{out}/result.json").read())
    print(f"test_acc {r['test_acc']:.4f}  params {r['params']:,}  MACs {r['flops']:,}  "
          f"latency measured {r['latency_ms']['measured']:.3f} ms (predicted "
          f"{r['latency_ms']['predicted']:.3f}) on {r['latency_ms']['device']}  "
          f"search {r['search_seconds']:.0f} s  total {time.time() - t0:.0f} s")
    print(json.dumps({k: r[k] for k in ("test_acc", "params", "flops", "latency_ms",
                                         "search_seconds", "train_seconds")}))


if __name__ == "__main__":
    main()
