"""The daily run for schedule date D, one module per Airflow task of `dags/nudgeflow_daily.py`.

ingest -> measure (dbt) -> priors -> sample -> match -> schedule. Each step reads what the
previous one wrote to the warehouse for D and replaces its own partition for D, so a step
can be retried alone and a rerun over the same inputs gives the same schedule. Each step
module reads the warehouse, calls the pure functions of `nudgeflow.decide` and writes.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from nudgeflow.lock import home_lock
from nudgeflow.steps.ingest import step_ingest
from nudgeflow.steps.match import step_match
from nudgeflow.steps.measure import step_check, step_measure
from nudgeflow.steps.priors import step_priors
from nudgeflow.steps.progress import Progress
from nudgeflow.steps.sample import step_sample
from nudgeflow.steps.schedule import step_schedule

STEPS = ("ingest", "measure", "priors", "sample", "match", "schedule")
_FUNCTIONS = {
    "ingest": step_ingest,
    "measure": step_measure,
    "check": step_check,  # Airflow only: what follows Cosmos's dbt tasks (in `measure` otherwise)
    "priors": step_priors,
    "sample": step_sample,
    "match": step_match,
}


def run_step(name: str, home: Path, day: dt.date, run_id: str | None = None, progress: Progress = None) -> dict:
    """One step for schedule date D, holding the home's lock (one writer at a time)."""
    with home_lock(home, f"{name} for {day}", progress=progress):
        if name == "schedule":
            return step_schedule(home, day, run_id or f"manual__{day.isoformat()}", progress)
        return _FUNCTIONS[name](home, day, progress)


def run(home: Path, day: dt.date, run_id: str | None = None, progress: Progress = None) -> dict:
    """The whole daily run for schedule date D, under one hold of the home's lock."""
    run_id = run_id or f"manual__{day.isoformat()}"
    timings = {}
    with home_lock(home, f"run for {day}", progress=progress):
        for name in STEPS:
            started = time.perf_counter()
            result = run_step(name, home, day, run_id, progress)
            timings[name] = round(time.perf_counter() - started, 2)
    return {**result, "timings": timings}
