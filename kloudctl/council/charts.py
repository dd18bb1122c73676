"""Inline SVG charts (no script, no external asset): a bar chart of one value per day."""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, HEIGHT = 640, 200
_LEFT, _BOTTOM, _TOP = 56, 28, 12


def bars(
    title: str, points: list[dict[str, Any]], *, scale: float = 1.0, limit: float | None = None
) -> str:
    """One bar per day (`points`: [{'day': 'YYYY-MM-DD', 'value': number}]), values divided
    by `scale`; an optional dashed line at `limit` (a budget). Empty points: no chart."""
    if not points:
        return ""
    values = [p["value"] / scale for p in points]
    top = max([*values, (limit or 0.0)]) or 1.0
    plot_w, plot_h = WIDTH - _LEFT - 8, HEIGHT - _BOTTOM - _TOP
    step = plot_w / len(values)
    shapes = []
    for i, (p, v) in enumerate(zip(points, values, strict=True)):
        h = plot_h * v / top
        x = _LEFT + i * step
        shapes.append(
            f'<rect x="{x + step * 0.1:.1f}" y="{_TOP + plot_h - h:.1f}" width="{step * 0.8:.1f}" '
            f'height="{h:.1f}" class="bar"><title>{escape(p["day"])}: {v:.1f}</title></rect>'
        )
    if limit is not None:
        y = _TOP + plot_h - plot_h * limit / top
        shapes.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" class="limit"/>'
        )
    axis = (
        f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + plot_h}" class="axis"/>'
        f'<line x1="{_LEFT}" x2="{WIDTH - 8}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}" '
        'class="axis"/>'
        f'<text x="{_LEFT - 6}" y="{_TOP + 10}" text-anchor="end">{top:.0f}</text>'
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end">0</text>'
        f'<text x="{_LEFT}" y="{HEIGHT - 8}">{escape(points[0]["day"])}</text>'
        f'<text x="{WIDTH - 8}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{escape(points[-1]['day'])}</text>"
    )
    return (
        f'<figure class="chart"><svg xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" aria-label="{escape(title)}">{axis}{"".join(shapes)}'
        f"</svg><figcaption>{escape(title)}</figcaption></figure>"
    )
