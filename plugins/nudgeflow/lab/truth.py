"""What the simulator's truth says about a simulated home, for `nudgeflow report`.

The lab's report plugin: the true incremental goal events of the agentic group, how well the
reward tells good sends from bad ones, and the sections of the home's last evaluations
(`nudgeflow evaluate measurement|policies`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from nudgeflow.warehouse import published_events, published_path


def truth_figures(home: Path, days: int = 14) -> dict:
    """What the simulator's truth says, {} for a home without it:

    - ``true_lift``: the true incremental goal events per user of the sends of the last
      ``days`` days (the sum of their true effects), agentic vs holdout, with 95 % intervals;
    - ``reward``: over the scored sends, P(reward = 1 | true effect > 0), P(reward = 1 | true
      effect < 0) and the correlation of ΔY with the true effect;
    - ``sign_agreement``: the share of scored sends whose ΔY has the true effect's sign."""
    from nudgeflow.report import diff_ci, mean_ci

    home = Path(home)
    truth = sorted((home / "truth").glob("send_effects*/*.parquet")) + sorted(
        (home / "truth").glob("send_effects*.parquet")
    )
    if not published_path(home).exists() or not truth:
        return {}
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"attach '{published_path(home)}' as wh (read_only)")
        con.execute(f"create temp view events as select * from {published_events(home)}")
        files = ", ".join(f"'{p}'" for p in truth)
        con.execute(f"create temp view effects as select * from read_parquet([{files}], union_by_name = true)")
        n, agree, corr, p_pos, p_neg = con.execute(
            """
            select count(*),
                   avg(case when sign(o.delta_y) = sign(t.true_effect) then 1.0 else 0.0 end),
                   corr(o.delta_y, t.true_effect),
                   avg(o.reward) filter (where t.true_effect > 0),
                   avg(o.reward) filter (where t.true_effect < 0)
            from wh.marts.send_outcomes as o
            join effects as t using (send_id)
            where o.is_scored and t.true_effect <> 0
            """
        ).fetchall()[0]
        per_user = con.sql(
            """
            with last_day as (select max(event_ts)::date + 1 as d from events)
            select u.is_holdout, coalesce(sum(t.true_effect), 0)::double as true_increment
            from wh.marts.user_features as u
            left join effects as t
                on t.user_id = u.user_id
                and t.sent_ts >= (select d from last_day) - $days::int
                and t.sent_ts < (select d from last_day)
            group by u.user_id, u.is_holdout
            """,
            params={"days": days},
        ).pl()
    finally:
        con.close()
    agentic = per_user.filter(~pl.col("is_holdout"))["true_increment"]
    holdout = per_user.filter(pl.col("is_holdout"))["true_increment"]
    return {
        "sign_agreement": {"matured_sends": n, "share": agree, "correlation": corr},
        "reward": {"p_if_positive": p_pos, "p_if_negative": p_neg, "correlation": corr, "scored_sends": n},
        "true_lift": {
            "days": days,
            "agentic": mean_ci(agentic),
            "holdout": mean_ci(holdout),
            "difference": diff_ci(agentic, holdout),
        },
    }


def report_lines(home: Path, figures: dict) -> list[str]:
    """The simulator's truth beside the realised table, each figure explained in one line."""
    t = truth_figures(home, figures.get("days", 14))
    if not t:
        return []
    lift, r = t["true_lift"], t["reward"]
    a, h, d = lift["agentic"], lift["holdout"], lift["difference"]
    lines = [
        f"True incremental goal events per user (simulator, sends of the last {lift['days']} days): agentic "
        f"{a[0]:.4f} [{a[1]:.4f}, {a[2]:.4f}], holdout {h[0]:.4f}; difference {d[0]:+.4f} [{d[1]:+.4f}, "
        f"{d[2]:+.4f}]: what the agentic sends really added, free of the realised table's noise.",
    ]
    if r["p_if_positive"] is not None and r["p_if_negative"] is not None:
        lines.append(
            f"Reward vs truth over {r['scored_sends']} scored sends: P(reward 1 | true effect > 0) = "
            f"{r['p_if_positive']:.3f} against {r['p_if_negative']:.3f} when it is < 0: a gap of "
            f"{r['p_if_positive'] - r['p_if_negative']:+.3f} is how well one send's reward tells a good send "
            f"from a bad one (0: not at all); correlation of the measured ΔY with the true effect "
            f"{r['correlation']:.3f}."
        )
    return lines


def report_sections(home: Path) -> list[tuple[str, list[tuple[str, ...]]]]:
    """The last evaluations written in HOME, as (title, [header, *rows]) tables: the
    measurement comparison (HOME/evaluation/measurement.json, `nudgeflow evaluate
    measurement`) and the policy comparison (HOME/reports/policies/summary.csv, `nudgeflow
    evaluate policies`). Missing files give no section."""
    import json

    from nudgeflow.lab.evaluate_measurement import ESTIMATOR_LABELS, ESTIMATORS, format_ci

    sections = []
    path = Path(home) / "evaluation" / "measurement.json"
    if path.exists():
        res = json.loads(path.read_text())
        est = res["main"]["estimators"]
        rows = [("estimator", "RMSE [95% CI]", "corr(true ΔY)", "sign accuracy")]
        rows += [
            (
                ESTIMATOR_LABELS[e],
                format_ci(est[e]["rmse"]),
                format_ci(est[e]["corr"]),
                format_ci(est[e]["sign_accuracy"]),
            )
            for e in ESTIMATORS
            if e in est
        ]
        sections.append(
            (
                f"Measurement against the simulator's truth, as of {res['as_of']} "
                f"({res['main']['n_sends']} sends; {path.with_suffix('.md')})",
                rows,
            )
        )
    path = Path(home) / "reports" / "policies" / "summary.csv"
    if path.exists():
        summary = pl.read_csv(path)
        rows = [("world", "policy", "incr. purchases [95% CI]", "true effect [95% CI]", "oracle share")]
        for r in summary.sort("world", "true_effect_mean", descending=[False, True]).iter_rows(named=True):
            rows.append(
                (
                    r["world"],
                    r["policy"],
                    format_ci([r["inc_purchases_mean"], r["inc_purchases_lo"], r["inc_purchases_hi"]], "{:.1f}"),
                    format_ci([r["true_effect_mean"], r["true_effect_lo"], r["true_effect_hi"]], "{:.1f}"),
                    f"{r['oracle_share_te_mean']:.2f}",
                )
            )
        sections.append((f"Policies in closed loop, increments over no messages ({path.parent})", rows))
    return sections
