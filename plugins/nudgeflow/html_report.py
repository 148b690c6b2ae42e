"""`nudgeflow report --html OUT`: one self-contained HTML file that people look at.

Read from the published snapshot and events (never the live file), on any home, simulated
or not:

1. the agentic group's lift over the holdout in the style of the paper's Table 1: absolute
   increase in the share of users with an intent event and with a conversion (the goal
   event), relative increase in GMV, with 99 % intervals (nudgeflow/intervals.py, scipy);
2. the lift over time (goal events per user and day, per group: marts.daily_lift) and per
   channel (measured effects: marts.channel_effects);
3. the event weights with 95 % user-bootstrap intervals (marts.event_weight_strata);
4. the distribution of the measured effects ΔY (marts.send_outcomes);
5. how the posteriors moved for a sample of users (decide.posteriors);
6. which messages and send hours were chosen how often (send_schedule).
"""

from __future__ import annotations

import datetime as dt
import html
import math
from pathlib import Path

import numpy as np
import polars as pl

from nudgeflow.config import NudgeflowError, load_settings
from nudgeflow.intervals import event_weight_intervals, relative_increase, share_difference
from nudgeflow.svg import bars, lines
from nudgeflow.warehouse import connect, published_path, read, table_exists

LEVEL = 0.99


def _ci(v: tuple[float, float, float], pct: bool = True) -> str:
    """An estimate and its interval: shares in percentage points, ratios in percent."""
    if not all(math.isfinite(x) for x in v):
        return "n/a"
    unit = "pp" if pct else "%"  # percentage points of a share; percent of a mean
    return f"{100 * v[0]:+.2f} {unit} [{100 * v[1]:+.2f}, {100 * v[2]:+.2f}]"


def table_one(con, goal: str, intent: str | None, start: dt.date, end: dt.date) -> dict:
    """Per user over [start, end): had an intent event, had a conversion, GMV; agentic vs holdout."""
    per_user = read(
        con,
        """
        select u.is_holdout,
               coalesce(bool_or(e.event_name = $intent), false) as intent,
               coalesce(bool_or(e.event_name = $goal), false) as converted,
               coalesce(sum(e.value) filter (where e.event_name = $goal), 0)::double as gmv
        from marts.user_features as u
        left join events as e
            on e.user_id = u.user_id and e.event_ts >= $start::date and e.event_ts < $end::date
        group by u.user_id, u.is_holdout
        """,
        {"intent": intent or "", "goal": goal, "start": start, "end": end},
    )
    a, h = per_user.filter(~pl.col("is_holdout")), per_user.filter(pl.col("is_holdout"))
    out = {"n_agentic": a.height, "n_holdout": h.height}
    for col in ("intent", "converted"):
        out[col] = share_difference(int(a[col].sum()), a.height, int(h[col].sum()), h.height, LEVEL)
    out["gmv"] = relative_increase(a["gmv"].to_numpy(), h["gmv"].to_numpy(), LEVEL)
    return out


def figures(home: Path, days: int = 14, replicates: int = 200) -> dict:
    """Everything the HTML report shows, from the published warehouse."""
    path = published_path(home)
    if not path.exists():
        raise NudgeflowError(f"no published warehouse in {home}: run `nudgeflow run` first")
    settings = load_settings(home)
    with connect(home, published=True) as con:
        first, last = con.execute("select min(event_ts)::date, max(event_ts)::date + 1 from events").fetchall()[0]
        if last is None:
            raise NudgeflowError(f"no events in {home} yet: nothing to report")
        start = max(last - dt.timedelta(days=days), first)  # the days the data cover, at most `days`
        days = (last - start).days
        weights = read(con, "select event_name, is_goal, weight from marts.event_weights order by weight desc")
        proxies = weights.filter(~pl.col("is_goal"))
        intent = proxies["event_name"][0] if proxies.height else None
        f: dict = {
            "home": str(home),
            "start": start,
            "end": last,
            "days": days,
            "goal": settings.goal_event,
            "intent": intent,
        }
        f["table_one"] = table_one(con, settings.goal_event, intent, start, last)
        f["daily"] = read(con, "select * from marts.daily_lift where event_date >= ? order by event_date", [start])
        f["channels"] = read(
            con,
            "select channel, sum(scored_sends) as scored, sum(mean_delta_y * scored_sends) / sum(scored_sends) "
            "as mean_delta_y, sum(reward_share * scored_sends) / sum(scored_sends) as reward_share "
            "from marts.channel_effects where send_date >= ? and scored_sends > 0 group by channel order by channel",
            [start],
        )
        strata = read(con, "select * from marts.event_weight_strata")
        f["weights"] = (
            event_weight_intervals(strata, settings.goal_event, replicates, settings.seed) if strata.height else []
        )
        f["effects"] = read(con, "select delta_y from marts.send_outcomes where is_scored")["delta_y"].to_numpy()
        f["posteriors"] = _posterior_paths(con) if table_exists(con, "decide", "posterior_paths") else None
        if table_exists(con, "main", "send_schedule"):
            f["messages"] = read(
                con, "select message_id, count(*) as n from send_schedule group by 1 order by n desc, 1 limit 15"
            )
            f["hours"] = read(
                con,
                "select cast(json_extract_string(actions, '$.send_hour') as integer) as hour, "
                "count(*) as n from send_schedule group by 1 order by 1",
            )
        else:
            f["messages"] = f["hours"] = pl.DataFrame({"n": []})
    return f


def _posterior_paths(con) -> dict:
    """Posterior mean of each channel over the planned dates, for five users (stable choice:
    the snapshot's decide.posterior_paths, warehouse.LATEST_PATHS)."""
    frame = read(
        con,
        """
        select schedule_date, user_id, action, alpha / (alpha + beta) as mean
        from decide.posterior_paths
        where action_set = 'channel'
        order by schedule_date, user_id, action
    """,
    )
    return {"dates": sorted({str(d) for d in frame["schedule_date"].to_list()}), "rows": frame}


def render(f: dict) -> str:
    """The report as one HTML page with inline SVG charts."""
    t1 = f["table_one"]
    esc = html.escape
    parts = [
        f"<h1>nudgeflow: the lift over the holdout</h1><p>{esc(f['home'])} — events of "
        f"{f['start']} to {f['end'] - dt.timedelta(days=1)} ({f['days']} days); goal event "
        f"<code>{esc(f['goal'])}</code>; intent event <code>{esc(str(f['intent']))}</code> (the best "
        f"predictor of the goal by its event weight). Agentic users: {t1['n_agentic']}, holdout: "
        f"{t1['n_holdout']}.</p>"
    ]
    parts.append(
        "<h2>Lift (as in the paper's Table 1), 99% intervals</h2><table><tr><th></th><th>absolute increase in "
        "the share of users</th></tr>"
        f"<tr><td>Intent ({esc(str(f['intent']))})</td><td>{_ci(t1['intent'])}</td></tr>"
        f"<tr><td>Conversion ({esc(f['goal'])})</td><td>{_ci(t1['converted'])}</td></tr>"
        f"<tr><td>GMV (relative increase per user)</td><td>{_ci(t1['gmv'], pct=False)}</td></tr></table>"
        "<p class=note>Agentic minus holdout; an interval that contains 0 shows no measurable difference.</p>"
    )
    daily = f["daily"]
    if daily.height:
        wide = (
            daily.with_columns(rate=pl.col("goal_events") / pl.col("n_users"))
            .pivot("user_group", index="event_date", values="rate")
            .sort("event_date")
        )
        parts.append(
            lines(
                "Goal events per user and day",
                [str(d) for d in wide["event_date"]],
                {g: wide[g].to_list() for g in ("agentic", "holdout") if g in wide.columns},
            )
        )
    ch = f["channels"]
    parts.append(
        bars(
            "Mean measured effect ΔY of scored sends, per channel",
            ch["channel"].to_list(),
            ch["mean_delta_y"].to_list(),
        )
        if ch.height
        else "<p><em>No scored sends yet.</em></p>"
    )
    w = f["weights"]
    if w:
        parts.append(
            bars(
                "Event weights w_e with 95% user-bootstrap intervals",
                [r["event_name"] for r in w],
                [r["weight"] for r in w],
                [r["ci"][0] for r in w],
                [r["ci"][1] for r in w],
            )
        )
    eff = f["effects"][np.isfinite(f["effects"])] if len(f["effects"]) else f["effects"]
    if len(eff):
        lo, hi = np.percentile(eff, [1, 99])
        counts, edges = np.histogram(np.clip(eff, lo, hi), bins=24)
        parts.append(
            bars(
                f"Distribution of measured effects ΔY ({len(eff)} scored sends; 1st-99th percentile)",
                [f"{e:.2g}" for e in edges[:-1]],
                counts.astype(float).tolist(),
            )
        )
    post = f["posteriors"]
    if post and post["rows"].height:
        rows = post["rows"].with_columns(key=pl.col("user_id") + " " + pl.col("action"))
        wide = rows.pivot("key", index="schedule_date", values="mean").sort("schedule_date")
        keys = [c for c in wide.columns if c != "schedule_date"][:10]
        parts.append(
            lines(
                "Posterior mean per channel, five sample users, by planned date",
                [str(d) for d in wide["schedule_date"]],
                {k: wide[k].to_list() for k in keys},
            )
        )
    if f["messages"].height:
        parts.append(
            bars(
                "Messages chosen most often",
                f["messages"]["message_id"].to_list(),
                f["messages"]["n"].cast(pl.Float64).to_list(),
            )
        )
        parts.append(
            bars(
                "Local send hours chosen",
                [str(h) for h in f["hours"]["hour"]],
                f["hours"]["n"].cast(pl.Float64).to_list(),
            )
        )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:760px;margin:2em auto;color:#1a202c}"
        "table{border-collapse:collapse}td,th{border:1px solid #cbd5e0;padding:4px 8px}"
        ".note{color:#4a5568;font-size:90%}.chart{display:block;margin:1.5em 0}"
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>nudgeflow report</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_html_report(home: Path, out: Path, days: int = 14) -> Path:
    """Write the report to ``out`` (atomically) and return its path."""
    import os

    page = render(figures(home, days))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
