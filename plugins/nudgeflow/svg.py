"""Small self-contained SVG charts for the HTML report: bars (with intervals) and lines.

No JavaScript and no external assets, so the report is one file that opens anywhere.
"""

from __future__ import annotations

import html
import math

WIDTH, HEIGHT, PAD = 640, 260, 48
COLOURS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#4a5568")


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 0.001 or v == 0 else f"{v:.1e}"


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _frame(title: str, body: list[str], y_lo: float, y_hi: float, y) -> str:
    ticks = [y_lo + (y_hi - y_lo) * k / 4 for k in range(5)]
    axis = [
        f'<line x1="{PAD}" y1="{y(t):.1f}" x2="{WIDTH - 8}" y2="{y(t):.1f}" stroke="#e2e8f0"/>'
        f'<text x="{PAD - 4}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>'
        for t in ticks
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{html.escape(title)}" class="chart">'
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>'
        + "".join(axis)
        + "".join(body)
        + "</svg>"
    )


def bars(
    title: str, labels: list[str], values: list[float], lo: list[float] | None = None, hi: list[float] | None = None
) -> str:
    """Vertical bars with optional interval whiskers; a zero line when values change sign."""
    finite = [v for v in [*values, *(lo or []), *(hi or [])] if v is not None and math.isfinite(v)]
    if not finite:
        return f"<p><em>{html.escape(title)}: no data yet.</em></p>"
    y_lo, y_hi = min(0.0, *finite), max(0.0, *finite)
    y = _scale(y_lo, y_hi, HEIGHT - PAD, 28)
    n = len(values)
    step = (WIDTH - PAD - 8) / max(n, 1)
    body = []
    for i, v in enumerate(values):
        x = PAD + i * step + step * 0.15
        w = step * 0.7
        if v is not None and math.isfinite(v):
            top, bottom = sorted((y(v), y(0.0)))
            body.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{w:.1f}" height="{bottom - top:.1f}" '
                f'fill="{COLOURS[0]}"><title>{html.escape(labels[i])}: {_fmt(v)}</title></rect>'
            )
        if lo and hi and math.isfinite(lo[i]) and math.isfinite(hi[i]):
            cx = x + w / 2
            body.append(
                f'<line x1="{cx:.1f}" y1="{y(lo[i]):.1f}" x2="{cx:.1f}" y2="{y(hi[i]):.1f}" '
                'stroke="#1a202c" stroke-width="1.5"/>'
            )
        if n <= 24:
            body.append(
                f'<text x="{x + w / 2:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="end" font-size="10" '
                f'transform="rotate(-35 {x + w / 2:.1f} {HEIGHT - PAD + 14})">{html.escape(labels[i])}</text>'
            )
    body.append(f'<line x1="{PAD}" y1="{y(0.0):.1f}" x2="{WIDTH - 8}" y2="{y(0.0):.1f}" stroke="#4a5568"/>')
    return _frame(title, body, y_lo, y_hi, y)


def lines(title: str, x_labels: list[str], series: dict[str, list[float]]) -> str:
    """One line per series over the same x positions, with a legend."""
    finite = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    if not finite or len(x_labels) < 2:
        return f"<p><em>{html.escape(title)}: not enough data yet.</em></p>"
    y_lo, y_hi = min(finite), max(finite)
    y = _scale(y_lo, y_hi, HEIGHT - PAD, 28)
    x = _scale(0, len(x_labels) - 1, PAD, WIDTH - 8)
    body, legend = [], []
    for k, (name, vs) in enumerate(series.items()):
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vs) if v is not None and math.isfinite(v))
        colour = COLOURS[k % len(COLOURS)]
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        legend.append(f'<span style="color:{colour}">■ {html.escape(name)}</span>')
    step = max(1, len(x_labels) // 6)
    for i in range(0, len(x_labels), step):
        anchor = "start" if i == 0 else "end" if i + step >= len(x_labels) else "middle"
        body.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - PAD + 14}" text-anchor="{anchor}" font-size="10">'
            f"{html.escape(x_labels[i])}</text>"
        )
    return _frame(title, body, y_lo, y_hi, y) + f'<p class="legend">{" ".join(legend)}</p>'
