"""Step 1, ingest: copy newly landed files into the warehouse's `raw` schema, as text.

Every file of `HOME/landing/<table>/` is loaded once (landed files never change), each
column cast to VARCHAR so that typing, deduplication and the quarantine of bad rows all
happen in one place: the dbt staging models. A file that cannot be read, or that lacks a
required column, is recorded in `raw.quarantined_files` with the reason and none of its
rows are loaded; the other files are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

# Contract columns per landing table: (name, required).
COLUMNS: dict[str, list[tuple[str, bool]]] = {
    "events": [("event_id", False), ("user_id", True), ("event_name", True), ("event_ts", True), ("value", False)],
    "users": [("user_id", True), ("timezone", False), ("country", False), ("updated_ts", False)],
    "consents": [("user_id", True), ("channel", True), ("opted_in", True), ("updated_ts", True)],
    "messages": [
        ("message_id", True),
        ("channel", True),
        ("active", False),
        ("valid_from", False),
        ("valid_to", False),
        ("countries", False),
        ("title", False),
        ("body", False),
    ],
    "sends": [("send_id", True), ("user_id", True), ("message_id", True), ("channel", True), ("sent_ts", True)],
}
LABEL_PREFIX = "label_"
READERS = {".parquet": "read_parquet({})", ".csv": "read_csv({}, header = true, all_varchar = true)"}


def _literal(text: str) -> str:
    """A SQL string literal (DDL statements cannot take prepared parameters)."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class IngestReport:
    loaded: dict[str, int]
    rows: dict[str, int]
    quarantined: list[tuple[str, str, str]]


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists raw")
    for table, cols in COLUMNS.items():
        col_sql = ", ".join(f"{name} varchar" for name, _ in cols)
        con.execute(f"create table if not exists raw.{table} ({col_sql}, _file varchar, _row bigint)")
    con.execute(
        "create table if not exists raw.message_labels "
        "(message_id varchar, dimension varchar, value varchar, _file varchar, _row bigint)"
    )
    con.execute(
        "create table if not exists raw.ingested_files "
        "(table_name varchar, _file varchar, n_rows bigint, ingested_at timestamp)"
    )
    con.execute(
        "create table if not exists raw.quarantined_files "
        "(table_name varchar, _file varchar, reason varchar, quarantined_at timestamp)"
    )
    # the zones both DuckDB and Python know and agree on: one resolver for SQL and Python
    from nudgeflow.timezones import known_timezones

    names = known_timezones(con)
    con.execute("create or replace table raw.timezones (name varchar)")
    con.executemany("insert into raw.timezones values (?)", [[n] for n in names])


def _landed_files(landing: Path, table: str) -> list[Path]:
    folder = landing / table
    if not folder.is_dir():
        return []
    # Writers may stage temporary files as .name or _name: those are not landed yet.
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_")))


def _load_file(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> int:
    """Load one file into raw.<table> (and raw.message_labels); raise ValueError if it breaks the contract."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"unsupported file type '{path.suffix}' (expected .parquet or .csv)")
    try:
        con.execute(f"create or replace temp view landed as select * from {reader.format(_literal(str(path)))}")
        present = [row[0] for row in con.execute("describe landed").fetchall()]
    except duckdb.Error as exc:
        raise ValueError(f"unreadable file: {str(exc).splitlines()[0][:300]}") from None
    by_lower = {name.strip().lower(): name for name in present}
    missing = [name for name, required in COLUMNS[table] if required and name not in by_lower]
    if missing:
        raise ValueError(f"missing required column(s): {', '.join(missing)}")

    def text(name: str) -> str:
        return f'cast("{by_lower[name]}" as varchar)' if name in by_lower else "cast(null as varchar)"

    select = ", ".join(f"{text(name)} as {name}" for name, _ in COLUMNS[table])
    try:
        con.execute(
            "create or replace temp table landed_all as select *, row_number() over () as __nudgeflow_row from landed"
        )
        con.execute(
            f"create or replace temp table landed_rows as "
            f"select {select}, {_literal(path.name)} as _file, __nudgeflow_row as _row from landed_all"
        )
        con.execute(f"insert into raw.{table} select * from landed_rows")
        if table == "messages":
            for lower, original in by_lower.items():
                if lower.startswith(LABEL_PREFIX) and len(lower) > len(LABEL_PREFIX):
                    con.execute(
                        f"""insert into raw.message_labels
                        select r.message_id, ? as dimension, nullif(trim(cast(l."{original}" as varchar)), ''),
                               r._file, r._row
                        from landed_all as l
                        join landed_rows as r on r._row = l.__nudgeflow_row
                        where nullif(trim(cast(l."{original}" as varchar)), '') is not null""",
                        [lower[len(LABEL_PREFIX) :]],
                    )
        return con.execute("select count(*) from landed_rows").fetchall()[0][0]
    except duckdb.Error as exc:
        raise ValueError(f"unreadable rows: {str(exc).splitlines()[0][:300]}") from None


def ingest(
    con: duckdb.DuckDBPyConnection, landing: Path, progress: Callable[[str], None] | None = None
) -> IngestReport:
    """Load every landed file not yet loaded or quarantined; one transaction per file."""
    con.execute("set TimeZone = 'UTC'")
    create_raw_tables(con)
    seen = set(
        con.execute(
            "select table_name, _file from raw.ingested_files union all "
            "select table_name, _file from raw.quarantined_files"
        ).fetchall()
    )
    report = IngestReport(loaded={t: 0 for t in COLUMNS}, rows={t: 0 for t in COLUMNS}, quarantined=[])
    for table in COLUMNS:
        for path in _landed_files(Path(landing), table):
            if (table, path.name) in seen:
                continue
            con.execute("begin transaction")
            try:
                n_rows = _load_file(con, table, path)
            except ValueError as exc:
                con.execute("rollback")
                con.execute(
                    "insert into raw.quarantined_files values (?, ?, ?, current_timestamp::timestamp)",
                    [table, path.name, str(exc)],
                )
                report.quarantined.append((table, path.name, str(exc)))
                if progress:
                    progress(f"quarantined {table}/{path.name}: {exc}")
                continue
            con.execute(
                "insert into raw.ingested_files values (?, ?, ?, current_timestamp::timestamp)",
                [table, path.name, n_rows],
            )
            con.execute("commit")
            report.loaded[table] += 1
            report.rows[table] += n_rows
    if progress:
        files = sum(report.loaded.values())
        progress(
            f"ingested {files} new file(s), {sum(report.rows.values())} rows; "
            f"{len(report.quarantined)} file(s) quarantined"
        )
    return report


def step_ingest(home: Path, day, progress: Callable[[str], None] | None = None) -> dict:
    """Load newly landed files into raw.*; bad files are quarantined, never block the rest."""
    from nudgeflow.warehouse import connect

    with connect(home) as con:
        report = ingest(con, Path(home) / "landing", progress)
    return {
        "files": sum(report.loaded.values()),
        "rows": sum(report.rows.values()),
        "quarantined_files": len(report.quarantined),
    }
