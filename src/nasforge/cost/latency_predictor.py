"""A latency predictor better than the plain LUT sum, fitted on a few end-to-end measurements.

Why: a LUT entry is one block timed *alone*, i.e. one runtime call. Measured on this project's
machine (``docs/cost_models.md``), a block costs less inside a network than alone by more than
the identity-module overhead the ``corrected`` sum removes (fitted: TorchScript 20–55 µs per
block, ONNX Runtime 5–10 µs per block), so both the plain and the corrected sum over-predict, in
proportion to the number of blocks. The predictor keeps the sum's structure and fits a few
corrections on measured random networks (the calibration set)::

    predict = intercept + Σ_i [ scale_g(i) · c_i + offset_g(i) ]      c_i = table.corrected(key_i)

where ``g(i)`` is the correction group of entry i (every entry in one group ``*`` for the global
forms, its op for the per-op forms; entries timed no slower than the runtime overhead — identity
blocks — are ``noop`` and get no offset). The form is chosen by leave-one-out cross-validation on
the calibration set (forms below, simplest first; per-op forms are ridge-regularised towards
scale 1, offset 0). It stays additive over entries, so a differentiable search can use
:meth:`LatencyPredictor.entry_cost` as its per-candidate cost and :attr:`intercept` as fixed.

Stored as JSON next to its table (``<table>.predictor.json``) with the table's digest: it is
never applied to another table, and its calibration architectures are recorded so a validation
can keep its own architectures disjoint from them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.cost.lut import LatencyTable, LutKey
from nasforge.files import parse_as, read_json, write_json_atomic

PREDICTOR_SCHEMA = 1
PREDICTOR_FIX = "recalibrate it with `nasforge lut validate --recalibrate`"
#: the candidate forms, simplest first: (name, per-op groups?, fit scale?, fit offset?)
FORMS: dict[str, tuple[bool, bool, bool]] = {
    "intercept": (False, False, False),
    "offset": (False, False, True),
    "scale_offset": (False, True, True),
    "op_offset": (True, False, True),
    "op_scale_offset": (True, True, True),
}
#: an entry timed at most this many times the per-call overhead is a no-op (identity block)
NOOP_RATIO = 1.25
#: prefer a simpler form unless a more complex one lowers the CV error by this much (points of %)
SIMPLER_MARGIN = 0.2


def table_digest(table: LatencyTable) -> str:
    """Identifies the table's contents (fingerprint, statistic, entries)."""
    d = {"space": table.space, "fingerprint": table.fingerprint, "statistic": table.statistic,
         "overhead_us": round(table.overhead_us, 3),
         "entries": {k: round(v, 3) for k, v in sorted(table.entries.items())}}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def arch_id(genes: Any) -> str:
    """A short stable id of an architecture's genes (to keep calibration ≠ validation)."""
    return hashlib.sha1(json.dumps(genes, sort_keys=True).encode()).hexdigest()[:16]


def entry_group(table: LatencyTable, key: LutKey | str, per_op: bool) -> str:
    if table[key] <= NOOP_RATIO * table.overhead_us:
        return "noop"
    if not per_op:
        return "*"
    k = key if isinstance(key, LutKey) else LutKey.parse(key)
    return k.op


@dataclass
class LatencyPredictor:
    form: str
    intercept: float
    scale: dict[str, float] = field(default_factory=dict)  # group -> scale (default 1)
    offset: dict[str, float] = field(default_factory=dict)  # group -> µs (default 0)
    table_digest: str = ""
    space: str = ""
    fingerprint: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)  # n, arch ids, CV errors

    @property
    def per_op(self) -> bool:
        return FORMS[self.form][0]

    def entry_cost(self, table: LatencyTable, key: LutKey | str) -> float:
        """The predicted in-network cost (µs) of one entry (additive part)."""
        g = entry_group(table, key, self.per_op)
        return self.scale.get(g, 1.0) * table.corrected(key) + self.offset.get(g, 0.0)

    def predict(self, table: LatencyTable, keys: Sequence[LutKey | str]) -> float:
        """Network latency (µs) of the network whose entries are ``keys``."""
        self.check_table(table)
        return float(self.intercept + sum(self.entry_cost(table, k) for k in keys))

    def check_table(self, table: LatencyTable) -> None:
        from nasforge.errors import UserError

        if self.table_digest and self.table_digest != table_digest(table):
            raise UserError("this latency predictor was calibrated on another latency table "
                            "(different device, statistic or entries); recalibrate it with "
                            "`nasforge lut validate` on this table")

    def to_dict(self) -> dict[str, Any]:
        return {"schema": PREDICTOR_SCHEMA, "unit": "us", "form": self.form,
                "intercept": self.intercept, "scale": self.scale, "offset": self.offset,
                "table_digest": self.table_digest, "space": self.space,
                "fingerprint": self.fingerprint, "calibration": self.calibration}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyPredictor:
        from nasforge.errors import UserError

        if "form" not in d or "intercept" not in d:
            raise UserError("it is not a latency predictor (no 'form' / 'intercept')")
        if d.get("schema") != PREDICTOR_SCHEMA or d.get("form") not in FORMS:
            raise UserError(f"latency predictor file has schema {d.get('schema')!r} / form "
                            f"{d.get('form')!r}; recalibrate it with `nasforge lut validate`")
        for name in ("scale", "offset", "fingerprint", "calibration"):
            if not isinstance(d.get(name, {}), dict):
                raise UserError(f"its field {name!r} must be a JSON object")
        return cls(form=d["form"], intercept=float(d["intercept"]),
                   scale={k: float(v) for k, v in d.get("scale", {}).items()},
                   offset={k: float(v) for k, v in d.get("offset", {}).items()},
                   table_digest=d.get("table_digest", ""), space=d.get("space", ""),
                   fingerprint=d.get("fingerprint", {}), calibration=d.get("calibration", {}))

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, table: LatencyTable | None = None) -> LatencyPredictor:
        """The predictor in ``path`` (any unreadable or foreign file is one UserError naming
        it); with ``table``, refused unless it was calibrated on that very table."""
        data = read_json(path, "latency predictor", PREDICTOR_FIX)
        pred = parse_as(path, "latency predictor", PREDICTOR_FIX, data, cls.from_dict)
        if table is not None:
            parse_as(path, "latency predictor", "", None, lambda _: pred.check_table(table))
        return pred


def predictor_path(table_path: str | Path) -> Path:
    p = Path(table_path)
    return p.with_name(p.stem + ".predictor.json")


# -- fitting ------------------------------------------------------------------------------------

def _design(table: LatencyTable, keys_list: Sequence[Sequence[LutKey | str]],
            per_op: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per network: Σ corrected time and count of entries in each group (noop excluded)."""
    groups: list[str] = sorted({entry_group(table, k, per_op) for ks in keys_list for k in ks}
                               - {"noop"})
    idx = {g: i for i, g in enumerate(groups)}
    csum = np.zeros((len(keys_list), len(groups)))
    count = np.zeros((len(keys_list), len(groups)))
    base = np.zeros(len(keys_list))  # noop entries' corrected time, never rescaled
    for n, ks in enumerate(keys_list):
        for k in ks:
            g = entry_group(table, k, per_op)
            if g == "noop":
                base[n] += table.corrected(k)
            else:
                csum[n, idx[g]] += table.corrected(k)
                count[n, idx[g]] += 1
    return groups, np.c_[base, csum], count


def _solve(form: str, csum: np.ndarray, count: np.ndarray, y: np.ndarray,
           ridge: float) -> np.ndarray:
    """Coefficients [intercept, scales..., offsets...] minimising the squared *relative* error,
    with scales pulled towards 1 and offsets towards 0 by ``ridge`` (per-op forms only)."""
    per_op, fit_scale, fit_offset = FORMS[form]
    base, cs = csum[:, 0], csum[:, 1:]
    g = cs.shape[1]
    if not per_op:  # one global group: collapse columns
        cs, count = cs.sum(1, keepdims=True), count.sum(1, keepdims=True)
        g = 1
    cols = [np.ones((len(y), 1))]
    target = y - base
    if fit_scale:
        cols.append(cs)
    else:
        target = target - cs.sum(1)
    if fit_offset:
        cols.append(count)
    x = np.concatenate(cols, 1) / y[:, None]
    t = target / y
    n_par = x.shape[1]
    prior = np.zeros(n_par)
    if fit_scale:
        prior[1:1 + g] = 1.0
    if per_op and ridge > 0:  # Tikhonov towards the prior, scaled to the data
        scale_cols = np.sqrt((x ** 2).mean(0)) + 1e-12
        lam = np.diag(np.r_[0.0, np.full(n_par - 1, ridge)] * scale_cols)
        x = np.vstack([x, lam])
        t = np.r_[t, lam @ prior]
    coef, *_ = np.linalg.lstsq(x, t, rcond=None)
    return coef


def _unpack(form: str, coef: np.ndarray, groups: list[str]) -> tuple[float, dict, dict]:
    per_op, fit_scale, fit_offset = FORMS[form]
    names = groups if per_op else ["*"]
    i = 1
    scale: dict[str, float] = {}
    offset: dict[str, float] = {}
    if fit_scale:
        scale = {g: float(v) for g, v in zip(names, coef[i:i + len(names)])}
        i += len(names)
    if fit_offset:
        offset = {g: float(v) for g, v in zip(names, coef[i:i + len(names)])}
    return float(coef[0]), scale, offset


def _predict(form: str, coef: np.ndarray, csum: np.ndarray, count: np.ndarray) -> np.ndarray:
    per_op, fit_scale, fit_offset = FORMS[form]
    base, cs = csum[:, 0], csum[:, 1:]
    if not per_op:
        cs, count = cs.sum(1, keepdims=True), count.sum(1, keepdims=True)
    out = coef[0] + base
    i = 1
    if fit_scale:
        out = out + cs @ coef[i:i + cs.shape[1]]
        i += cs.shape[1]
    else:
        out = out + cs.sum(1)
    if fit_offset:
        out = out + count @ coef[i:i + count.shape[1]]
    return out


def fit_predictor(table: LatencyTable, keys_list: Sequence[Sequence[LutKey | str]],
                  measured: Sequence[float], *, forms: Sequence[str] | None = None,
                  ridge: float = 0.3, arch_ids: Sequence[str] = ()) -> LatencyPredictor:
    """Fit every form in ``forms`` on (networks' keys, measured µs); keep the one with the lowest
    leave-one-out mean absolute percentage error (a simpler one unless beaten by
    :data:`SIMPLER_MARGIN` points)."""
    from nasforge.errors import UserError

    y = np.asarray(measured, dtype=float)
    forms = list(forms or FORMS)
    if len(keys_list) != len(y) or len(y) < 3:
        raise UserError(f"a latency predictor needs ≥ 3 calibration networks with one "
                        f"measurement each (got {len(keys_list)} networks, {len(y)} times)")
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise UserError(f"unknown predictor form(s) {unknown}; choose from {list(FORMS)}")
    if np.any(y <= 0):
        raise UserError("measured latencies must be positive")
    cv: dict[str, float] = {}
    fits: dict[str, tuple[np.ndarray, list[str]]] = {}
    for form in forms:
        groups, csum, count = _design(table, keys_list, FORMS[form][0])
        errs = []
        for i in range(len(y)):
            m = np.arange(len(y)) != i
            c = _solve(form, csum[m], count[m], y[m], ridge)
            p = _predict(form, c, csum[i:i + 1], count[i:i + 1])[0]
            errs.append(abs(p - y[i]) / y[i])
        cv[form] = float(np.mean(errs) * 100)
        fits[form] = (_solve(form, csum, count, y, ridge), groups)
    best = min(cv.values())
    chosen = next(f for f in forms if cv[f] <= best + SIMPLER_MARGIN)
    coef, groups = fits[chosen]
    intercept, scale, offset = _unpack(chosen, coef, groups)
    return LatencyPredictor(
        form=chosen, intercept=intercept, scale=scale, offset=offset,
        table_digest=table_digest(table), space=table.space, fingerprint=table.fingerprint,
        calibration={"n": int(len(y)), "cv_mape": cv, "ridge": ridge,
                     "arch_ids": list(arch_ids)},
    )
