"""The feeding-history picture: statistics → one self-contained HTML file with inline SVG.

Pure (no I/O, no clock): no JavaScript, no network, no dependency. Two charts:

- feeds per bowl per day: one bar (``<rect class="bar">``) per bowl per day, its height the
  accepted feed requests; its tooltip also gives the feeds the feeder confirmed;
- food level over time: a line through the ``FoodLevelChanged`` points (0-100 %).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from gateway.stats import BOWLS, Stats

WIDTH = 760
HEIGHT = 260
PAD_L, PAD_R, PAD_T, PAD_B = 48, 16, 16, 40
COLOURS = {"left": "#4e79a7", "right": "#f28e2b"}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
svg { background: #fafafa; border: 1px solid #ddd; }
.axis { stroke: #888; stroke-width: 1; } .grid { stroke: #e4e4e4; stroke-width: 1; }
.label { font-size: 11px; fill: #555; } .note { color: #666; font-size: 0.9em; }
.line { fill: none; stroke: #59a14f; stroke-width: 2; } .point { fill: #59a14f; }
"""


def _nice_max(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if value <= step * 5:
            return step * 5
    return value


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def feeds_svg(stats: Stats, days: Sequence[str]) -> str:
    """Bars: for each day, one bar per bowl (accepted requests)."""
    plot_w = WIDTH - PAD_L - PAD_R
    plot_h = HEIGHT - PAD_T - PAD_B
    top = _nice_max(max((stats.feeds("requested", d, b) for d in days for b in BOWLS), default=0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="feeds per bowl per day">'
    ]
    for i in range(6):
        value = top * i // 5
        y = PAD_T + plot_h - plot_h * i / 5
        parts.append(
            f'<line class="grid" x1="{PAD_L}" y1="{y:.1f}" x2="{WIDTH - PAD_R}" y2="{y:.1f}"/>'
            f'<text class="label" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    slot = plot_w / max(1, len(days))
    bar_w = max(1.0, slot * 0.8 / len(BOWLS))
    label_every = max(1, len(days) // 12)
    for i, day in enumerate(days):
        x0 = PAD_L + i * slot + slot * 0.1
        for j, bowl in enumerate(BOWLS):
            n = stats.feeds("requested", day, bowl)
            done = stats.feeds("dispensed", day, bowl)
            h = plot_h * n / top
            x = x0 + j * bar_w
            y = PAD_T + plot_h - h
            parts.append(
                f'<rect class="bar" data-day="{day}" data-bowl="{bowl}" data-count="{n}" '
                f'x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[bowl]}"><title>{day} {bowl}: {n} accepted, '
                f"{done} confirmed dispensed</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text class="label" x="{x0 + slot * 0.4:.1f}" y="{HEIGHT - PAD_B + 16}" '
                f'text-anchor="middle">{day[5:]}</text>'
            )
    parts.append(
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{WIDTH - PAD_R}" '
        f'y2="{PAD_T + plot_h}"/>'
    )
    for j, bowl in enumerate(BOWLS):
        x = PAD_L + 10 + j * 80
        parts.append(
            f'<rect class="legend" x="{x}" y="{HEIGHT - 14}" width="10" height="10" '
            f'fill="{COLOURS[bowl]}"/><text class="label" x="{x + 14}" '
            f'y="{HEIGHT - 5}">{bowl}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def level_svg(stats: Stats) -> str:
    """A line through the food level points, time on x (recorded time), 0-100 % on y."""
    plot_w = WIDTH - PAD_L - PAD_R
    plot_h = HEIGHT - PAD_T - PAD_B
    points = sorted(stats.food_levels, key=lambda p: (p.at_ms, p.seq))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="food level over time">'
    ]
    for level in (0, 25, 50, 75, 100):
        y = PAD_T + plot_h - plot_h * level / 100
        parts.append(
            f'<line class="grid" x1="{PAD_L}" y1="{y:.1f}" x2="{WIDTH - PAD_R}" y2="{y:.1f}"/>'
            f'<text class="label" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{level}%</text>'
        )
    if points:
        t0, t1 = points[0].at_ms, points[-1].at_ms
        span = max(1, t1 - t0)
        xy = []
        for p in points:
            x = PAD_L + (plot_w * (p.at_ms - t0) / span if t1 > t0 else plot_w / 2)
            y = PAD_T + plot_h - plot_h * max(0, min(100, p.level)) / 100
            xy.append((x, y, p))
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in xy)
        parts.append(f'<polyline class="line" points="{coords}"/>')
        for x, y, p in xy:
            parts.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{_time(p.at_ms)} (seq {p.seq}): {p.level}%</title></circle>"
            )
        for ms, anchor, x in ((t0, "start", PAD_L), (t1, "end", WIDTH - PAD_R)):
            parts.append(
                f'<text class="label" x="{x}" y="{HEIGHT - PAD_B + 16}" '
                f'text-anchor="{anchor}">{_time(ms)}</text>'
            )
    else:
        parts.append(
            f'<text class="label" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            "no food level reported in this range</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(stats: Stats, *, days: Sequence[str] | None = None, title: str = "") -> str:
    """The whole page. ``days`` defaults to every day from the first to the last with data."""
    shown = list(days) if days is not None else stats.days()
    title = title or "Feeding history"
    accepted = sum(stats.feeds("requested", d, b) for d in shown for b in BOWLS)
    confirmed = sum(stats.feeds("dispensed", d, b) for d in shown for b in BOWLS)
    uptime = stats.uptime.fraction
    rejected = ", ".join(f"{escape(k)} {v}" for k, v in sorted(stats.rejections.items()))
    seqs = "" if stats.first_seq is None else f"seq {stats.first_seq}-{stats.last_seq}, "
    summary = (
        f"{seqs}{stats.events} events; {accepted} feeds accepted, {confirmed} confirmed "
        f"dispensed; rejected: {rejected or 'none'}; unconfirmed: {stats.unconfirmed}; "
        f"feeder online: {'unknown' if uptime is None else f'{uptime:.1%}'}"
    )
    span = f"{shown[0]} to {shown[-1]}" if shown else "no days"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n<p>{summary}</p>\n"
        f"<h2>Feeds per bowl per day ({span}, UTC)</h2>\n{feeds_svg(stats, shown)}\n"
        "<p class=note>Bars: accepted feed requests (FeedRequested), per bowl, per UTC day of "
        "each event's recorded time; hover for the feeds the feeder confirmed.</p>\n"
        f"<h2>Food level over time</h2>\n{level_svg(stats)}\n"
        "<p class=note>Times are as recorded; they may be wrong for events journaled before the "
        "clock was synchronised. The journal's order is seq, not time.</p>\n"
        "</body>\n</html>\n"
    )
