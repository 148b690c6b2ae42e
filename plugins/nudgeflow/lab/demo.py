"""The closed-loop demo: a simulated world, then each day scheduled and delivered through Airflow.

Day D of the loop: the DAG `nudgeflow_daily` plans D's sends from the data before D, then
the DAG `nudgeflow_simulated_world` delivers them and simulates D's events. Both run through
Airflow's `dag.test()` (what `airflow dags test` does: a DagRun and its TaskInstances in the
metadata DB, each task run by Airflow), with the SQLite metadata DB under HOME/.airflow and
no server. One Airflow process runs every day of the loop: starting `airflow dags test`
twice a day cost about 25 s of start-up per day, more than the simulated day itself.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nudgeflow.config import REPO_ROOT, NudgeflowError

DEMO_START = dt.date(2026, 1, 5)
POOL = "nudgeflow_warehouse"
# the production DAG and the simulated world's (dev/dags/, never deployed), for the demo only
DEMO_DAGS = (REPO_ROOT / "dags" / "nudgeflow_daily.py", REPO_ROOT / "dev" / "dags" / "nudgeflow_simulated_world.py")


def demo_dags_folder(home: Path) -> Path:
    """HOME/.airflow/dags: links to the two DAG files the demo runs (Airflow serialises and
    runs the DAGs of its one DAGs folder)."""
    folder = Path(home) / ".airflow" / "dags"
    folder.mkdir(parents=True, exist_ok=True)
    for source in DEMO_DAGS:
        link = folder / source.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
    return folder


def airflow_env(home: Path) -> dict:
    """Environment of an embedded Airflow for this home: SQLite metadata DB, a DAGs folder
    with the production DAG and the simulated world's (demo_dags_folder)."""
    airflow_home = Path(home) / ".airflow"
    return {
        **os.environ,
        "NUDGEFLOW_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(airflow_home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # dag.test() runs one task at a time: Cosmos's model sensors would wait for a build
        # that cannot run beside them, so the demo builds dbt in the one `measure` task
        "NUDGEFLOW_DBT_TASKS": "one",
    }


MARK = "nudgeflow-demo: "


def _run_logged(cmd: list[str], env: dict, log: Path, on_mark: Callable[[str], None] | None = None) -> None:
    """Run a command with its output appended to the log; lines starting with MARK also go to
    `on_mark`. On failure, raise with the log's last lines."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in child.stdout:
            out.write(line)
            out.flush()
            if on_mark and line.startswith(MARK):
                on_mark(line[len(MARK) :].rstrip())
        code = child.wait()
    if code != 0:
        tail = log.read_text().splitlines()[-25:]
        raise NudgeflowError(f"{' '.join(cmd[:4])} failed (exit {code}); log {log}:\n" + "\n".join(tail))


def _airflow(args: list[str], env: dict, log: Path) -> None:
    _run_logged([str(Path(sys.executable).with_name("airflow")), *args], env, log)


def setup_airflow(home: Path) -> dict:
    """Create the metadata DB and the one-slot pool that serialises warehouse writers."""
    env = airflow_env(home)
    demo_dags_folder(home)
    log = Path(env["AIRFLOW_HOME"]) / "demo.log"
    _airflow(["db", "migrate"], env, log)
    _airflow(["pools", "set", POOL, "1", "DuckDB allows one writer per file"], env, log)
    return env


def _airflow_loop(
    first: dt.date, loop_days: int, env: dict, log: Path, progress: Callable[[str], None], started: float
) -> None:
    """Run the loop's days in one Airflow process (`python -m nudgeflow.lab.demo`): its output goes to
    the log, its progress lines (prefixed with MARK) to `progress`."""
    _run_logged(
        [sys.executable, "-m", "nudgeflow.lab.demo", first.isoformat(), str(loop_days)],
        env,
        log,
        on_mark=lambda line: progress(f"{line} (total {time.perf_counter() - started:.0f}s)"),
    )


def airflow_days(first: dt.date, loop_days: int) -> None:
    """In an Airflow environment (see airflow_env): for each day, a DagRun of `nudgeflow_daily`
    then one of `nudgeflow_simulated_world`; stop at the first run that does not succeed."""
    from airflow.dag_processing.dagbag import DagBag

    # the production DAG from dags/, the simulated world's from dev/dags/ (never deployed)
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dags = [bag.get_dag("nudgeflow_daily"), bag.get_dag("nudgeflow_simulated_world")]
    for i in range(loop_days):
        day = first + dt.timedelta(days=i)
        t0 = time.perf_counter()
        for dag in dags:
            run = dag.test(logical_date=dt.datetime.combine(day, dt.time(), dt.UTC))
            if str(run.state) not in ("success", "DagRunState.SUCCESS"):
                raise SystemExit(f"{dag.dag_id} {day}: DagRun ended {run.state}")
        print(
            f"{MARK}day {i + 1}/{loop_days} {day}: nudgeflow_daily then nudgeflow_simulated_world "
            f"succeeded in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )


def run_demo(
    home: Path,
    *,
    users: int,
    history_days: int,
    loop_days: int,
    seed: int,
    use_airflow: bool,
    progress: Callable[[str], None],
) -> dict:
    from nudgeflow.lab.simulate import create_world, deliver
    from nudgeflow.report import print_report
    from nudgeflow.steps import run as run_day
    from nudgeflow.steps import run_step
    from nudgeflow.warehouse import publish

    home = Path(home)
    started = time.perf_counter()
    for sub in ("landing", "truth", "exports", ".dbt", ".airflow"):
        shutil.rmtree(home / sub, ignore_errors=True)
    (home / "warehouse.duckdb").unlink(missing_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    progress(f"creating a world of {users} users with {history_days} days of history in {home}")
    create_world(home, users=users, history_days=history_days, start=DEMO_START, seed=seed)
    first = DEMO_START + dt.timedelta(days=history_days)
    env = setup_airflow(home) if use_airflow else None
    log = home / ".airflow" / "demo.log"
    if env:
        _airflow_loop(first, loop_days, env, log, progress, started)
    else:
        for i in range(loop_days):
            day = first + dt.timedelta(days=i)
            t0 = time.perf_counter()
            run_day(home, day)
            deliver(home, day)
            progress(
                f"day {i + 1}/{loop_days} {day}: scheduled and delivered in "
                f"{time.perf_counter() - t0:.1f}s (total {time.perf_counter() - started:.0f}s)"
            )
    end = first + dt.timedelta(days=loop_days)
    run_step("ingest", home, end)
    run_step("measure", home, end)
    publish(home)  # the report reads the published copy
    figures = print_report(home, days=min(14, loop_days))
    progress(f"demo finished in {time.perf_counter() - started:.0f}s")
    return figures


if __name__ == "__main__":
    airflow_days(dt.date.fromisoformat(sys.argv[1]), int(sys.argv[2]))
