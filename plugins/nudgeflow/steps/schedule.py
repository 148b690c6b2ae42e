"""Step 5, schedule: D's rows of `send_schedule` in the warehouse and in its Parquet export,
then what readers use (warehouse.publish: the snapshot of the result schemas, the events by day)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from nudgeflow import __version__
from nudgeflow.config import NudgeflowError, load_settings
from nudgeflow.guardrails import violations
from nudgeflow.steps.progress import Progress, say
from nudgeflow.warehouse import connect, publish, read, replace_partition, write_parquet_atomically

POLICY = f"nudgeflow-agentic/{__version__}"


def export_path(home: Path, day: dt.date) -> Path:
    """HOME/exports/send_schedule/date=D/part-0.parquet, as the contract fixes it."""
    return Path(home) / "exports" / "send_schedule" / f"date={day.isoformat()}" / "part-0.parquet"


def step_schedule(home: Path, day: dt.date, run_id: str, progress: Progress = None) -> dict:
    """Write D's rows of `send_schedule` and replace its Parquet export atomically."""
    settings = load_settings(home)
    with connect(home) as con:
        broken = violations(con, day, settings)
        if broken.height:
            counts = ", ".join(f"{r} {n}" for r, n in broken.group_by("rule").len().sort("rule").iter_rows())
            first = broken.row(0, named=True)
            raise NudgeflowError(
                f"refusing to export the schedule of {day}: {broken['user_id'].n_unique()} row(s) break the "
                f"contract's rules ({counts}); e.g. user {first['user_id']!r}, message {first['message_id']!r} "
                f"at {first['send_at']}: {first['rule']}. The previous export is unchanged."
            )
        rows = read(
            con,
            "select schedule_date, user_id, message_id, channel, send_at, actions, propensity "
            "from decide.choices where schedule_date = ? order by user_id",
            [day],
        )
        rows = rows.with_columns(policy=pl.lit(POLICY), run_id=pl.lit(run_id))
        replace_partition(con, "main.send_schedule", day, rows)
    path = export_path(home, day)
    write_parquet_atomically(rows, path)
    snapshot = publish(home)
    say(progress, f"schedule: {rows.height} rows -> {path}; published {snapshot}")
    return {"rows": rows.height, "export": str(path)}
