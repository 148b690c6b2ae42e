"""The report on a simulated world: did the agentic group earn more than the holdout?

Reads the landed events (what really happened), the warehouse's user features (who is in
the holdout) and send outcomes (what the pipeline measured), and the simulator's ground
truth (the true effect of every realised send). Never used by the pipeline itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import polars as pl

from nudgeflow.settings import NudgeflowError, load_settings, warehouse_path

Z95 = 1.959963984540054


def mean_ci(values: pl.Series) -> tuple[float, float, float]:
    """Mean and its 95% normal-approximation interval."""
    n = values.len()
    mean = float(values.mean()) if n else math.nan
    se = float(values.std()) / math.sqrt(n) if n > 1 else math.nan
    return mean, mean - Z95 * se, mean + Z95 * se


def diff_ci(a: pl.Series, b: pl.Series) -> tuple[float, float, float]:
    """Difference of means a - b with its 95% Welch (normal) interval."""
    d = float(a.mean()) - float(b.mean())
    se = math.sqrt(float(a.var()) / a.len() + float(b.var()) / b.len())
    return d, d - Z95 * se, d + Z95 * se


def _events_glob(home: Path) -> str:
    return str(Path(home) / "landing" / "events" / "*.parquet")


def demo_figures(home: Path, days: int = 14) -> dict:
    """Per-user goal events and GMV over the last `days` simulated days, agentic vs holdout."""
    home = Path(home)
    settings = load_settings(home)
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"attach '{warehouse_path(home)}' as wh (read_only)")
    end = con.execute(f"select max(event_ts)::date + 1 from read_parquet('{_events_glob(home)}')").fetchall()[0][0]
    per_user = con.sql(
        f"""
        with window_events as (
            select user_id, value
            from read_parquet('{_events_glob(home)}')
            where event_name = ? and event_ts >= ?::date - ?::int and event_ts < ?::date
        )
        select u.user_id, u.is_holdout,
               count(e.user_id)::double as goal_events,
               coalesce(sum(e.value), 0)::double as gmv
        from wh.marts.user_features as u
        left join window_events as e using (user_id)
        group by all
        """,
        params=[settings.goal_event, end, days, end],
    ).pl()
    agentic = per_user.filter(~pl.col("is_holdout"))
    holdout = per_user.filter(pl.col("is_holdout"))
    figures = {"window_end": str(end), "days": days, "users_agentic": agentic.height,
               "users_holdout": holdout.height}
    for metric in ("goal_events", "gmv"):
        figures[metric] = {
            "agentic": mean_ci(agentic[metric]),
            "holdout": mean_ci(holdout[metric]),
            "difference": diff_ci(agentic[metric], holdout[metric]),
        }
    truth = sorted((home / "truth").glob("send_effects*/*.parquet")) + sorted((home / "truth").glob("send_effects*.parquet"))
    if truth:
        files = ", ".join(f"'{p}'" for p in truth)
        sign = con.execute(
            f"""
            select count(*) as n,
                   avg(case when sign(o.delta_y) = sign(t.true_effect) then 1.0 else 0.0 end) as agree,
                   corr(o.delta_y, t.true_effect) as corr
            from wh.marts.send_outcomes as o
            join read_parquet([{files}], union_by_name = true) as t using (send_id)
            where o.is_scored and t.true_effect <> 0
            """
        ).fetchall()[0]
        figures["sign_agreement"] = {"matured_sends": sign[0], "share": sign[1], "correlation": sign[2]}
    con.close()
    return figures


def print_report(home: Path, days: int = 14) -> dict:
    """Print the agentic-vs-holdout table of a simulated home (when it has a warehouse) and
    the sections of its last evaluations; raise NudgeflowError when there is neither."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    sections = evaluation_sections(home)
    f: dict = {}
    if warehouse_path(home).exists():
        f = demo_figures(home, days)
        table = Table(title=f"Per user over the {f['days']} days before {f['window_end']} "
                            f"(agentic n={f['users_agentic']}, holdout n={f['users_holdout']}), 95% CI")
        for column in ("metric", "agentic", "holdout", "agentic - holdout", "relative"):
            table.add_column(column, justify="right")
        for metric in ("goal_events", "gmv"):
            a, h, d = f[metric]["agentic"], f[metric]["holdout"], f[metric]["difference"]
            table.add_row(metric, f"{a[0]:.4f} [{a[1]:.4f}, {a[2]:.4f}]", f"{h[0]:.4f} [{h[1]:.4f}, {h[2]:.4f}]",
                          f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]",
                          f"{d[0] / h[0]:+.1%}" if h[0] else "n/a")
        console.print(table)
        if "sign_agreement" in f:
            s = f["sign_agreement"]
            console.print(f"Matured sends scored: {s['matured_sends']}; estimated effect has the sign of the true "
                          f"one for {s['share']:.1%} of them (correlation {s['correlation']:.3f}).")
    elif not sections:
        raise NudgeflowError(f"nothing to report in {home}: no warehouse.duckdb (run `nudgeflow run` or "
                             "`nudgeflow demo`) and no evaluation (`nudgeflow evaluate ...`)")
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


def evaluation_sections(home: Path) -> list[tuple[str, list[tuple[str, ...]]]]:
    """The last evaluations written in HOME, as (title, [header, *rows]) tables: the
    measurement comparison (HOME/evaluation/measurement.json, `nudgeflow evaluate
    measurement`) and the policy comparison (HOME/reports/policies/summary.csv, `nudgeflow
    evaluate policies`). Missing files give no section."""
    import json

    from nudgeflow.evaluate_measurement import ESTIMATOR_LABELS, ESTIMATORS, format_ci

    sections = []
    path = Path(home) / "evaluation" / "measurement.json"
    if path.exists():
        res = json.loads(path.read_text())
        est = res["main"]["estimators"]
        rows = [("estimator", "RMSE [95% CI]", "corr(true ΔY)", "sign accuracy")]
        rows += [(ESTIMATOR_LABELS[e], format_ci(est[e]["rmse"]), format_ci(est[e]["corr"]),
                  format_ci(est[e]["sign_accuracy"])) for e in ESTIMATORS if e in est]
        sections.append((f"Measurement against the simulator's truth, as of {res['as_of']} "
                         f"({res['main']['n_sends']} sends; {path.with_suffix('.md')})", rows))
    path = Path(home) / "reports" / "policies" / "summary.csv"
    if path.exists():
        summary = pl.read_csv(path)
        rows = [("world", "policy", "incr. purchases [95% CI]", "true effect [95% CI]", "oracle share")]
        for r in summary.sort("world", "true_effect_mean", descending=[False, True]).iter_rows(named=True):
            rows.append((r["world"], r["policy"],
                         format_ci([r["inc_purchases_mean"], r["inc_purchases_lo"], r["inc_purchases_hi"]], "{:.1f}"),
                         format_ci([r["true_effect_mean"], r["true_effect_lo"], r["true_effect_hi"]], "{:.1f}"),
                         f"{r['oracle_share_te_mean']:.2f}"))
        sections.append((f"Policies in closed loop, increments over no messages ({path.parent})", rows))
    return sections
