"""Charts drawn on the server as SVG: lines over time with deploys and rollbacks marked, and the reference
against current histogram of a feature. No JavaScript: a page with its charts reads with scripts off."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 640, 180, 36
COLOURS = ("#1f6feb", "#d97706", "#16a34a", "#9333ea", "#dc2626")


@dataclass(frozen=True)
class Line:
    label: str
    points: Sequence[tuple[dt.datetime, float | None]]


@dataclass(frozen=True)
class Mark:
    """A moment on the time axis: a deploy, a promotion, a rollback or an abort."""

    at: dt.datetime
    label: str
    kind: str  # deploy | rollback


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def time_chart(
    title: str,
    lines: Sequence[Line],
    marks: Sequence[Mark],
    since: dt.datetime,
    until: dt.datetime,
    unit: str = "",
) -> Markup:
    """A line chart over [since, until) with a vertical rule at each mark."""
    values = [v for line in lines for _, v in line.points if v is not None]
    top = max(values) if values else 1.0
    top = top * 1.1 if top > 0 else 1.0
    span = max((until - since).total_seconds(), 1.0)

    def x(at: dt.datetime) -> float:
        return PAD + (WIDTH - 2 * PAD) * min(max((at - since).total_seconds() / span, 0.0), 1.0)

    def y(v: float) -> float:
        return HEIGHT - PAD + -(HEIGHT - 2 * PAD) * (v / top)

    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{PAD}" y="14" class="chart-title">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>',
        f'<text x="2" y="{PAD + 4}" class="axis">{_fmt(top)}{escape(unit)}</text>',
        f'<text x="2" y="{HEIGHT - PAD}" class="axis">0</text>',
        f'<text x="{PAD}" y="{HEIGHT - 8}" class="axis">{since:%H:%M}</text>',
        f'<text x="{WIDTH - PAD - 30}" y="{HEIGHT - 8}" class="axis">{until:%H:%M}</text>',
    ]
    for mark in marks:
        if since <= mark.at <= until:
            colour = "#dc2626" if mark.kind == "rollback" else "#16a34a"
            mx = x(mark.at)
            parts.append(
                f'<line x1="{mx:.1f}" y1="{PAD - 10}" x2="{mx:.1f}" y2="{HEIGHT - PAD}" stroke="{colour}" '
                f'stroke-dasharray="3,3" class="mark mark-{mark.kind}"><title>{escape(mark.label)} '
                f"{mark.at:%H:%M:%S}</title></line>"
            )
    for i, line in enumerate(lines):
        colour = COLOURS[i % len(COLOURS)]
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        for at, v in line.points:
            if v is None:
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{x(at):.1f},{y(v):.1f}")
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif seg:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(seg)}"/>'
                )
        parts.append(
            f'<text x="{WIDTH - PAD - 120}" y="{14 + 12 * i}" fill="{colour}" class="legend">{escape(line.label)}</text>'
        )
    if not values:
        parts.append(f'<text x="{WIDTH / 2 - 30}" y="{HEIGHT / 2}" class="axis">no data</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(
    title: str, edges: Sequence[float], reference: Sequence[float], current: Sequence[float]
) -> Markup:
    """Reference (grey) and current (blue) shares side by side over the same bins."""
    n = max(len(reference), len(current), 1)
    top = max([*reference, *current, 1e-9])
    slot = (WIDTH - 2 * PAD) / n
    parts = [
        f'<svg class="chart histogram" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{PAD}" y="14" class="chart-title">{escape(title)}</text>',
        f'<text x="{WIDTH - PAD - 160}" y="14" fill="#999" class="legend">reference</text>',
        f'<text x="{WIDTH - PAD - 80}" y="14" fill="#1f6feb" class="legend">current</text>',
    ]
    for i in range(n):
        for j, (series, colour) in enumerate(((reference, "#999"), (current, "#1f6feb"))):
            v = series[i] if i < len(series) else 0
            h = (HEIGHT - 2 * PAD) * (v / top)
            parts.append(
                f'<rect x="{PAD + i * slot + j * slot / 2:.1f}" y="{HEIGHT - PAD - h:.1f}" '
                f'width="{max(slot / 2 - 1, 1):.1f}" height="{h:.1f}" fill="{colour}"/>'
            )
    if edges:
        parts.append(f'<text x="{PAD}" y="{HEIGHT - 8}" class="axis">{_fmt(edges[0])}</text>')
        parts.append(f'<text x="{WIDTH - PAD - 30}" y="{HEIGHT - 8}" class="axis">{_fmt(edges[-1])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
