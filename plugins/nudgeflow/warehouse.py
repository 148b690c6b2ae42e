"""The warehouse edge: open `HOME/warehouse.duckdb`, read marts, write date partitions.

DuckDB allows one writing process per file, so every step opens the file, does its work
in one transaction and closes it, holding the home's lock (nudgeflow/lock.py); Airflow runs
the steps one at a time (pool of one slot). Readers (explain, report, BI) never open the
live file: each run ends by publishing `HOME/published/` (`publish`, docs/bi.md): a snapshot
`warehouse.duckdb` of the result schemas, swapped atomically, which any number of read-only
readers may hold open while the next run writes; the result tables as Parquet; and the typed,
deduplicated events as one Parquet file per day, rewritten only for the days that changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import duckdb
import polars as pl

from nudgeflow.config import NudgeflowError, load_settings, warehouse_path

# the schemas the published snapshot holds: the results (main.send_schedule, the marts, the
# Decide step's tables); staging and intermediate stay in the live file, and the events are
# published beside it as Parquet by day (events/<YYYY-MM-DD>.parquet)
SNAPSHOT_SCHEMAS = ("main", "marts", "decide")
EVENTS = ("staging", "stg_raw__events")
# but not every row of every table: the Decide step's per-user tables (users x actions rows a
# date, 33 million at a million users) hold the latest planned date, and the marts that only
# feed the priors (one row per send and action) stay in the live file; at a million users the
# snapshot would otherwise grow by gigabytes a day
LATEST_DATE = "schedule_date = (select max(schedule_date) from {table})"
SNAPSHOT_LEFT_OUT = frozenset({("marts", "send_actions"), ("marts", "action_outcomes")})
# how the posteriors moved over every planned date, for a stable sample of users (the HTML
# report): the priors step keeps every date's posteriors of PATH_USERS users (the smallest
# md5(user_id)) in decide.posterior_paths, which outlives decide_history_days; the snapshot
# holds the paths of the latest date's first five of them
PATH_USERS = 20
LATEST_PATHS = (
    f"user_id in (select user_id from {{table}} where {LATEST_DATE} group by user_id order by md5(user_id) limit 5)"
)
SNAPSHOT_ROWS = {
    ("decide", "posteriors"): LATEST_DATE,
    ("decide", "samples"): LATEST_DATE,
    ("decide", "posterior_paths"): LATEST_PATHS,
}


def published_path(home: Path) -> Path:
    """The read-only snapshot of the result schemas that the last run published."""
    return Path(home) / "published" / "warehouse.duckdb"


def published_events(home: Path) -> str:
    """The published events as a DuckDB table function: one Parquet file per UTC day of event_ts
    (`empty.parquet` when there are none); a one-line error when nothing was published."""
    folder = Path(home) / "published" / "events"
    if not any(folder.glob("*.parquet")):
        raise NudgeflowError(f"no published events in {folder}: run `nudgeflow run` first")
    return f"read_parquet('{folder / '*.parquet'}')"


@contextlib.contextmanager
def connect(home: Path, *, published: bool = False):
    """The live warehouse (a writer: hold the home's lock), or with ``published`` the last
    published snapshot, read-only, with the published events as the temporary view ``events``."""
    path = published_path(home) if published else warehouse_path(home)
    if published and not path.exists():
        raise NudgeflowError(f"no published warehouse at {path}: run `nudgeflow run` first")
    limits = {"memory_limit": load_settings(home).duckdb_memory_limit}
    con = duckdb.connect(str(path), read_only=published, config=limits)
    try:
        con.execute("set TimeZone = 'UTC'")
        if published:
            con.execute(f"create temp view events as select * from {published_events(home)}")
        yield con
    finally:
        con.close()


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
    )


def read(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    """Run a query and return its rows as a polars frame (through Arrow)."""
    return con.sql(sql, params=params or None).pl()


def replace_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    day: dt.date,
    frame: pl.DataFrame | Iterable[pl.DataFrame],
    date_column: str = "schedule_date",
) -> None:
    """Replace the rows of one date in `table` (created from the first frame's schema if
    missing), in one transaction, with a frame or with the frames an iterable yields one at a
    time (a step's memory is then bound by a frame, not by the date's rows)."""
    schema = table.split(".")[0] if "." in table else "main"
    frames = [frame] if isinstance(frame, pl.DataFrame) else frame
    con.execute(f"create schema if not exists {schema}")
    try:
        con.execute("begin transaction")
        fresh = True
        for part in frames:
            con.register("partition_rows", part)
            try:
                if fresh:
                    con.execute(f"create table if not exists {table} as select * from partition_rows limit 0")
                    con.execute(f"delete from {table} where {date_column} = ?", [day])
                    fresh = False
                con.execute(f"insert into {table} by name select * from partition_rows")
            finally:
                con.unregister("partition_rows")
        if fresh and table_exists(con, schema, table.split(".")[-1]):  # no frames: the date has no rows
            con.execute(f"delete from {table} where {date_column} = ?", [day])
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def prune_history(con: duckdb.DuckDBPyConnection, table: str, day: dt.date, keep_days: int) -> None:
    """Delete the dates of a per-user Decide table older than the latest ``keep_days`` planned
    dates (setting decide_history_days), but never ``day`` (a run for an earlier date keeps its
    own rows until a later run prunes them): the live file then holds a bounded number of
    users x actions partitions, not one more every day."""
    con.execute(
        f"delete from {table} where schedule_date <> ? and schedule_date <= "
        f"(select max(schedule_date) from {table}) - ? * interval 1 day",
        [day, keep_days],
    )


def require_partition(con: duckdb.DuckDBPyConnection, table: str, day: dt.date, needed_by: str) -> None:
    """Raise a one-line error when ``table`` has no rows of ``day`` but has rows of a later
    date: the date was pruned (decide_history_days), and a step reading it would otherwise
    write nothing for the day as if it had no users."""
    # two filtered reads, which DuckDB answers from the row groups of those dates (the table
    # is written a date at a time), not a scan of every row
    ((later,),) = con.execute(f"select max(schedule_date) from {table} where schedule_date > ?", [day]).fetchall()
    if later is None:
        return
    ((present,),) = con.execute(
        f"select count(*) from (select 1 from {table} where schedule_date = ? limit 1)", [day]
    ).fetchall()
    if not present:
        raise NudgeflowError(
            f"{needed_by} for {day}: {table} no longer holds {day} (the warehouse keeps the latest "
            f"decide_history_days planned dates, latest {later}): run the whole run for {day} again"
        )


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files a killed writer left beside ``path`` (the home's lock is held, so no
    other writer is using them)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


# The result tables BI reads, published as Parquet beside the copy (docs/bi.md):
# file name -> (schema, table, the rows published)
PUBLISHED_TABLES = {
    "send_schedule": ("main", "send_schedule", "true"),
    "send_outcomes": ("marts", "send_outcomes", "true"),
    "event_weights": ("marts", "event_weights", "true"),
    "daily_lift": ("marts", "daily_lift", "true"),
    "channel_effects": ("marts", "channel_effects", "true"),
    # the posteriors of the latest planned date only (users x actions rows)
    "action_posteriors": ("decide", "posteriors", LATEST_DATE.format(table="decide.posteriors")),
}


def publish(home: Path, progress=None) -> Path:
    """Publish HOME/published/ for readers, each file through a temporary name and a rename (a
    reader sees the old file or the new one, never a partial one, and a reader holding the old
    snapshot open keeps reading it): the result tables as <table>.parquet, the events by day
    (only the days whose events changed are written again), then the snapshot warehouse.duckdb
    of SNAPSHOT_SCHEMAS (SNAPSHOT_ROWS, SNAPSHOT_LEFT_OUT). Cost: the result tables and the
    changed days, not the whole warehouse."""
    target = published_path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    # from the live file (this process holds the home's lock): a reader of the old snapshot in
    # this same process would otherwise be handed DuckDB's cached instance of the old file
    with connect(home) as con:
        for name, (schema, table, rows) in PUBLISHED_TABLES.items():
            if table_exists(con, schema, table):
                _copy_atomically(con, f"select * from {schema}.{table} where {rows}", target.parent / f"{name}.parquet")
        written = _publish_events(con, target.parent / "events")
        _remove_stale_temporaries(target)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        con.execute(f"attach '{tmp}' as snapshot")
        try:
            for schema, table in con.execute(
                "select table_schema, table_name from information_schema.tables "
                "where table_catalog = current_database() and list_contains(?, table_schema) order by all",
                [list(SNAPSHOT_SCHEMAS)],
            ).fetchall():
                if (schema, table) in SNAPSHOT_LEFT_OUT:
                    continue
                relation = f'"{schema}"."{table}"'
                rows = SNAPSHOT_ROWS.get((schema, table), "true").format(table=relation)
                con.execute(f'create schema if not exists snapshot."{schema}"')
                con.execute(f"create table snapshot.{relation} as select * from {relation} where {rows}")
        finally:
            con.execute("detach snapshot")
    os.replace(tmp, target)
    if progress:
        progress(f"publish: {target.parent} ({written} day(s) of events written)")
    return target


def _copy_atomically(con: duckdb.DuckDBPyConnection, query: str, out: Path) -> None:
    _remove_stale_temporaries(out)
    part = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    con.execute(f"copy ({query}) to '{part}' (format parquet)")
    os.replace(part, out)


def _publish_events(con: duckdb.DuckDBPyConnection, folder: Path) -> int:
    """The typed, deduplicated events as folder/<YYYY-MM-DD>.parquet: a day is written again when
    its count or its latest load_seq differs from the last publish's (folder/_days.json), or its
    columns changed; days no longer in the warehouse are removed. Returns the days written."""
    folder.mkdir(parents=True, exist_ok=True)
    schema, table = EVENTS
    if not table_exists(con, schema, table):
        return 0
    columns = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_catalog = current_database() and table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    shape = hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]
    manifest = folder / "_days.json"
    try:
        old = json.loads(manifest.read_text())
    except (OSError, ValueError):
        old = {}
    old_days = old.get("days", {}) if old.get("columns") == shape else {}
    days = {
        str(day): [n, seq]
        for day, n, seq in con.execute(
            f"select event_ts::date as day, count(*), coalesce(max(load_seq), -1) from {schema}.{table} group by all"
        ).fetchall()
    }
    written = 0
    for day, state in sorted(days.items()):
        out = folder / f"{day}.parquet"
        if old_days.get(day) == state and out.exists():
            continue
        start = dt.date.fromisoformat(day)
        _copy_atomically(
            con,
            f"select * from {schema}.{table} where event_ts >= '{start}'::timestamp "
            f"and event_ts < '{start + dt.timedelta(days=1)}'::timestamp order by event_ts",
            out,
        )
        written += 1
    empty = folder / "empty.parquet"  # so that a reader's glob matches a file when there are no events
    if days:
        empty.unlink(missing_ok=True)
    else:
        _copy_atomically(con, f"select * from {schema}.{table} limit 0", empty)
    for stale in folder.glob("????-??-??.parquet"):
        if stale.stem not in days:
            stale.unlink()
    _remove_stale_temporaries(manifest)
    tmp = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"columns": shape, "days": days}, indent=0))
    os.replace(tmp, manifest)
    return written


def write_parquet_atomically(frame: pl.DataFrame, path: Path) -> None:
    """Write to a temporary name in the same folder and rename: readers see old or new, never partial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)
