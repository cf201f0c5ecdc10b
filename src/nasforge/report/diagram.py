"""A diagram of the derived architecture as inline SVG: no Graphviz, no matplotlib, so the
page shows it whatever is installed. A layer-wise network (FBNet) is a strip of boxes with
kernel, expansion, width and stride; a BlockQNN block is a DAG of its layers; a cell (DARTS /
ENAS normal and reduction cells, NAS-Bench-201, NASNet) is a DAG of its states left to right,
each edge labelled with its op; any other space's genes are a strip of one box per gene."""

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
            if x0 == x1 and depth[idx] - depth[p] > 1:  # a skip past the boxes between: bend
                bx = x0 + BOX_W + 28 * (depth[idx] - depth[p])
                my = (y0 + y1) / 2 + BOX_H / 2
                body.append(f"<path d='M{x0 + BOX_W},{y0 + BOX_H / 2} Q{bx},{my}"
                            f" {x1 + BOX_W},{y1 + BOX_H / 2}' fill='none' stroke='#333' "
                            "marker-end='url(#a)'/>")
                continue
            body.append(f"<line x1='{x0 + BOX_W / 2}' y1='{y0 + BOX_H}' x2='{x1 + BOX_W / 2}' "
                        f"y2='{y1}' stroke='#333' marker-end='url(#a)'/>")
    fill = {"conv": "#93c5fd", "max_pool": "#fca5a5", "avg_pool": "#fca5a5",
            "add": "#bbf7d0", "concat": "#bbf7d0", "identity": "#eeeeee", "output": "#fde68a"}
    for idx, lines in nodes:
        typ = lines[0].split(" ")[-1]
        body.append(_box(*pos[idx], lines, fill.get(typ, "#fde68a")))
    w = 20 + max(per_depth.values()) * (BOX_W + 30) + 28 * max(depth.values())
    h = 20 + (max(depth.values()) + 1) * (BOX_H + 34)
    return _svg(w, h, "".join(body))


NODE_W, NODE_H, COL_GAP, ROW_GAP = 92, 30, 120, 22
_OP_COLOURS = {"skip": "#6b7280", "pool": "#dc2626", "conv": "#2563eb", "identity": "#6b7280",
               "none": "#d1d5db"}


def _op_colour(op: str) -> str:
    return next((c for k, c in _OP_COLOURS.items() if k in op), "#7c3aed")


def cell_dag(title: str, nodes: list[tuple[Any, str, str]],
             edges: list[tuple[Any, Any, str]]) -> tuple[str, float, float]:
    """One cell as a DAG drawn left to right: ``nodes`` (id, label, fill) placed by their
    longest path from the inputs, ``edges`` (from, to, op label; "" for an unlabelled concat
    edge) as curves with the op written on them. Returns (SVG body, width, height)."""
    preds: dict[Any, list[Any]] = {n: [] for n, _, _ in nodes}
    for a, b, _ in edges:
        preds[b].append(a)
    depth: dict[Any, int] = {}

    def d(n: Any) -> int:
        if n not in depth:
            depth[n] = 0 if not preds[n] else 1 + max(d(p) for p in preds[n])
        return depth[n]

    cols: dict[int, list[Any]] = {}
    for n, _, _ in nodes:
        cols.setdefault(d(n), []).append(n)
    rows = max(len(v) for v in cols.values())
    height = 30 + rows * (NODE_H + ROW_GAP)
    pos = {}
    for c, ns in cols.items():
        top = 28 + (rows - len(ns)) * (NODE_H + ROW_GAP) / 2
        for i, n in enumerate(ns):
            pos[n] = (10 + c * (NODE_W + COL_GAP), top + i * (NODE_H + ROW_GAP))
    body = [f"<text x='10' y='16' font-size='13' font-weight='bold'>{html.escape(title)}</text>"]
    seen: dict[tuple[Any, Any], int] = {}
    for a, b, op in edges:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        k = seen[(a, b)] = seen.get((a, b), -1) + 1  # a second edge a→b bends the other way
        sx, sy, ex, ey = x0 + NODE_W, y0 + NODE_H / 2, x1, y1 + NODE_H / 2
        bend = (18 + 10 * abs(ey - sy) / max(1.0, ex - sx)) * (1 if k % 2 == 0 else -1) \
            if (k or abs(ey - sy) < 1) and op else 0.0
        cx, cy = (sx + ex) / 2, (sy + ey) / 2 - bend
        colour = _op_colour(op) if op else "#9ca3af"
        body.append(f"<path d='M{sx:.0f},{sy:.0f} Q{cx:.0f},{cy:.0f} {ex:.0f},{ey:.0f}' "
                    f"fill='none' stroke='{colour}' stroke-width='1.6' "
                    f"marker-end='url(#a)'/>")
        if op:
            lx, ly = (sx + 2 * cx + ex) / 4, (sy + 2 * cy + ey) / 4  # the curve's midpoint
            body.append(f"<text x='{lx:.0f}' y='{ly + 3:.0f}' text-anchor='middle' "
                        f"font-size='9' fill='{colour}' stroke='white' stroke-width='3' "
                        f"paint-order='stroke'>{html.escape(op)}</text>")
    for n, label, fill in nodes:
        x, y = pos[n]
        body.append(f"<rect x='{x:.0f}' y='{y:.0f}' width='{NODE_W}' height='{NODE_H}' rx='12' "
                    f"fill='{fill}' stroke='#333'/><text x='{x + NODE_W / 2:.0f}' "
                    f"y='{y + NODE_H / 2 + 4:.0f}' text-anchor='middle' font-size='11'>"
                    f"{html.escape(label)}</text>")
    width = 20 + (max(cols) + 1) * NODE_W + max(cols) * COL_GAP
    return "".join(body), width, height


def stack(parts: list[tuple[str, float, float]]) -> str:
    """Cell diagrams one under the other in one SVG."""
    body, y = [], 0.0
    for b, _, h in parts:
        body.append(f"<g transform='translate(0,{y:.0f})'>{b}</g>")
        y += h + 16
    return _svg(max(w for _, w, _ in parts), y, "".join(body))


IN_FILL, NODE_FILL, OUT_FILL = "#fde68a", "#dbeafe", "#bbf7d0"


def darts_cells(genes: dict[str, Any]) -> str:
    """DARTS genotype (``normal``/``reduce``: two ``[op, input]`` per intermediate node): inputs
    c_{k-2}, c_{k-1}, nodes 0–3, the output concatenating ``<cell>_concat``."""
    parts = []
    for cell in ("normal", "reduce"):
        pairs = genes[cell]
        steps = len(pairs) // 2
        nodes = [(0, "c_{k-2}", IN_FILL), (1, "c_{k-1}", IN_FILL)]
        nodes += [(i + 2, f"node {i}", NODE_FILL) for i in range(steps)] + [("out", "c_{k}",
                                                                                OUT_FILL)]
        edges = [(int(j), i // 2 + 2, str(op)) for i, (op, j) in enumerate(pairs)]
        edges += [(int(c), "out", "") for c in genes.get(f"{cell}_concat", range(2, 2 + steps))]
        parts.append(cell_dag(f"{cell} cell", nodes, edges))
    return stack(parts)


def nb201_cell(text: str) -> str:
    """A NAS-Bench-201 cell: nodes 0–3, each edge ``op~input``; ``none`` edges are absent."""
    from nasforge.models.nb201 import EDGES
    from nasforge.spaces.nb201 import parse_string

    ops = parse_string(text)
    nodes = [(0, "node 0 (in)", IN_FILL), (1, "node 1", NODE_FILL), (2, "node 2", NODE_FILL),
             (3, "node 3 (out)", OUT_FILL)]
    edges = [(j, i, op) for (i, j), op in zip(EDGES, ops) if op != "none"]
    return stack([cell_dag("NAS-Bench-201 cell (none edges omitted)", nodes, edges)])


def nasnet_cells(genes: dict[str, Any]) -> str:
    """NASNet genotype (per block ``[input a, input b, op a, op b]``, the two results added):
    hidden states h_{i-2}, h_{i-1}, one node per block, the output concatenating the blocks no
    block reads."""
    from nasforge.models.nasnet import unused

    parts = []
    for cell in ("normal", "reduce"):
        blocks = genes[cell]
        nodes = [(0, "h_{i-2}", IN_FILL), (1, "h_{i-1}", IN_FILL)]
        nodes += [(b + 2, f"block {b} (+)", NODE_FILL) for b in range(len(blocks))]
        nodes.append(("out", "concat", OUT_FILL))
        edges = [(int(blk[k]), b + 2, str(blk[k + 2])) for b, blk in enumerate(blocks)
                 for k in (0, 1)]
        edges += [(s, "out", "") for s in unused(blocks)]
        parts.append(cell_dag(f"{cell} cell", nodes, edges))
    return stack(parts)


def _cell_drawing(genes: Any) -> str | None:
    """The DAG drawing of a cell space's genes, or None when they are not a cell."""
    if isinstance(genes, str) and genes.startswith("|"):
        return nb201_cell(genes)
    if isinstance(genes, dict) and isinstance(genes.get("normal"), list) and genes["normal"]:
        first = genes["normal"][0]
        if isinstance(first, list) and len(first) == 2 and "normal_concat" in genes:
            return darts_cells(genes)
        if isinstance(first, list) and len(first) == 4:
            return nasnet_cells(genes)
    return None


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
    cell = _cell_drawing(genes)
    if cell is not None:
        return cell
    items = list(genes.items()) if isinstance(genes, dict) else list(enumerate(genes)) \
        if isinstance(genes, list) else [("arch", genes)]
    return strip([([str(k)] + _wrap(json.dumps(v)), "#dbeafe") for k, v in items])


def _wrap(s: str, n: int = 18) -> list[str]:
    return [s[i:i + n] for i in range(0, min(len(s), 3 * n), n)]
