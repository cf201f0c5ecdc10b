"""Every named part (spaces, executors, data sets, latency targets) is a Registry with explicit
built-ins: a user entry never hides or replaces a built-in, a duplicate is refused, a miss lists
what exists. Each case starts from a fresh registry (built-ins not loaded yet), which is where
the old space lookup went wrong: registering a user space first hid every built-in."""

import numpy as np
import pytest

from nasforge.cost import measure
from nasforge.data import sources
from nasforge.errors import UserError
from nasforge.registry import Registry
from nasforge.run import executors
from nasforge.spaces import registry as spaces
from nasforge.spaces.categorical import CategoricalSpace


def _user_source(data_dir, seed):
    return sources.synthetic(data_dir, seed)


class _UserExecutor(executors.LocalExecutor):
    name = "mine"


#: kind -> (module, registry attribute, a built-in name, a user entry,
#:          register(name, item), fetch(name) through the public API)
CASES = {
    "space": (spaces, "SPACES", "fbnet-fmnist", lambda: CategoricalSpace({"x": [1, 2]}, "mine"),
              spaces.register_space, spaces.get_space),
    "executor": (executors, "EXECUTORS", "process", _UserExecutor,
                 lambda n, e: executors.EXECUTORS.register(n, e),
                 lambda n: executors.create_executor(n, 1)),
    "dataset": (sources, "SOURCES", "synthetic", _user_source,
                lambda n, f: sources.SOURCES.register(n, f), lambda n: sources.load_raw(n)),
    "target": (measure, "TARGETS", "cpu",
               measure.MeasureTarget("mine", measure._cpu_timer, ("float32",)),
               lambda n, t: measure.TARGETS.register(n, t),
               lambda n: (measure.check_target(n), measure.TARGETS.get(n))[1]),
}


@pytest.fixture(params=sorted(CASES))
def case(request, monkeypatch):
    """A fresh registry of that kind (same kind name and built-ins loader), swapped in."""
    module, attr, builtin, item, register, fetch = CASES[request.param]
    old = getattr(module, attr)
    fresh = Registry(old.kind, builtins=module._builtins)
    monkeypatch.setattr(module, attr, fresh)
    return request.param, fresh, builtin, item, register, fetch


def test_user_entry_first_then_a_builtin(case):
    kind, reg, builtin, item, register, fetch = case
    register("mine", item)  # before anything loaded the built-ins
    got = fetch(builtin)
    assert got is not None and builtin in reg.names() and "mine" in reg.names()
    assert len(reg.names()) >= 3  # every built-in is there, not only the first one asked for
    mine = fetch("mine")
    if kind == "space":
        assert mine.name == "mine"
    elif kind == "executor":
        assert isinstance(mine, _UserExecutor)
    elif kind == "dataset":
        assert mine.num_classes == 10
    else:
        assert mine is item


def test_duplicate_names_are_refused(case):
    kind, reg, builtin, item, register, fetch = case
    with pytest.raises(UserError, match="already registered"):
        register(builtin, item)  # a user entry never replaces a built-in
    register("mine", item)
    with pytest.raises(UserError, match="already registered"):
        register("mine", item)


def test_a_miss_lists_what_exists(case):
    kind, reg, builtin, item, register, fetch = case
    with pytest.raises(UserError) as e:
        fetch("no-such-thing")
    msg = str(e.value)
    assert f"unknown {reg.kind} 'no-such-thing'" in msg
    assert all(n in msg for n in reg.names()) and builtin in msg


def test_every_builtin_space_builds_its_kind():
    names = spaces.space_names()
    families = {n.split("-")[0] for n in names}
    assert {"fbnet", "fbnetv2", "dense", "nsc"} <= families, names
    for n in names:
        sp = spaces.get_space(n)
        assert sp.name == n
        sp.validate(sp.sample(np.random.default_rng(0)))


def test_builtin_lists():
    assert executors.EXECUTORS.names() == ["local", "process", "ray"]
    assert set(sources.SOURCES.names()) >= {"digits", "fashion-mnist", "cifar10", "synthetic"}
    assert measure.TARGETS.names() == ["cpu", "cuda", "onnx"]
    assert measure.TARGETS.get("cuda").device_events
    assert not measure.TARGETS.get("cpu").device_events
