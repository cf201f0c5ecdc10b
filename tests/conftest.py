import os

import pytest
import torch

# One intra-op thread: tests are tiny, and with other processes on the machine torch's thread
# pool oversubscribes the cores (a 2-thread step measured 3-7x slower than 1 thread under load).
# Subprocesses started by tests inherit OMP_NUM_THREADS.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Latency tables measured by tests go to a per-session folder, never ~/.cache."""
    d = tmp_path_factory.mktemp("nasforge-cache")
    old = os.environ.get("NASFORGE_CACHE")
    os.environ["NASFORGE_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("NASFORGE_CACHE", None)
    else:
        os.environ["NASFORGE_CACHE"] = old
