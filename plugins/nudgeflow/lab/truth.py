"""What the simulator's truth says about a simulated home, for `nudgeflow report`.

The lab's report plugin: the agreement of the measured effects with the true ones, and the
sections of the home's last evaluations (`nudgeflow evaluate measurement|policies`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from nudgeflow.warehouse import published_path


def truth_figures(home: Path) -> dict:
    """Matured scored sends, the share whose estimated effect has the sign of the true one,
    and the correlation; {} for a home without simulated truth."""
    home = Path(home)
    if not published_path(home).exists():
        return {}
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"attach '{published_path(home)}' as wh (read_only)")
    figures = {}
    truth = sorted((home / "truth").glob("send_effects*/*.parquet")) + sorted(
        (home / "truth").glob("send_effects*.parquet")
    )
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


def report_lines(home: Path, figures: dict) -> list[str]:
    s = truth_figures(home).get("sign_agreement")
    if not s:
        return []
    return [
        f"Matured sends scored: {s['matured_sends']}; estimated effect has the sign of the true "
        f"one for {s['share']:.1%} of them (correlation {s['correlation']:.3f})."
    ]


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
