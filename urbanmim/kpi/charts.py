"""Server-rendered SVG charts for the KPI pages: bars across cities, trend lines, a radar per dimension.

Why SVG built here rather than a chart library in the browser: the pages must work offline,
without JavaScript, and be readable by a screen reader. Each chart is an ``<svg role="img">``
with ``<title>`` and ``<desc>`` (``aria-labelledby`` both), every mark carries its own
``<title>`` (a tooltip and an accessible name), and every page shows the same numbers in a
table next to the chart. Text is escaped here (the result is ``Markup``), colours come from
one palette that keeps 3:1 contrast against white, and series also differ by marker shape
so colour is never the only cue.
"""

from __future__ import annotations

import itertools
import math
from html import escape

from markupsafe import Markup

# Okabe–Ito-like palette, each ≥ 3:1 against white (WCAG 1.4.11 non-text contrast)
PALETTE = ("#0b5ea8", "#b35900", "#1b7f4b", "#a3218e", "#5a5a5a", "#8a6d00")
MARKERS = ("circle", "square", "diamond", "triangle", "circle", "square")
_ids = itertools.count(1)


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:,.1f}"
    return f"{x:,.3g}"


def fmt(x: float | None) -> str:
    return "–" if x is None else _num(x)


def _head(width: int, height: int, title: str, desc: str) -> tuple[str, str]:
    n = next(_ids)
    tid, did = f"chart{n}-t", f"chart{n}-d"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" aria-labelledby="{tid} {did}" class="kpi-chart">'
            f'<title id="{tid}">{escape(title)}</title><desc id="{did}">{escape(desc)}</desc>'), "</svg>"


def _marker(kind: str, x: float, y: float, color: str, label: str) -> str:
    t = f"<title>{escape(label)}</title>"
    if kind == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{color}">{t}</rect>'
    if kind == "diamond":
        return (f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}" '
                f'fill="{color}">{t}</polygon>')
    if kind == "triangle":
        return (f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y + 4:.1f} {x - 5:.1f},{y + 4:.1f}" '
                f'fill="{color}">{t}</polygon>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}">{t}</circle>'


def bar_chart(title: str, desc: str, items: list[tuple[str, float | None, str]], unit: str,
              width: int = 420, order: list[str] | None = None) -> Markup:
    """Horizontal bars, one per city: ``items`` = (label, value, note such as the data-quality level).
    ``order`` (all the cities of the page) keeps each city's colour the same in every chart."""
    row, left, right = 26, 110, 90
    height = 12 + row * max(1, len(items))
    vals = [v for _, v, _ in items if v is not None]
    top = max(vals) if vals else 1.0
    top = top if top > 0 else 1.0
    plot = width - left - right
    head, tail = _head(width, height, title, desc)
    parts = [head]
    for i, (label, v, note) in enumerate(items):
        y = 6 + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" font-size="12" fill="#1a1a1a">'
                     f'{escape(label)}</text>')
        if v is None:
            parts.append(f'<text x="{left + 4}" y="{y + 15}" font-size="12" fill="#555">–</text>')
            continue
        w = max(1.0, plot * max(0.0, v) / top)
        k = order.index(label) if order and label in order else i
        color = PALETTE[k % len(PALETTE)]
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="16" fill="{color}">'
                     f'<title>{escape(f"{label}: {fmt(v)} {unit} ({note})")}</title></rect>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 15}" font-size="12" fill="#1a1a1a">'
                     f'{escape(fmt(v))}</text>')
    parts.append(tail)
    return Markup("".join(parts))


def line_chart(title: str, desc: str, periods: list[str], series: list[tuple[str, list[float | None]]],
               unit: str, width: int = 560, height: int = 260) -> Markup:
    """One line per city over the periods (gaps where a period has no value)."""
    left, right, top_pad, bottom = 64, 110, 16, 36
    vals = [v for _, vs in series for v in vs if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    lo = min(lo, 0.0)
    if hi == lo:
        hi = lo + 1.0
    pw, ph = width - left - right, height - top_pad - bottom
    n = max(1, len(periods) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (pw * i / n if len(periods) > 1 else pw / 2)
        return x, top_pad + ph * (1 - (v - lo) / (hi - lo))
    head, tail = _head(width, height, title, desc)
    parts = [head, f'<line x1="{left}" y1="{top_pad + ph}" x2="{left + pw}" y2="{top_pad + ph}" stroke="#767676"/>',
             f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + ph}" stroke="#767676"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        _, y = xy(0, v)
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#1a1a1a">'
                     f'{escape(fmt(v))}</text>')
    for i, p in enumerate(periods):
        x, _ = xy(i, lo)
        parts.append(f'<text x="{x:.1f}" y="{top_pad + ph + 18}" text-anchor="middle" font-size="11" '
                     f'fill="#1a1a1a">{escape(p)}</text>')
    for s, (name, vs) in enumerate(series):
        color, marker = PALETTE[s % len(PALETTE)], MARKERS[s % len(MARKERS)]
        pts = [(i, v) for i, v in enumerate(vs) if v is not None]
        if len(pts) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{xy(i, v)[0]:.1f},{xy(i, v)[1]:.1f}" for j, (i, v) in enumerate(pts))
            parts.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, v in pts:
            x, y = xy(i, v)
            parts.append(_marker(marker, x, y, color, f"{name}, {periods[i]}: {fmt(v)} {unit}"))
        ly = top_pad + 14 + s * 18
        parts.append(_marker(marker, left + pw + 16, ly - 4, color, name))
        parts.append(f'<text x="{left + pw + 26}" y="{ly}" font-size="12" fill="#1a1a1a">{escape(name)}</text>')
    parts.append(tail)
    return Markup("".join(parts))


def radar(title: str, desc: str, axes: list[str], series: list[tuple[str, list[float | None]]],
          size: int = 360) -> Markup:
    """Scores 0..100 per axis (indicator), one polygon per city; needs at least three axes."""
    margin = 110                      # room for the axis labels on both sides
    cx, cy = margin + size / 2, size / 2
    rad = size / 2 - 40
    n = len(axes)
    head, tail = _head(size + 2 * margin + 110, size, title, desc)
    parts = [head]

    def pt(i: int, score: float) -> tuple[float, float]:
        a = -math.pi / 2 + 2 * math.pi * i / n
        return cx + rad * score / 100 * math.cos(a), cy + rad * score / 100 * math.sin(a)
    for ring in (25, 50, 75, 100):
        ring_pts = " ".join(f"{pt(i, ring)[0]:.1f},{pt(i, ring)[1]:.1f}" for i in range(n))
        parts.append(f'<polygon points="{ring_pts}" fill="none" stroke="#c4c4c4"/>')
    for i, label in enumerate(axes):
        x, y = pt(i, 100)
        lx, ly = pt(i, 118)
        anchor = "middle" if abs(lx - cx) < 10 else ("start" if lx > cx else "end")
        parts.append(f'<line x1="{cx}" y1="{cy}" x2="{x:.1f}" y2="{y:.1f}" stroke="#c4c4c4"/>')
        parts.append(f'<text x="{lx:.1f}" y="{ly + 4:.1f}" text-anchor="{anchor}" font-size="10" fill="#1a1a1a">'
                     f'{escape(label)}</text>')
    for s, (name, scores) in enumerate(series):
        color, marker = PALETTE[s % len(PALETTE)], MARKERS[s % len(MARKERS)]
        pts = [pt(i, v if v is not None else 0.0) for i, v in enumerate(scores)]
        poly = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(f'<polygon points="{poly}" fill="{color}" fill-opacity="0.12" stroke="{color}" '
                     f'stroke-width="2"/>')
        for (x, y), v, label in zip(pts, scores, axes, strict=True):
            parts.append(_marker(marker, x, y, color, f"{name}, {label}: {fmt(v)} / 100"))
        ly = 20 + s * 18
        lx = size + 2 * margin
        parts.append(_marker(marker, lx + 8, ly - 4, color, name))
        parts.append(f'<text x="{lx + 18}" y="{ly}" font-size="12" fill="#1a1a1a">{escape(name)}</text>')
    parts.append(tail)
    return Markup("".join(parts))
