"""HTML for what Gradio has no component for: the state heatmap (SVG), drawn from the service layer's data."""
from __future__ import annotations

import html

CELL_W, CELL_H = 4, 18


def colour(value: float, low: float, high: float) -> str:
    """Diverging blue-white-red around 0 (or a white-to-red ramp when every value has one sign)."""
    span = max(abs(low), abs(high)) or 1.0
    t = max(-1.0, min(1.0, value / span))
    if t >= 0:
        g = int(255 * (1 - t))
        return f"rgb(255,{g},{g})"
    b = int(255 * (1 + t))
    return f"rgb({b},{b},255)"


def heatmap_html(data: dict) -> str:
    values = data["values"]
    if not values:
        return "<p>No state.</p>"
    rows, cols = len(values), len(values[0])
    low, high = data["min"], data["max"]
    unit = data.get("column", "channel")
    cell_w = max(CELL_W, min(48, 240 // cols))  # a few columns (RWKV-7's heads) get wide cells, not a 15-pixel strip
    cells = [f'<rect x="{40 + c * cell_w}" y="{r * CELL_H}" width="{cell_w}" height="{CELL_H}" '
             f'fill="{colour(v, low, high)}"><title>layer {r}, {unit.split()[0]} {c * data["channels_per_column"]}: '
             f'{v:.4g}</title></rect>'
             for r, row in enumerate(values) for c, v in enumerate(row)]
    labels = [f'<text x="0" y="{r * CELL_H + 13}" font-size="11">L{r}</text>' for r in range(rows)]
    width, height = 40 + cols * cell_w, rows * CELL_H
    caption = (f"{html.escape(data['tensor'])}: layers (rows) x a column per {html.escape(unit)}"
               f"{' (' + str(data['channels_per_column']) + ' averaged per column)' if data['channels_per_column'] > 1 else ''}"
               f"; min {low:.4g}, max {high:.4g}; red positive, blue negative")
    return (f'<div class="state-heatmap"><svg width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{"".join(labels)}{"".join(cells)}</svg>'
            f'{legend_svg(low, high)}<p style="font-size:12px">{caption}</p></div>')


def legend_svg(low: float, high: float, width: int = 240, steps: int = 24) -> str:
    """The heatmap's colour scale: a bar from -span (blue) through 0 (white) to +span (red), values marked."""
    span = max(abs(low), abs(high)) or 1.0
    step_w = width / steps
    bars = "".join(f'<rect x="{40 + i * step_w:.1f}" y="0" width="{step_w + 0.5:.1f}" height="12" '
                   f'fill="{colour(-span + 2 * span * (i + 0.5) / steps, -span, span)}"/>' for i in range(steps))
    marks = "".join(f'<text x="{40 + x}" y="26" font-size="11" text-anchor="{anchor}">{value:.3g}</text>'
                    for x, anchor, value in ((0, "start", -span), (width / 2, "middle", 0.0), (width, "end", span)))
    return (f'<svg class="heatmap-legend" width="{width + 80}" height="30" xmlns="http://www.w3.org/2000/svg">'
            f'<text x="0" y="10" font-size="11">scale</text>{bars}{marks}</svg>')


INDENT_PX = 16
CHAIN_MARK = '<span class="tog-space chain" title="continues the node above">↳</span>'
FOLD_MARK = '<span class="tog" title="fold or unfold this branch">▾</span>'


def tree_marks(branches: bool, chained: bool) -> str:
    """A row's leading marks: ↳ when it continues the row above (kept when it also branches, so a branching
    continuation is not mistaken for a sibling of the row above), ▾ (the fold toggle) when it branches."""
    marks = (CHAIN_MARK if chained else "") + (FOLD_MARK if branches else "")
    return marks or '<span class="tog-space"></span>'


def tree_html(rows: list[dict]) -> str:
    """The session tree as a flat list of rows (depth first), indented where the tree branches. A branch point has
    a toggle that folds its subtree; the current node and its ancestors are highlighted. Clicks are handled by
    the tab's script (TREE_JS): a click on a row is the component's select event, with the row's data-id."""
    if not rows:
        return '<div class="rwkv-tree"><p class="tree-empty">No nodes yet: generate from a prompt.</p></div>'
    parts = []
    for row in rows:
        classes = "tn" + (" current" if row["current"] else "") + (" on-path" if row["on_path"] else "")
        toggle = tree_marks(row["branches"] > 1, bool(row.get("chained")))
        extra = f' <span class="extra">{html.escape(" · ".join(row["extra"]))}</span>' if row["extra"] else ""
        role = "" if row["depth"] == 0 else f'<span class="role role-{html.escape(row["role"])}">{html.escape(row["role"])}</span> '
        parts.append(f'<div class="{classes}" data-id="{html.escape(row["id"])}" data-indent="{row["indent"]}" '
                     f'style="padding-left:{4 + row["indent"] * INDENT_PX}px" title="{html.escape(row["snippet"])}">'
                     f'{toggle}{role}<span class="snip">{html.escape(row["snippet"])}</span>{extra}</div>')
    current = next((row["id"] for row in rows if row["current"]), "")
    return (f'<div class="rwkv-tree" data-count="{len(rows)}" data-current="{html.escape(current)}">'
            f'{"".join(parts)}</div>')
