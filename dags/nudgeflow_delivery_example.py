"""An example delivery DAG: hands each new send schedule to a delivery provider.

Scheduled on the Asset `nudgeflow_send_schedule` that `nudgeflow_daily` updates: each time a
day's schedule is exported, this DAG reads that export (the path and date travel in the asset
event) and hands its rows to the delivery provider's API. Here the API is a stub that accepts
every row; it records what was handed over in `HOME/delivered/date=D/part-0.parquet` (one row
per send with the provider's receipt). Replace `send_to_provider` with your provider's client;
the provider sends each row at its `send_at`. Created paused: unpause it once it delivers.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Asset, dag, task

SEND_SCHEDULE = Asset("nudgeflow_send_schedule")  # HOME/exports/send_schedule/date=D/part-0.parquet


def send_to_provider(rows: list[dict]) -> list[dict]:
    """The delivery API stub: accepts every row and returns a receipt per row."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return [
        {
            "user_id": r["user_id"],
            "message_id": r["message_id"],
            "send_at": r["send_at"],
            "status": "accepted",
            "receipt": f"stub-{i}",
            "handed_over_at": now,
        }
        for i, r in enumerate(rows)
    ]


@dag(
    dag_id="nudgeflow_delivery_example",
    schedule=[SEND_SCHEDULE],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    is_paused_upon_creation=True,
    max_active_runs=1,
    default_args={"owner": "nudgeflow", "retries": 2, "retry_delay": dt.timedelta(minutes=1)},
    tags=["nudgeflow", "delivery"],
    doc_md=__doc__,
)
def nudgeflow_delivery_example():
    @task(
        doc_md="**Deliver**: read the exported schedule of the asset event, hand its rows to the provider, "
        "record the receipts in `HOME/delivered/date=D/part-0.parquet`."
    )
    def deliver(triggering_asset_events=None) -> dict:
        from pathlib import Path

        import polars as pl

        from nudgeflow.config import resolve_home
        from nudgeflow.warehouse import write_parquet_atomically

        event = triggering_asset_events[SEND_SCHEDULE][-1]
        day, path = event.extra["date"], Path(event.extra["path"])
        rows = pl.read_parquet(path).to_dicts()
        receipts = pl.DataFrame(send_to_provider(rows), schema_overrides={"send_at": pl.Datetime("us")})
        out = resolve_home(None) / "delivered" / f"date={day}" / "part-0.parquet"
        write_parquet_atomically(receipts, out)
        print(f"nudgeflow delivery: {receipts.height} sends of {day} handed to the provider -> {out}")
        return {"date": day, "sent": receipts.height, "receipts": str(out)}

    deliver()


nudgeflow_delivery_example()
