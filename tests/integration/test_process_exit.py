"""A measure step leaves nothing for the process's exit to clean up: Airflow's task runner ends a
task's process without running finalizers, and dbt's locks of a "spawn" multiprocessing context
used to make the resource tracker log "2 leaked semaphore objects" as errors after every
successful measure (issue "Ready for the people who run it")."""

import datetime as dt
import subprocess
import sys

from nudgeflow.lab.simulate import create_world
from nudgeflow.steps import step_ingest

START = dt.date(2026, 1, 5)

CHILD = """
import datetime as dt, os, sys
from pathlib import Path
from nudgeflow.config import Settings, as_of
from nudgeflow.steps.measure import dbt_build
dbt_build(Path(sys.argv[1]), Settings(), as_of(dt.date.fromisoformat(sys.argv[2])))
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)  # as Airflow's task runner ends a task: no finalizers
"""


def test_measure_leaks_no_semaphores_at_a_hard_exit(tmp_path):
    home = tmp_path / "home"
    create_world(home, users=150, history_days=4, start=START, seed=2)
    day = START + dt.timedelta(days=4)
    step_ingest(home, day)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(home), day.isoformat()], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "leaked semaphore" not in done.stderr, done.stderr[-2000:]
