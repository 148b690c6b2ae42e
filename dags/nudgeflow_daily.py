"""The daily nudgeflow run: landed data in, the next day's send schedule out.

The run for schedule date D is triggered the evening before, at **21:00 UTC on D-1**, so that
it finishes before D's first allowed send instant (00:00 UTC; the earliest local send hours of
users east of UTC fall right after midnight UTC). It plans the sends of [D 00:00, D+1 00:00) UTC
from the data timestamped before D 00:00 UTC that has landed by then: the **cut-off for data
is 21:00 UTC on D-1** (later landings are used by the next day's run). A run triggered by hand
plans the UTC date of its logical date + 3 h: a logical date of D 00:00 plans D.

The task group `measure` is the dbt project rendered by astronomer-cosmos
(`nudgeflow/airflow_dbt.py`): one task per model and its data tests, so the grid and the
graph show the lineage and each model's log; one `dbt build` (the group's producer task) does
the work (and publishes the dbt docs site). `check` then refuses to plan from stale data.
With `NUDGEFLOW_DBT_TASKS=one` in the environment, `measure` is one task instead (the build
in-process, as `nudgeflow run` does it; the demo's `dag.test()` runs use it).

Every task reads and writes the partition of D only, so a rerun or a backfill gives the same
result. Every task that writes the warehouse runs in the pool `nudgeflow_warehouse` (one
slot) and holds the home's lock: DuckDB allows one writer per file (the model sensors only
wait, deferred). A task fails at once, without retries, on an error a retry cannot fix (bad
settings, stale data, a schedule the guardrail check refuses); it retries when another run
holds the home's lock. The schedule task updates the Asset
`nudgeflow_send_schedule`, which delivery DAGs can be scheduled on
(`nudgeflow_delivery_example`).
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, dag, task

from nudgeflow.airflow_dbt import DBT_TASKS, POOL, dbt_task_group, schedule_date

HOME_NOTE = "The home folder is $NUDGEFLOW_HOME, else ./data under the repository root."
SEND_SCHEDULE = Asset("nudgeflow_send_schedule")  # HOME/exports/send_schedule/date=D/part-0.parquet
DEFAULT_ARGS = {
    "owner": "nudgeflow",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=2),
    "pool": POOL,
}


def _step(name: str, logical_date, run_id: str | None = None) -> dict:
    """One step of the run for the logical date's schedule date, in the home's lock; an
    error a retry cannot fix fails the task at once."""
    from airflow.sdk.exceptions import AirflowFailException

    from nudgeflow.config import NudgeflowError, resolve_home
    from nudgeflow.lock import LockTimeout
    from nudgeflow.steps import run_step

    try:
        return run_step(name, resolve_home(None), schedule_date(logical_date), run_id, progress=print)
    except LockTimeout:
        raise  # another run holds the home: a retry may succeed
    except NudgeflowError as exc:
        raise AirflowFailException(str(exc)) from None


@dag(
    dag_id="nudgeflow_daily",
    schedule=CronTriggerTimetable("0 21 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=16,  # the model sensors wait beside the one writer (the pool keeps it one)
    default_args=DEFAULT_ARGS,
    tags=["nudgeflow"],
    doc_md=__doc__ + "\n\n" + HOME_NOTE,
)
def nudgeflow_daily():
    @task(
        doc_md="**Ingest**: copy newly landed files of `landing/<table>/` into `raw.*`; "
        "files that break the contract go to `raw.quarantined_files` with a reason."
    )
    def ingest(logical_date=None) -> dict:
        return _step("ingest", logical_date)

    @task(
        doc_md="**Measure** (`dbt build` in this one task, `NUDGEFLOW_DBT_TASKS=one`): event weights, "
        "decayed pre/post outcomes per send, k-nearest-neighbour controls, difference-in-differences "
        "effect, binarised reward, successes/trials per (user, action); then what `check` does."
    )
    def measure(_ingested: dict, logical_date=None) -> dict:
        return _step("measure", logical_date)

    @task(
        doc_md="**Check** what `measure` built: the accounting of landed rows (landed = accepted + "
        "quarantined + duplicates), the refusal to plan from stale data (setting `max_data_age_hours`), "
        "and the dbt docs site (lineage, every column) published for the Airflow UI (by the dbt "
        "producer already when its build succeeded)."
    )
    def check(logical_date=None) -> dict:
        return _step("check", logical_date)

    @task(
        doc_md="**Priors**: empirical-Bayes Beta prior per (behaviour cell, action) and the Beta "
        "posterior of every (user, action)."
    )
    def priors(_checked: dict, logical_date=None) -> dict:
        return _step("priors", logical_date)

    @task(doc_md="**Sample**: Thompson sampling, one draw per (user, action), keyed by (seed, date, user).")
    def sample(_priors: dict, logical_date=None) -> dict:
        return _step("sample", logical_date)

    @task(
        doc_md="**Match**: send hour, send-or-wait (frequency) and the eligible message closest to "
        "the sampled actions; propensity by resampling the posteriors."
    )
    def match(_sampled: dict, logical_date=None) -> dict:
        return _step("match", logical_date)

    @task(
        outlets=[SEND_SCHEDULE],
        doc_md="**Schedule**: check every row against the contract's rules a second time "
        "(`nudgeflow/guardrails.py`), then replace D's rows of `send_schedule` and its Parquet "
        "export `exports/send_schedule/date=D/part-0.parquet` (atomically), publish the "
        "read-only snapshot of the result schemas and the events by day, and update the Asset "
        "`nudgeflow_send_schedule`.",
    )
    def schedule(_matched: dict, logical_date=None, run_id=None, outlet_events=None) -> dict:
        result = _step("schedule", logical_date, run_id)
        day = schedule_date(logical_date)
        print(f"nudgeflow: {result['rows']} sends scheduled for {day} -> {result['export']}")
        outlet_events[SEND_SCHEDULE].extra = {"date": day.isoformat(), "rows": result["rows"], "path": result["export"]}
        return result

    if DBT_TASKS == "models":
        checked = check()
        ingest() >> dbt_task_group(DEFAULT_ARGS) >> checked
    else:
        checked = measure(ingest())
    schedule(match(sample(priors(checked))))


nudgeflow_daily()
