"""Small SVG charts rendered on the server: no chart library, no script, nothing fetched.

Each chart is an `<svg>` with a `viewBox` (it scales to its container: a desktop column or a phone's width)
whose text stays at least about 10 px on a 360 px wide screen; every chart has a title, labelled axes with
units, and a `<title>`/`<desc>` for screen readers. Colours are the Okabe–Ito palette (distinguishable with
colour-blindness). Only presentation attributes are used (no `style`), so a strict CSP holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import count

from markupsafe import Markup, escape

__all__ = ["PALETTE", "bar_chart", "column_chart", "compact", "line_chart"]

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D1F", "#000000")
WIDTH = 400
FONT = 12
_TOP, _RIGHT, _BOTTOM, _LEFT = 30, 14, 46, 54
_ids = count(1)


def compact(value: float) -> str:
    """A short label for an axis tick or a bar: 0.05, 12, 3.4k, 1.2M."""
    if value == 0:
        return "0"
    size = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{value / limit:.3g}{suffix}"
    if size >= 1:
        return f"{value:.4g}"
    return f"{value:.2g}"


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(1, ticks)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _linear_ticks(low: float, high: float) -> list[float]:
    if high <= low:
        high = low + 1
    step = _nice_step(high - low)
    ticks = [round(math.floor(low / step) * step, 12)]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _text(x: float, y: float, content: str, anchor: str = "middle", size: int = FONT, extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="#222"{extra}>'
            f"{escape(content)}</text>")


def _frame(title: str, desc: str, height: int, body: list[str]) -> Markup:
    ident = f"chart{next(_ids)}"
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="{ident}t {ident}d" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">'
        f'<title id="{ident}t">{escape(title)}</title><desc id="{ident}d">{escape(desc)}</desc>'
        + _text(WIDTH / 2, 17, title, size=FONT + 2, extra=' font-weight="600"')
        + "".join(body)
        + "</svg>"
    )


def _legend(names: Sequence[str], y: float) -> tuple[list[str], float]:
    """Legend entries in rows starting at `y`; returns the markup and the y below it."""
    parts: list[str] = []
    x = float(_LEFT)
    for i, name in enumerate(names):
        width = 18 + 7.6 * len(name) + 14
        if x + width > WIDTH - _RIGHT and x > _LEFT:
            x, y = _LEFT, y + 16
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="11" height="11" fill="{colour}"/>')
        parts.append(_text(x + 15, y, name, anchor="start", size=FONT - 1))
        x += width
    return parts, y + 10


def _empty(title: str, height: int = 120) -> Markup:
    return _frame(title, "no data yet", height, [_text(WIDTH / 2, height / 2 + 8, "no data yet")])


def _time_label(ms: float, span_ms: float) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if span_ms <= 2 * 86_400_000:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    time_x: bool = False,
    log_y: bool = False,
    height: int = 270,
) -> Markup:
    """One line per series of (x, y) points. `time_x`: x values are epoch ms (UTC dates on the axis);
    `log_y`: a log₁₀ y axis (values below 1 are drawn at 1)."""
    points = [p for values in series.values() for p in values]
    if not points:
        return _empty(title)
    names = list(series)
    body, top = _legend(names, _TOP + 6) if len(names) > 1 else ([], float(_TOP))
    top += 4
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    if x_high == x_low:
        x_high = x_low + 1
    transform: Callable[[float], float] = (lambda v: math.log10(max(v, 1.0))) if log_y else (lambda v: v)
    y_values = [transform(p[1]) for p in points]
    if log_y:
        y_low, y_high = 0.0, max(1.0, math.ceil(max(y_values)))
        y_ticks = [float(v) for v in range(int(y_high) + 1)]
    else:
        y_ticks = _linear_ticks(min(0.0, min(y_values)), max(y_values))
        y_low, y_high = y_ticks[0], y_ticks[-1]
    left, right, bottom = _LEFT, WIDTH - _RIGHT, height - _BOTTOM

    def sx(v: float) -> float:
        return left + (v - x_low) / (x_high - x_low) * (right - left)

    def sy(v: float) -> float:
        return bottom - (v - y_low) / ((y_high - y_low) or 1) * (bottom - top)

    for tick in y_ticks:
        y = sy(tick)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(_text(left - 5, y + 4, compact(10**tick if log_y else tick), anchor="end"))
    if time_x:
        x_ticks = [x_low + (x_high - x_low) * i / 2 for i in range(3)]
        labels = [_time_label(v, x_high - x_low) for v in x_ticks]
    else:
        x_ticks = _linear_ticks(x_low, x_high)
        x_ticks = [v for v in x_ticks if x_low <= v <= x_high]
        labels = [compact(v) for v in x_ticks]
    for tick, label in zip(x_ticks, labels, strict=True):
        x = sx(tick)
        body.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#444"/>')
        anchor = "start" if tick == x_low and time_x else "end" if tick == x_high and time_x else "middle"
        body.append(_text(x, bottom + 16, label, anchor=anchor))
    body.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#444"/>')
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#444"/>')
    for i, name in enumerate(names):
        path = " ".join(f"{sx(x):.1f},{sy(transform(y)):.1f}" for x, y in series[name])
        colour = PALETTE[i % len(PALETTE)]
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8" '
                    f'stroke-linejoin="round"><title>{escape(name)}</title></polyline>')
    body.append(_text((left + right) / 2, height - 8, x_label))
    body.append(_text(13, (top + bottom) / 2, y_label, extra=f' transform="rotate(-90 13 {(top + bottom) / 2:.1f})"'))
    desc = f"{y_label} against {x_label}" + (f" for {', '.join(names)}" if len(names) > 1 else "")
    return _frame(title, desc, height, body)


def column_chart(
    labels: Sequence[str], values: Sequence[float], *, title: str, x_label: str, y_label: str, height: int = 250
) -> Markup:
    """Vertical bars (a histogram or counts by category), value printed above each bar."""
    if not labels or not any(values):
        return _empty(title)
    left, right, top, bottom = _LEFT, WIDTH - _RIGHT, _TOP + 10, height - _BOTTOM
    ticks = _linear_ticks(0.0, max(values) * 1.1)
    high = ticks[-1] or 1.0
    body: list[str] = []
    for tick in ticks:
        y = bottom - tick / high * (bottom - top)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(_text(left - 5, y + 4, compact(tick), anchor="end"))
    slot = (right - left) / len(labels)
    every = max(1, math.ceil(len(labels) * 34 / (right - left)))
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = left + i * slot
        h = value / high * (bottom - top)
        body.append(f'<rect x="{x + slot * 0.12:.1f}" y="{bottom - h:.1f}" width="{slot * 0.76:.1f}" '
                    f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{escape(label)}: {compact(value)}</title></rect>')
        if len(labels) <= 12:
            body.append(_text(x + slot / 2, bottom - h - 3, compact(value), size=FONT - 1))
        if i % every == 0:
            body.append(_text(x + slot / 2, bottom + 15, label, size=FONT - 1))
    body.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#444"/>')
    body.append(_text((left + right) / 2, height - 8, x_label))
    body.append(_text(13, (top + bottom) / 2, y_label, extra=f' transform="rotate(-90 13 {(top + bottom) / 2:.1f})"'))
    return _frame(title, f"{y_label} by {x_label}", height, body)


def bar_chart(
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    title: str,
    value_label: str,
    percent: bool = False,
) -> Markup:
    """Horizontal bars: one group per category, one bar per series (one series: plain bars). Values are
    printed at the bar ends (`percent`: values in [0, 1] shown as %)."""
    names = list(series)
    if not categories or not names:
        return _empty(title)
    body, top = _legend(names, _TOP + 6) if len(names) > 1 else ([], float(_TOP))
    top += 6
    bar, gap = 14, 10
    group = bar * len(names) + gap
    label_width = min(150, max(40, int(6.4 * max(len(c) for c in categories)) + 8))
    left, right = label_width, WIDTH - _RIGHT - 34
    height = int(top + group * len(categories) + _BOTTOM)
    bottom = height - _BOTTOM + 4
    peak = max((v for values in series.values() for v in values if math.isfinite(v)), default=0.0)
    ticks = _linear_ticks(0.0, peak if peak > 0 else 1.0)
    high = ticks[-1] or 1.0

    def fmt(v: float) -> str:
        return f"{v * 100:.1f}%" if percent else compact(v)

    for tick in ticks:
        x = left + tick / high * (right - left)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
        body.append(_text(x, bottom + 14, fmt(tick)))
    for g, category in enumerate(categories):
        y0 = top + g * group
        shown = category if len(category) <= 22 else category[:21] + "…"
        body.append(_text(left - 6, y0 + group / 2, shown, anchor="end", size=FONT - 1))
        for s, name in enumerate(names):
            value = series[name][g]
            value = value if math.isfinite(value) else 0.0
            w = max(0.0, value) / high * (right - left)
            y = y0 + s * bar
            body.append(f'<rect x="{left}" y="{y:.1f}" width="{w:.1f}" height="{bar - 2}" '
                        f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)} · {escape(category)}: '
                        f"{fmt(value)}</title></rect>")
            body.append(_text(left + w + 3, y + bar - 4, fmt(value), anchor="start", size=FONT - 2))
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#444"/>')
    body.append(_text((left + right) / 2, height - 8, value_label))
    return _frame(title, f"{value_label} by {', '.join(names) if len(names) > 1 else 'category'}", height, body)


def log_bins(values: Sequence[int]) -> tuple[list[str], list[int]]:
    """Counts of `values` (≥ 1) in power-of-two bins [1], [2, 3], [4, 7], …, each labelled by its lower
    bound, from the first non-empty bin to the last."""
    if not values:
        return [], []
    counts = [0] * (int(math.log2(max(max(values), 1))) + 1)
    for v in values:
        counts[int(math.log2(max(v, 1)))] += 1
    first = next(i for i, n in enumerate(counts) if n)
    return [compact(2**i) for i in range(first, len(counts))], counts[first:]


def rank_points(counts: Sequence[int], most: int = 300) -> list[tuple[float, float]]:
    """(rank, count) for a sorted-descending list, thinned to about `most` points (log-spaced ranks)."""
    n = len(counts)
    if n <= most:
        return [(i + 1, c) for i, c in enumerate(counts)]
    ranks = sorted({round(10 ** (math.log10(n) * i / most)) for i in range(most + 1)} | {n})
    return [(r, counts[r - 1]) for r in ranks if 1 <= r <= n]


def date_of(ms: int | float | None) -> str:
    """Epoch ms as a UTC date and time, for tables."""
    if ms is None:
        return "–"
    return datetime.fromtimestamp(float(ms) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
