"""A diagram of the derived architecture as inline SVG: no Graphviz, no matplotlib, so the
page shows it whatever is installed. A layer-wise network (FBNet) is a strip of boxes with
kernel, expansion, width and stride; a BlockQNN block is a DAG of its layers; any other
space's genes are a strip of one box per gene."""

from __future__ import annotations

import html
import json
import re
from typing import Any

BOX_W, BOX_H, GAP = 118, 64, 14


def _box(x: float, y: float, lines: list[str], fill: str) -> str:
    text = "".join(f"<text x='{x + BOX_W / 2:.0f}' y='{y + 17 + 14 * i:.0f}' "
                   f"text-anchor='middle' font-size='{12 if i == 0 else 10}'>"
                   f"{html.escape(s)}</text>" for i, s in enumerate(lines[:4]))
    return (f"<rect x='{x:.0f}' y='{y:.0f}' width='{BOX_W}' height='{BOX_H}' rx='6' "
            f"fill='{fill}' stroke='#333'/>{text}")


def _svg(width: float, height: float, body: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' "
            f"height='{height:.0f}' viewBox='0 0 {width:.0f} {height:.0f}' "
            f"font-family='sans-serif'><defs><marker id='a' markerWidth='8' markerHeight='8' "
            f"refX='7' refY='4' orient='auto'><path d='M0,0 L8,4 L0,8 z' fill='#333'/>"
            f"</marker></defs>{body}</svg>")


def strip(boxes: list[tuple[list[str], str]], per_row: int = 8) -> str:
    """Boxes left to right in rows, joined by arrows."""
    body = []
    rows = -(-len(boxes) // per_row)
    for i, (lines, fill) in enumerate(boxes):
        r, c = divmod(i, per_row)
        x, y = 10 + c * (BOX_W + GAP), 10 + r * (BOX_H + 26)
        body.append(_box(x, y, lines, fill))
        if c + 1 < per_row and i + 1 < len(boxes):
            body.append(f"<line x1='{x + BOX_W}' y1='{y + BOX_H / 2}' x2='{x + BOX_W + GAP}' "
                        f"y2='{y + BOX_H / 2}' stroke='#333' marker-end='url(#a)'/>")
    cols = min(per_row, len(boxes))
    return _svg(20 + cols * (BOX_W + GAP), 20 + rows * (BOX_H + 26), "".join(body))


_BLOCK = re.compile(r"k(\d+)_e(\d+)(?:_g(\d+))?")
_COLOURS = {"skip": "#eeeeee", 1: "#dbeafe", 3: "#bfdbfe", 6: "#93c5fd"}


def fbnet_boxes(genes: list[str], space: Any) -> list[tuple[list[str], str]]:
    """Stem, each searched layer (block kind, kernel, expansion, groups, width, stride), head."""
    sk = space.skeleton
    boxes = [(["stem", f"conv 3x3 → {sk.stem_channels}", f"stride {sk.stem_stride}"],
              "#fde68a")]
    for g, spec in zip(genes, space.specs):
        m = _BLOCK.fullmatch(str(g))
        if m is None:
            boxes.append(([str(g), f"{spec.cin} → {spec.cout}", f"stride {spec.stride}"],
                          _COLOURS["skip"]))
            continue
        k, e, grp = int(m[1]), int(m[2]), m[3]
        boxes.append(([str(g), f"k{k} e{e}" + (f" g{grp}" if grp else ""),
                       f"{spec.cin} → {spec.cout}", f"stride {spec.stride} · {spec.h}²"],
                      _COLOURS.get(e, "#93c5fd")))
    boxes.append((["head", f"conv 1x1 → {sk.head_channels}", "pool · fc"], "#fde68a"))
    return boxes


def nsc_dag(layers: list[list[Any]]) -> str:
    """A BlockQNN block (NSC codes ``[index, type, kernel, pred1, pred2]``) as a DAG: the
    input on top, each layer one row below its deepest predecessor, edges to predecessors."""
    preds: dict[int, list[int]] = {}
    used: set[int] = set()
    for idx, typ, _, p1, p2 in layers:
        if typ == "terminal":  # the output concatenates every layer nothing else reads
            preds[idx] = [i for i, *_ in layers if i not in used and i != idx] or [0]
        else:
            preds[idx] = [p1, p2] if typ in ("add", "concat") else [p1]
        used.update(preds[idx])
    depth = {0: 0}
    for idx, *_ in layers:
        depth[idx] = 1 + max(depth.get(p, 0) for p in preds[idx])
    nodes = [(0, ["input"])] + [(idx, [f"{idx} {'output' if typ == 'terminal' else typ}"]
                                + ([f"{k}x{k}"] if k else []))
                                for idx, typ, k, _, _ in layers]
    per_depth: dict[int, int] = {}
    pos = {}
    for idx, _ in nodes:
        d = depth[idx]
        pos[idx] = (10 + per_depth.get(d, 0) * (BOX_W + 30), 10 + d * (BOX_H + 34))
        per_depth[d] = per_depth.get(d, 0) + 1
    body = []
    for idx, *_ in layers:
        for p in preds[idx]:
            if p not in pos:
                continue
            (x0, y0), (x1, y1) = pos[p], pos[idx]
            body.append(f"<line x1='{x0 + BOX_W / 2}' y1='{y0 + BOX_H}' x2='{x1 + BOX_W / 2}' "
                        f"y2='{y1}' stroke='#333' marker-end='url(#a)'/>")
    fill = {"conv": "#93c5fd", "max_pool": "#fca5a5", "avg_pool": "#fca5a5",
            "add": "#bbf7d0", "concat": "#bbf7d0", "identity": "#eeeeee", "output": "#fde68a"}
    for idx, lines in nodes:
        typ = lines[0].split(" ")[-1]
        body.append(_box(*pos[idx], lines, fill.get(typ, "#fde68a")))
    w = 20 + max(per_depth.values()) * (BOX_W + 30)
    h = 20 + (max(depth.values()) + 1) * (BOX_H + 34)
    return _svg(w, h, "".join(body))


def arch_svg(space_name: str, genes: Any) -> str:
    """The diagram of ``genes`` of space ``space_name`` (a generic strip when the space has no
    drawing of its own)."""
    from nasforge.errors import UserError
    from nasforge.spaces.registry import get_space

    try:
        space = get_space(space_name)
    except UserError:
        space = None
    if space is not None and hasattr(space, "skeleton") and hasattr(space, "specs") \
            and isinstance(genes, list) and all(isinstance(g, str) for g in genes):
        return strip(fbnet_boxes(genes, space))
    if isinstance(genes, list) and genes and all(
            isinstance(g, list) and len(g) == 5 and isinstance(g[1], str) for g in genes):
        return nsc_dag(genes)
    items = list(genes.items()) if isinstance(genes, dict) else list(enumerate(genes)) \
        if isinstance(genes, list) else [("arch", genes)]
    return strip([([str(k)] + _wrap(json.dumps(v)), "#dbeafe") for k, v in items])


def _wrap(s: str, n: int = 18) -> list[str]:
    return [s[i:i + n] for i in range(0, min(len(s), 3 * n), n)]
