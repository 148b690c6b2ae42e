"""The warehouse edge: open `HOME/warehouse.duckdb`, read marts, write date partitions.

DuckDB allows one writing process per file, so every step opens the file, does its work
in one transaction and closes it, holding the home's lock (nudgeflow/lock.py); Airflow runs
the steps one at a time (pool of one slot). Readers (explain, report, BI) never open the
live file: each run ends by publishing a copy, `HOME/published/warehouse.duckdb`, swapped
atomically, which any number of read-only readers may hold open while the next run writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from pathlib import Path

import duckdb
import polars as pl

from nudgeflow.config import NudgeflowError, load_settings, warehouse_path


def published_path(home: Path) -> Path:
    """The read-only copy of the warehouse that the last run published."""
    return Path(home) / "published" / "warehouse.duckdb"


@contextlib.contextmanager
def connect(home: Path, *, published: bool = False):
    """The live warehouse (a writer: hold the home's lock), or with ``published`` the last
    published copy, read-only."""
    path = published_path(home) if published else warehouse_path(home)
    if published and not path.exists():
        raise NudgeflowError(f"no published warehouse at {path}: run `nudgeflow run` first")
    limits = {"memory_limit": load_settings(home).duckdb_memory_limit}
    con = duckdb.connect(str(path), read_only=published, config=limits)
    try:
        con.execute("set TimeZone = 'UTC'")
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
    con: duckdb.DuckDBPyConnection, table: str, day: dt.date, frame: pl.DataFrame, date_column: str = "schedule_date"
) -> None:
    """Replace the rows of one date in `table` (created from the frame's schema if missing)."""
    schema = table.split(".")[0] if "." in table else "main"
    con.execute(f"create schema if not exists {schema}")
    con.register("partition_rows", frame)
    try:
        con.execute("begin transaction")
        con.execute(f"create table if not exists {table} as select * from partition_rows limit 0")
        con.execute(f"delete from {table} where {date_column} = ?", [day])
        con.execute(f"insert into {table} by name select * from partition_rows")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("partition_rows")


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
    "action_posteriors": ("decide", "posteriors", "schedule_date = (select max(schedule_date) from decide.posteriors)"),
}


def publish(home: Path) -> Path:
    """Copy the (closed) warehouse to HOME/published/warehouse.duckdb, and its result tables
    to HOME/published/<table>.parquet, each through a temporary name and a rename: a reader
    sees the old file or the new one, never a partial one, and a reader holding the old copy
    open keeps reading it."""
    target = published_path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    # from the live file (this process holds the home's lock): a reader of the old copy in this
    # same process would otherwise be handed DuckDB's cached instance of the old file
    with connect(home) as con:
        for name, (schema, table, rows) in PUBLISHED_TABLES.items():
            if not table_exists(con, schema, table):
                continue
            query = f"select * from {schema}.{table} where {rows}"
            out = target.parent / f"{name}.parquet"
            _remove_stale_temporaries(out)
            part = out.with_name(f".{out.name}.{os.getpid()}.tmp")
            con.execute(f"copy ({query}) to '{part}' (format parquet)")
            os.replace(part, out)
    _remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(warehouse_path(home), tmp)
    os.replace(tmp, target)
    return target


def write_parquet_atomically(frame: pl.DataFrame, path: Path) -> None:
    """Write to a temporary name in the same folder and rename: readers see old or new, never partial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)
