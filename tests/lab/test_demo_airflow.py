"""The demo's Airflow path, for real on a tiny world: a SQLite metadata DB, the one-slot pool,
and per day a DagRun of each DAG run by Airflow (`dag.test()`), then the report."""

import sqlite3

from nudgeflow.lab.demo import run_demo


def test_two_days_through_airflow(tmp_path):
    lines = []
    figures = run_demo(
        tmp_path, users=300, history_days=5, loop_days=2, seed=4, use_airflow=True, progress=lines.append
    )
    assert sum("succeeded" in line for line in lines) == 2, lines
    db = sqlite3.connect(tmp_path / ".airflow" / "airflow.db")
    runs = db.execute("select dag_id, state from dag_run order by dag_id, logical_date").fetchall()
    tasks = db.execute("select dag_id, task_id, state from task_instance").fetchall()
    pools = db.execute("select pool, slots from slot_pool where pool = 'nudgeflow_warehouse'").fetchall()
    db.close()
    assert runs == [("nudgeflow_daily", "success")] * 2 + [("nudgeflow_simulated_world", "success")] * 2
    assert {t for d, t, s in tasks if d == "nudgeflow_daily" and s == "success"} == {
        "ingest",
        "measure",
        "priors",
        "sample",
        "match",
        "schedule",
    }
    assert pools == [("nudgeflow_warehouse", 1)]
    assert (tmp_path / "exports" / "send_schedule" / "date=2026-01-10" / "part-0.parquet").exists()
    assert figures
