import os

import pytest


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
