"""A grouped bar chart as plain geometry, drawn as inline SVG by the dashboard's template: no
JavaScript, no CDN, nothing to bundle, and the numbers are in the page (each bar has a title)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from operations.selectors import DayActivity

WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 44


@dataclass(frozen=True)
class Bar:
    series: str  # "messages" | "tickets"
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    label: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: int
    right: float  # x of the plot's right edge
    top: int
    bottom: float  # y of the plot's baseline
    bars: list[Bar]
    y_ticks: list[Tick]
    x_labels: list[XLabel]
    total_messages: int
    total_tickets: int
    description: str


def nice_step(maximum: int, ticks: int = 4) -> int:
    """A 1-2-5 step such that `ticks` steps reach at least `maximum`."""
    if maximum <= ticks:
        return 1
    raw = maximum / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return int(factor * magnitude)
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def activity_chart(days: list[DayActivity]) -> BarChart:
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_h
    step = nice_step(max([d.messages for d in days] + [d.tickets for d in days] + [1]))
    top_value = step * max(1, math.ceil(max([d.messages for d in days] + [d.tickets for d in days] + [1]) / step))
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.36, 1.0)

    def height(value: int) -> float:
        return round(plot_h * value / top_value, 2)

    bars: list[Bar] = []
    labels: list[XLabel] = []
    for index, day in enumerate(days):
        x0 = LEFT + index * slot + slot * 0.12
        for offset, series, value in ((0.0, "messages", day.messages), (bar_w, "tickets", day.tickets)):
            h = height(value)
            bars.append(
                Bar(
                    series=series,
                    x=round(x0 + offset, 2),
                    y=round(baseline - h, 2),
                    width=round(bar_w, 2),
                    height=h,
                    title=f"{day.day:%Y-%m-%d}: {value} {series}",
                )
            )
        if index % 5 == 0 or index == len(days) - 1:
            labels.append(XLabel(x=round(LEFT + index * slot + slot / 2, 2), label=f"{day.day:%b %d}"))
    ticks = [
        Tick(y=round(baseline - plot_h * value / top_value, 2), label=str(value))
        for value in range(0, top_value + 1, step)
    ]
    total_messages = sum(d.messages for d in days)
    total_tickets = sum(d.tickets for d in days)
    first, last = (days[0].day, days[-1].day) if days else (None, None)
    return BarChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=baseline,
        bars=bars,
        y_ticks=ticks,
        x_labels=labels,
        total_messages=total_messages,
        total_tickets=total_tickets,
        description=(
            f"Amazon messages and tickets per day from {first} to {last}: "
            f"{total_messages} messages, {total_tickets} tickets"
        ),
    )
