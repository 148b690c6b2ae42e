"""Step 2, measure: the dbt project (`dbt_project/`) run in-process on the home's warehouse.

The dbt models turn the raw landed rows into event weights, decayed pre/post outcomes,
neighbour-controlled treatment effects and per-user action outcomes (see
`dbt_project/README.md`). This module only runs dbt with the settings as vars.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from nudgeflow.config import DBT_PROJECT_DIR, NudgeflowError, Settings, as_of, load_settings, warehouse_path
from nudgeflow.steps.ingest import accounting
from nudgeflow.steps.progress import count
from nudgeflow.warehouse import connect


def dbt_args(command: str, home: Path, settings: Settings, *extra: str) -> list[str]:
    """Command-line arguments of one dbt invocation on this home (artefacts under HOME/.dbt/)."""
    return [
        *command.split(),  # e.g. "build", "docs generate"
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(Path(home) / ".dbt" / "target"),
        "--log-path",
        str(Path(home) / ".dbt" / "logs"),
        "--vars",
        json.dumps(settings.dbt_vars()),
        *extra,
    ]


def dbt_env(home: Path, as_of: dt.datetime, settings: Settings) -> dict[str, str]:
    """The environment dbt_project/profiles.yml reads: the warehouse, the as-of time and
    DuckDB's memory limit (the as-of time is not a var, so partial parsing survives days)."""
    return {
        "NUDGEFLOW_WAREHOUSE": str(warehouse_path(home)),
        "NUDGEFLOW_AS_OF": as_of.strftime("%Y-%m-%d %H:%M:%S"),
        "NUDGEFLOW_DUCKDB_MEMORY_LIMIT": settings.duckdb_memory_limit,
    }


def run_dbt(args: list[str], home: Path, as_of: dt.datetime, progress: Callable[[str], None] | None = None) -> list:
    """Run dbt in-process on HOME/warehouse.duckdb for one as-of time; raise NudgeflowError
    naming every failed node."""
    from dbt.cli.main import dbtRunner

    os.environ.update(dbt_env(home, as_of, load_settings(home)))

    done = {"n": 0}
    last: dict = {}

    def on_event(event) -> None:  # nodes counted, not listed: the full log is HOME/.dbt/logs/dbt.log
        if event.info.name not in ("LogModelResult", "LogTestResult", "LogNodeResult"):
            return
        done["n"] += 1
        index, total = getattr(event.data, "index", done["n"]), getattr(event.data, "total", 0)
        status = str(getattr(event.data, "status", "")).lower()
        if progress and status in ("error", "fail", "runtime error"):
            progress(f"dbt: {getattr(event.data, 'node_info', None) and event.data.node_info.node_name}: {status}")
        count(progress, f"dbt {args[0]}", index, total, last=last)

    started = time.perf_counter()
    try:
        result = dbtRunner(callbacks=[on_event]).invoke([*args, "--quiet"])
    finally:
        _release_warehouse()
    if result.exception is not None:
        raise NudgeflowError(f"dbt {args[0]} failed: {result.exception}")
    # a build's results are its nodes; `docs generate` returns a catalog, no node results
    nodes = list(getattr(result.result, "results", None) or [])
    failed = [r for r in nodes if str(r.status).lower() in ("error", "fail", "runtime error")]
    if failed or not result.success:
        detail = "; ".join(f"{r.node.name}: {(r.message or r.status)}" for r in failed[:5])
        if "out of sync" in detail:
            detail += (
                " -- an incremental table was built by an older version: run "
                "`nudgeflow remeasure --date D` once to rebuild it"
            )
        raise NudgeflowError(f"dbt {args[0]} failed ({len(failed)} node(s)): {detail}")
    if progress:
        progress(
            f"dbt {args[0]}: {len(nodes)} nodes ok in {time.perf_counter() - started:.1f}s "
            f"(log: {Path(home) / '.dbt' / 'logs' / 'dbt.log'})"
        )
    return nodes


def _release_warehouse() -> None:
    """dbt-duckdb keeps its DuckDB handle for the life of the process: close it so that the
    next step (or a read-only reader in this process) can open the file."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    env = DuckDBConnectionManager._ENV
    if env is not None:
        env.close()
    DuckDBConnectionManager.close_all_connections()
    # dbt's adapters and manifest hold locks of a "spawn" multiprocessing context; a process
    # that ends without running finalizers (Airflow's task runner) made the resource tracker
    # log "2 leaked semaphore objects" as errors. Drop them here, so they are released now.
    from dbt.adapters.factory import reset_adapters

    reset_adapters()
    gc.collect()


def dbt_build(
    home: Path,
    settings: Settings,
    as_of: dt.datetime,
    progress: Callable[[str], None] | None = None,
    *,
    unit_tests: bool = False,
    full_refresh: bool = False,
) -> list:
    """Build and test every model for the as-of time (dbt unit tests only when asked: they are
    for CI). ``full_refresh`` rebuilds the incremental marts from scratch: every send is
    rescored and every weights date recomputed with the current code and data."""
    extra = [] if unit_tests else ["--exclude-resource-type", "unit_test"]
    if full_refresh:
        extra.append("--full-refresh")
    return run_dbt(dbt_args("build", home, settings, *extra), home, as_of, progress)


def publish_dbt_docs(home: Path, settings: Settings, as_of_time: dt.datetime, *, compiled: bool | None) -> Path:
    """`dbt docs generate` (lineage, every model and column), copied to HOME/published/dbt-docs/
    for the Airflow UI (nudgeflow/ui.py) and anyone with a browser. ``compiled``: the build has
    just written its manifest (compiled SQL, lineage) to HOME/.dbt/target, so the docs need not
    compile the project again (with --no-compile dbt reads that manifest); None: if there is
    one (Cosmos's producer leaves its build's there, `airflow_dbt.keep_manifest`), and nothing
    to do when the docs published are already of that manifest (the producer publishes them
    after a build that succeeded, while dbt is loaded in its process)."""
    import shutil

    target, out = Path(home) / ".dbt" / "target", Path(home) / "published" / "dbt-docs"
    if compiled is None:
        compiled = (target / "manifest.json").exists()
        if compiled and _same_bytes(target / "manifest.json", out / "manifest.json"):
            return out
    extra = ["--no-compile"] if compiled else []
    run_dbt(dbt_args("docs generate", home, settings, *extra), home, as_of_time)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("index.html", "manifest.json", "catalog.json"):
        tmp = out / f".{name}.{os.getpid()}.tmp"
        shutil.copyfile(target / name, tmp)
        os.replace(tmp, out / name)
    return out


def _same_bytes(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def check_freshness(newest: dt.datetime | None, as_of_time: dt.datetime, max_age_hours: float) -> None:
    """Refuse to plan from stale data: the newest landed event must be less than
    ``max_age_hours`` before the as-of time (0 turns the check off)."""
    if not max_age_hours:
        return
    if newest is None:
        raise NudgeflowError(f"no events landed before {as_of_time:%Y-%m-%d %H:%M} UTC: nothing to plan from")
    age = (as_of_time - newest).total_seconds() / 3600
    if age > max_age_hours:
        raise NudgeflowError(
            f"stale data: the newest landed event ({newest:%Y-%m-%d %H:%M} UTC) is {age:.0f} h before the "
            f"as-of time {as_of_time:%Y-%m-%d %H:%M} UTC, more than max_data_age_hours ({max_age_hours:g}); "
            "refusing to plan (land fresh events, or raise max_data_age_hours in nudgeflow.yml)"
        )


def step_measure(home: Path, day: dt.date, progress: Callable[[str], None] | None = None) -> dict:
    """dbt build for as-of D 00:00 UTC (event weights, outcomes, treatment effects, action
    outcomes), then the checks of what it built."""
    nodes = dbt_build(home, load_settings(home), as_of(day), progress)
    return {"dbt_nodes": len(nodes), **step_check(home, day, progress, compiled=True)}


def step_check(
    home: Path, day: dt.date, progress: Callable[[str], None] | None = None, *, compiled: bool | None = None
) -> dict:
    """After the dbt build for D (in-process above, or Cosmos's tasks in Airflow): the
    accounting of landed rows, the refusal to plan from stale data, and the dbt docs site."""
    settings = load_settings(home)
    with connect(home) as con:  # the goal as a bound value, never pasted into SQL
        n_goal, newest = con.execute(
            "select count(*) filter (where event_name = ?), max(event_ts) from staging.stg_raw__events",
            [settings.goal_event],
        ).fetchall()[0]
        rows = accounting(con, progress)  # per table: landed = accepted + quarantined + duplicates
    check_freshness(newest, as_of(day), settings.max_data_age_hours)
    publish_dbt_docs(home, settings, as_of(day), compiled=compiled)
    if n_goal == 0 and progress:
        progress(
            f"warning: the goal event {settings.goal_event!r} occurs in none of the events before {day}: "
            "every send's outcome then rests on proxies (check goal_event in nudgeflow.yml)"
        )
    return {"goal_events": n_goal, "accounting": rows}
