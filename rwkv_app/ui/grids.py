"""SVG heatmaps of small matrices (layer x head grids, one head's state matrix), drawn from plain lists of rows.

A magnitude (a norm, a rate) is drawn on viridis, dark to bright from its smallest to its largest value; a signed
matrix on a diverging blue-white-red scale centred on 0. Every cell has a tooltip with its row, column and value;
small grids print the value in the cell; the chosen cell is outlined.
"""
from __future__ import annotations

import html
import math

from .render import colour

VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
MAX_SIDE = 300  # px: a grid's longer side at most this (cells at least MIN_CELL)
MIN_CELL, MAX_CELL = 5, 40
LEFT, TOP = 30, 16  # room for the row and column labels


def viridis(t: float) -> tuple[int, int, int]:
    """t in [0, 1] -> an RGB on viridis (piecewise linear between five of its stops)."""
    t = min(1.0, max(0.0, t)) * (len(VIRIDIS) - 1)
    i = min(int(t), len(VIRIDIS) - 2)
    f = t - i
    return tuple(round(a + (b - a) * f) for a, b in zip(VIRIDIS[i], VIRIDIS[i + 1]))


def fill(value: float, low: float, high: float, diverging: bool) -> tuple[str, str]:
    """(cell colour, text colour that reads on it)."""
    if diverging:
        return colour(value, low, high), "#000"
    r, g, b = viridis((value - low) / (high - low) if high > low else 0.5)
    return f"rgb({r},{g},{b})", "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"


def cell_size(rows: int, cols: int) -> int:
    return max(MIN_CELL, min(MAX_CELL, MAX_SIDE // max(rows, cols, 1)))


def label_step(cell: int) -> int:
    """Label every n-th row/column so that labels (about 12 px) do not overlap."""
    return max(1, math.ceil(13 / cell))


def grid_svg(values: list[list[float]], *, names: tuple[str, str], prefixes: tuple[str, str],
             diverging: bool = False, selected: tuple[int, int] | None = None, digits: int = 2) -> str:
    """An SVG of `values` (rows x columns); names: what a row and a column are ("layer", "head"), for the tooltips;
    prefixes: their short labels ("L", "h")."""
    rows, cols = len(values), len(values[0])
    flat = [v for row in values for v in row]
    low, high = min(flat), max(flat)
    cell, step = cell_size(rows, cols), label_step(cell_size(rows, cols))
    parts = []
    for r, row in enumerate(values):
        for c, v in enumerate(row):
            bg, ink = fill(v, low, high, diverging)
            x, y = LEFT + c * cell, TOP + r * cell
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{bg}"><title>{names[0]} {r}, '
                         f'{names[1]} {c}: {v:.4g}</title></rect>')
            if cell >= 28 and rows * cols <= 64:
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 3}" font-size="9" text-anchor="middle" '
                             f'fill="{ink}" pointer-events="none">{v:.{digits}f}</text>')
    parts += [f'<text x="{LEFT - 3}" y="{TOP + r * cell + cell / 2 + 4}" font-size="10" text-anchor="end">'
              f'{prefixes[0]}{r}</text>' for r in range(0, rows, step)]
    parts += [f'<text x="{LEFT + c * cell + cell / 2}" y="11" font-size="10" text-anchor="middle">{prefixes[1]}{c}</text>'
              for c in range(0, cols, step)]
    if selected is not None:
        x, y = LEFT + selected[1] * cell, TOP + selected[0] * cell
        parts.append(f'<rect class="chosen" x="{x + 1}" y="{y + 1}" width="{cell - 2}" height="{cell - 2}" fill="none" '
                     f'stroke="#fff" stroke-width="1"/><rect x="{x}" y="{y}" width="{cell}" height="{cell}" '
                     f'fill="none" stroke="#000" stroke-width="2"/>')
    width, height = LEFT + cols * cell + 2, TOP + rows * cell + 2
    return (f'<svg class="grid" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>{scale_svg(low, high, diverging)}')


def scale_svg(low: float, high: float, diverging: bool, width: int = 160, steps: int = 20) -> str:
    """The colour scale under a grid, its ends (and 0 on a diverging scale) marked."""
    if diverging:
        span = max(abs(low), abs(high)) or 1.0
        low, high = -span, span
    step_w = width / steps
    bars = "".join(f'<rect x="{LEFT + i * step_w:.1f}" y="0" width="{step_w + 0.5:.1f}" height="10" '
                   f'fill="{fill(low + (high - low) * (i + 0.5) / steps, low, high, diverging)[0]}"/>'
                   for i in range(steps))
    marks = [(0, "start", low), (width, "end", high)] + ([(width / 2, "middle", 0.0)] if diverging else [])
    text = "".join(f'<text x="{LEFT + x}" y="23" font-size="10" text-anchor="{anchor}">{value:.3g}</text>'
                   for x, anchor, value in marks)
    return (f'<svg class="grid-scale" width="{LEFT + width + 20}" height="26" viewBox="0 0 {LEFT + width + 20} 26" '
            f'xmlns="http://www.w3.org/2000/svg">{bars}{text}</svg>')


def figure(title: str, body: str, caption: str = "") -> str:
    """One titled panel (the grids sit side by side and wrap on a narrow screen)."""
    note = f'<p class="st-cap">{html.escape(caption)}</p>' if caption else ""
    return f'<figure class="st-panel"><figcaption>{title}</figcaption>{body}{note}</figure>'
