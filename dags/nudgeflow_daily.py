"""The daily nudgeflow run: landed data in, the day's send schedule out.

Each run has a logical date D and plans the sends of [D 00:00, D+1 00:00) UTC from the data
timestamped before D 00:00 UTC. Every task reads and writes the partition of D only, so a
rerun or a backfill gives the same result. All tasks share the pool `nudgeflow_warehouse`
(one slot): DuckDB allows one writer per file.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import dag, task

HOME_NOTE = "The home folder is $NUDGEFLOW_HOME, else ./data under the repository root."
DEFAULT_ARGS = {
    "owner": "nudgeflow",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=2),
    "pool": "nudgeflow_warehouse",
}


def _home():
    from nudgeflow.config import resolve_home

    return resolve_home(None)


def _day(ds: str) -> dt.date:
    return dt.date.fromisoformat(ds)


@dag(
    dag_id="nudgeflow_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    default_args=DEFAULT_ARGS,
    tags=["nudgeflow"],
    doc_md=__doc__ + "\n\n" + HOME_NOTE,
)
def nudgeflow_daily():
    @task(
        doc_md="**Ingest**: copy newly landed files of `landing/<table>/` into `raw.*`; "
        "files that break the contract go to `raw.quarantined_files` with a reason."
    )
    def ingest(ds=None) -> dict:
        from nudgeflow.steps import run_step

        return run_step("ingest", _home(), _day(ds), progress=print)

    @task(
        doc_md="**Measure** (`dbt build`): event weights w_e (log-likelihood ratio), decayed "
        "pre/post outcomes per send, k-nearest-neighbour controls, difference-in-differences "
        "effect, binarised reward, and successes/trials per (user, action)."
    )
    def measure(_ingested: dict, ds=None) -> dict:
        from nudgeflow.steps import run_step

        return run_step("measure", _home(), _day(ds), progress=print)

    @task(
        doc_md="**Priors**: empirical-Bayes Beta prior per (behaviour cell, action) and the Beta "
        "posterior of every (user, action)."
    )
    def priors(_measured: dict, ds=None) -> dict:
        from nudgeflow.steps import run_step

        return run_step("priors", _home(), _day(ds), progress=print)

    @task(doc_md="**Sample**: Thompson sampling, one draw per (user, action), keyed by (seed, date, user).")
    def sample(_priors: dict, ds=None) -> dict:
        from nudgeflow.steps import run_step

        return run_step("sample", _home(), _day(ds), progress=print)

    @task(
        doc_md="**Match**: send hour, send-or-wait (frequency) and the eligible message closest to "
        "the sampled actions; propensity by resampling the posteriors."
    )
    def match(_sampled: dict, ds=None) -> dict:
        from nudgeflow.steps import run_step

        return run_step("match", _home(), _day(ds), progress=print)

    @task(
        doc_md="**Schedule**: replace D's rows of `send_schedule` and its Parquet export "
        "`exports/send_schedule/date=D/part-0.parquet` (atomically)."
    )
    def schedule(_matched: dict, ds=None, run_id=None) -> dict:
        from nudgeflow.steps import run_step

        return run_step("schedule", _home(), _day(ds), run_id, progress=print)

    schedule(match(sample(priors(measure(ingest())))))


nudgeflow_daily()
