"""The report on a home: did the agentic group earn more goal events than the holdout?

Reads the published warehouse: its events (what really happened, typed and deduplicated)
and user features (who is in the holdout). Plugins (the lab, for simulated homes) add lines and sections: the
simulator's truth and the last evaluations. Never used by the daily run itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from nudgeflow.config import NudgeflowError, load_settings
from nudgeflow.plugins import plugins
from nudgeflow.warehouse import connect, published_path

Z95 = 1.959963984540054


def mean_ci(values: pl.Series) -> tuple[float, float, float]:
    """Mean and its 95% normal-approximation interval."""
    n = values.len()
    mean = float(values.mean()) if n else math.nan
    se = float(values.std()) / math.sqrt(n) if n > 1 else math.nan
    return mean, mean - Z95 * se, mean + Z95 * se  # NaN bounds with fewer than two users


def diff_ci(a: pl.Series, b: pl.Series) -> tuple[float, float, float]:
    """Difference of means a - b with its 95% Welch (normal) interval."""
    if a.len() < 2 or b.len() < 2:  # no interval without two users a side
        d = float(a.mean()) - float(b.mean()) if a.len() and b.len() else math.nan
        return d, math.nan, math.nan
    d = float(a.mean()) - float(b.mean())
    se = math.sqrt(float(a.var()) / a.len() + float(b.var()) / b.len())
    return d, d - Z95 * se, d + Z95 * se


def lift_figures(home: Path, days: int = 14) -> dict:
    """Per-user goal events and GMV over the last `days` days of the events the last run saw
    (the published warehouse's typed, deduplicated events, whatever the landed format),
    agentic vs holdout."""
    home = Path(home)
    settings = load_settings(home)
    with connect(home, published=True) as con:
        end, n_goal = con.execute(
            "select max(event_ts)::date + 1, count(*) filter (where event_name = ?) from events",
            [settings.goal_event],
        ).fetchall()[0]
        if end is None:
            raise NudgeflowError(f"no events in {home} yet: nothing to report")
        per_user = con.sql(
            """
            with window_events as (
                select user_id, value
                from events
                where event_name = $goal and event_ts >= $end::date - $days::int and event_ts < $end::date
            )
            select u.user_id, u.is_holdout,
                   count(e.user_id)::double as goal_events,
                   coalesce(sum(e.value), 0)::double as gmv
            from marts.user_features as u
            left join window_events as e using (user_id)
            group by all
            """,
            params={"goal": settings.goal_event, "end": end, "days": days},
        ).pl()
    agentic = per_user.filter(~pl.col("is_holdout"))
    holdout = per_user.filter(pl.col("is_holdout"))
    figures = {
        "window_end": str(end),
        "days": days,
        "users_agentic": agentic.height,
        "users_holdout": holdout.height,
        "goal_event": settings.goal_event,
        "goal_events_landed": n_goal,
    }
    for metric in ("goal_events", "gmv"):
        figures[metric] = {
            "agentic": mean_ci(agentic[metric]),
            "holdout": mean_ci(holdout[metric]),
            "difference": diff_ci(agentic[metric], holdout[metric]),
        }
    return figures


def print_report(home: Path, days: int = 14) -> dict:
    """Print the agentic-vs-holdout table of a home (when it has a warehouse) and the
    plugins' lines and sections; raise NudgeflowError when there is nothing to show."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    sections = [section for plugin in plugins() for section in plugin.report_sections(home)]
    f: dict = {}
    if published_path(home).exists():
        f = lift_figures(home, days)
        if f["goal_events_landed"] == 0:
            console.print(
                f"warning: the goal event {f['goal_event']!r} occurs in none of the landed events "
                "(check goal_event in nudgeflow.yml)",
                markup=False,
                highlight=False,
            )
        table = Table(
            title=f"Per user over the {f['days']} days before {f['window_end']} "
            f"(agentic n={f['users_agentic']}, holdout n={f['users_holdout']}), 95% CI"
        )
        for column in ("metric", "agentic", "holdout", "agentic - holdout", "relative"):
            table.add_column(column, justify="right")
        for metric in ("goal_events", "gmv"):
            a, h, d = f[metric]["agentic"], f[metric]["holdout"], f[metric]["difference"]
            table.add_row(
                metric,
                f"{a[0]:.4f} [{a[1]:.4f}, {a[2]:.4f}]",
                f"{h[0]:.4f} [{h[1]:.4f}, {h[2]:.4f}]",
                f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]",
                f"{d[0] / h[0]:+.1%}" if h[0] else "n/a",
            )
        console.print(table)
        for plugin in plugins():
            for line in plugin.report_lines(home, f):
                console.print(line, markup=False, highlight=False)
    elif not sections:
        raise NudgeflowError(
            f"nothing to report in {home}: no published warehouse (run `nudgeflow run` or "
            "`nudgeflow demo`) and no evaluation (`nudgeflow evaluate ...`)"
        )
    else:
        console.print(f"{home} has no warehouse yet: only its evaluations are shown.")
    for title, rows in sections:
        section = Table(title=title)
        for column in rows[0]:
            section.add_column(column, justify="right")
        for row in rows[1:]:
            section.add_row(*row)
        console.print(section)
    return f
