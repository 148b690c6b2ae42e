"""The simulated world's day D: deliver D's send schedule and let the users react.

Used by the demo, never in production: it reads `exports/send_schedule/date=D/` and writes
D's sends and events to `landing/`, as the delivery provider and the app would, and the
ground truth to `truth/`. It writes no warehouse table.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="nudgeflow_simulated_world",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "nudgeflow", "retries": 1, "retry_delay": dt.timedelta(minutes=1)},
    tags=["nudgeflow", "simulation"],
    doc_md=__doc__,
)
def nudgeflow_simulated_world():
    @task(
        doc_md="**Deliver**: the sends of D's schedule happen at `send_at`; every user's events of "
        "day D are simulated, including the true effect of each message."
    )
    def deliver(ds=None) -> dict:
        from nudgeflow.config import resolve_home
        from nudgeflow.lab.simulate import deliver as deliver_day

        return deliver_day(resolve_home(None), dt.date.fromisoformat(ds))

    deliver()


nudgeflow_simulated_world()
