"""Step 1, ingest: copy newly landed files into the warehouse's `raw` schema, as text.

Every file of `HOME/landing/<table>/` is loaded once, each column cast to VARCHAR so that
typing, deduplication and the quarantine of bad rows all happen in one place: the dbt
staging models. A file that cannot be read as a whole (not UTF-8, ragged, truncated, a
required column missing, ...) is recorded in `raw.quarantined_files` with the reason and
none of its rows are loaded; the other files are unaffected.

Every file read is recorded in `raw.landed_files` with its version (size, modification
time, SHA-256) and `load_seq`, a counter over all tables in the order ingest read the
files: the staging models keep "the first landed" row by it, not by file name. Landed
files never change (contract), so an ingested file is never read again (a changed one is
reported and ignored); but a quarantined file that a user fixed in place (its content
changed) is read again, and its rows are used if it is now fine.

Landed names (files, columns) reach SQL only as quoted literals or quoted identifiers: the
rows are read into positional columns c1..cN and mapped to the contract by position.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from nudgeflow.timezones import known_timezones
from nudgeflow.warehouse import connect, table_exists

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
TIMESTAMP_COLUMNS = {"event_ts", "updated_ts", "valid_from", "valid_to", "sent_ts"}
# Parquet types whose text the staging models can read as a timestamp
TIMESTAMP_TYPES = ("VARCHAR", "TIMESTAMP", "DATE", '"NULL"')
CSV_DELIMITERS = (",", ";", "\t", "|")
MAX_REASON_LINES = 3  # lines of a CSV named in a reason
CSV_MAX_LINE_BYTES = 2_097_152  # DuckDB's default max_line_size


def quote_identifier(name: str) -> str:
    """A DuckDB identifier for any name: double-quoted, embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """A SQL string literal (DDL statements cannot take prepared parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _path_literal(path: Path) -> str:
    """The literal of a path for read_csv / read_parquet, its glob characters escaped so that
    the file is read alone (a file named `a*.csv` must not read `ab.csv` too)."""
    return _literal(re.sub(r"([*?\[])", r"[\1]", str(path)))


class Refused(ValueError):
    """A landed file that breaks the contract as a whole; the message is the reason."""


@dataclass(frozen=True)
class Version:
    """What identifies one content of a landed file."""

    size_bytes: int
    modified_at: dt.datetime  # the file's mtime, naive UTC, microseconds
    sha256: str | None = None

    @classmethod
    def of(cls, path: Path, *, content: bool = True) -> Version:
        stat = path.stat()
        modified = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=stat.st_mtime_ns // 1000)
        return cls(stat.st_size, modified, _sha256(path) if content else None)

    def same_stat(self, other: Version) -> bool:
        return self.size_bytes == other.size_bytes and self.modified_at == other.modified_at


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class IngestReport:
    loaded: dict[str, int]  # files ingested by this run, per table
    rows: dict[str, int]  # rows landed by this run, per table
    quarantined: list[tuple[str, str, str]]  # (table, file, reason) quarantined by this run (new or retried)
    still_quarantined: dict[str, int] = field(default_factory=dict)  # unchanged quarantined files, per table
    retried: list[tuple[str, str, str]] = field(default_factory=list)  # (table, file, why) read again
    changed: list[tuple[str, str]] = field(default_factory=list)  # ingested files that changed since (ignored)


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists raw")
    for table, cols in COLUMNS.items():
        col_sql = ", ".join(f"{quote_identifier(name)} varchar" for name, _ in cols)
        con.execute(f"create table if not exists raw.{quote_identifier(table)} ({col_sql}, _file varchar, _row bigint)")
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
    con.execute(
        "create table if not exists raw.landed_files "
        "(table_name varchar, _file varchar, load_seq bigint, size_bytes bigint, modified_at timestamp, "
        "sha256 varchar, read_at timestamp)"
    )
    # files ingested before the ledger existed: their load order is the order of ingested_at
    con.execute(
        """insert into raw.landed_files
        select i.table_name, i._file,
               (select coalesce(max(load_seq), 0) from raw.landed_files)
                   + row_number() over (order by i.ingested_at, i.table_name, i._file),
               null, null, null, i.ingested_at
        from raw.ingested_files as i
        anti join raw.landed_files as l on l.table_name = i.table_name and l._file = i._file"""
    )
    # the zones both DuckDB and Python know and agree on: one resolver for SQL and Python

    names = known_timezones(con)
    con.execute("create or replace table raw.timezones (name varchar)")
    con.executemany("insert into raw.timezones values (?)", [[n] for n in names])


def _landed_files(landing: Path, table: str) -> list[Path]:
    folder = landing / table
    if not folder.is_dir():
        return []
    # Writers may stage temporary files as .name or _name: those are not landed yet.
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_")))


def _first_line(text: str, limit: int = 300) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else text)[:limit]


# ----------------------------------------------------------------------------- reading


def _csv_header(path: Path) -> tuple[list[str], str, int]:
    """The header row of a CSV file (its first line that is not blank), its delimiter (the
    one of , ; tab | that the header uses most, a comma on a tie) and the number of blank
    lines before it; Refused if there is none or it is not UTF-8."""
    skipped = 0
    with path.open("rb") as f:
        while True:
            raw = f.readline(4 << 20)
            if not raw or raw.strip() or skipped >= 1000:
                break
            skipped += 1
    if skipped == 0 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(
            f"not UTF-8: the header row (line {skipped + 1}) has a byte that is not UTF-8 (0x{raw[exc.start]:02x} at "
            f"byte {exc.start + 1}); the contract's CSV files are UTF-8 text"
        ) from None
    line = line.rstrip("\r\n")
    if not line.strip():
        raise Refused("no header row: the file has only blank lines (a CSV file starts with its column names)")
    unquoted = re.sub(r'"[^"]*"', "", line)
    delimiter = max(CSV_DELIMITERS, key=lambda d: (unquoted.count(d), d == ","))
    names = next(csv.reader([line], delimiter=delimiter, quotechar='"'))
    return names, delimiter, skipped


def _fields(text: str, delimiter: str) -> int:
    try:
        return len(next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter, quotechar='"')))
    except (csv.Error, StopIteration):
        return -1


def _csv_errors(con: duckdb.DuckDBPyConnection, n_columns: int, delimiter: str) -> str | None:
    """What is wrong with the lines that the CSV reader rejected (None if none was)."""
    lines = con.execute(
        """select line, min(error_type::varchar) as error_type, any_value(csv_line) as csv_line
        from reject_errors group by line order by line"""
    ).fetchall()
    if not lines:
        return None
    kinds = {kind for _, kind, _ in lines}
    described = []
    for line, kind, text in lines[:MAX_REASON_LINES]:
        if kind in ("TOO MANY COLUMNS", "MISSING COLUMNS"):
            described.append(f"line {line} has {_fields(text or '', delimiter)} fields")
        elif kind == "INVALID ENCODING":
            described.append(f"line {line} has bytes that are not UTF-8")
        elif kind == "UNQUOTED VALUE":
            described.append(f"line {line} has a quote that is not closed")
        elif kind == "LINE SIZE OVER MAXIMUM":
            described.append(f"line {line} is longer than {CSV_MAX_LINE_BYTES:,} bytes")
        else:
            described.append(f"line {line}: {kind.lower()}")
    more = f" (and {len(lines) - MAX_REASON_LINES} more bad line(s))" if len(lines) > MAX_REASON_LINES else ""
    if kinds == {"INVALID ENCODING"}:
        what = "not UTF-8"
    elif kinds <= {"TOO MANY COLUMNS", "MISSING COLUMNS"}:
        what = f"ragged CSV: the header has {n_columns} fields"
    else:
        what = f"malformed CSV (the header has {n_columns} fields)"
    return f"{what}: {', '.join(described)}{more}; the whole file is quarantined"


def _read_csv(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """Read a CSV into the temp table `landed_all` (columns c1..cN, all VARCHAR, and the row
    number) and return the header's column names; Refused if any line does not fit the header."""
    names, delimiter, skipped = _csv_header(path)
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(1, len(names) + 1)) + "}"
    con.execute("drop table if exists reject_errors")
    con.execute("drop table if exists reject_scans")
    try:
        con.execute(
            f"""create or replace temp table landed_all as
            select *, row_number() over () as __nudgeflow_row
            from read_csv({_path_literal(path)}, auto_detect = false, header = true, skip = {skipped},
                delim = {_literal(delimiter)}, quote = '"', escape = '"', columns = {columns},
                strict_mode = true, null_padding = false, store_rejects = true,
                max_line_size = {CSV_MAX_LINE_BYTES})"""
        )
    except duckdb.Error as exc:
        raise Refused(f"unreadable CSV: {_first_line(str(exc).replace(str(path), path.name))}") from None
    problem = _csv_errors(con, len(names), delimiter)
    if problem:
        raise Refused(problem)
    return names


def _read_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[list[str], list[str]]:
    """Open a Parquet file as the temp view `landed` (columns c1..cN) and return its column
    names and types; Refused if it is not a readable Parquet file."""
    try:
        con.execute(f"create or replace temp view landed_file as select * from read_parquet({_path_literal(path)})")
        described = con.execute("describe landed_file").fetchall()
    except duckdb.Error as exc:
        message = _first_line(str(exc).replace(str(path), path.name))
        raise Refused(f"not a readable Parquet file (truncated or corrupt?): {message}") from None
    names = [row[0] for row in described]
    types = [row[1] for row in described]
    select = ", ".join(f"{quote_identifier(name)} as c{i}" for i, name in enumerate(names, 1))
    con.execute(f"create or replace temp view landed as select {select} from landed_file")
    return names, types


def _contract_positions(table: str, names: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Positions (1-based) of the contract columns and of the label columns (by dimension) in
    a file's header; Refused if a required column is missing or a column appears twice."""
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(names, 1):
        positions.setdefault(name.strip().lower(), []).append(i)
    wanted = {name for name, _ in COLUMNS[table]}
    if table == "messages":
        wanted |= {n for n in positions if n.startswith(LABEL_PREFIX) and len(n) > len(LABEL_PREFIX)}
    twice = sorted(n for n in wanted if len(positions.get(n, [])) > 1)
    if twice:
        raise Refused(
            "ambiguous header: "
            + ", ".join(f"{n} appears {len(positions[n])} times" for n in twice)
            + " (column names are matched without case and spaces)"
        )
    missing = [name for name, required in COLUMNS[table] if required and name not in positions]
    if missing:
        shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
        raise Refused(f"missing required column(s): {', '.join(missing)} (the header has: {shown or 'nothing'})")
    contract = {name: positions[name][0] for name, _ in COLUMNS[table] if name in positions}
    labels = {n[len(LABEL_PREFIX) :]: positions[n][0] for n in sorted(wanted) if n.startswith(LABEL_PREFIX)}
    return contract, labels


def _refuse_nested(contract: dict, labels: dict, types: list[str]) -> None:
    """Refuse nested Parquet types in the columns read (their text would be read as data)."""
    read = {**contract, **{LABEL_PREFIX + d: i for d, i in labels.items()}}
    nested = [f"{n} is {types[i - 1]}" for n, i in read.items() if re.search(r"STRUCT|MAP|UNION|\[", types[i - 1])]
    if nested:
        raise Refused(f"nested Parquet column type(s): {', '.join(nested)} (the contract's columns are scalars)")


def _type_warnings(con: duckdb.DuckDBPyConnection, contract: dict, types: list[str]) -> list[str]:
    """Warnings for Parquet columns whose type cannot hold a timestamp (their rows are then
    judged by the staging models, one by one)."""
    warnings = []
    for name, i in contract.items():
        kind = types[i - 1]
        if name in TIMESTAMP_COLUMNS and not kind.startswith(TIMESTAMP_TYPES):
            n = con.execute(f"select count(c{i}) from landed_all").fetchall()[0][0]
            if n:
                warnings.append(
                    f"column {name} is {kind}, not a timestamp: its {n} value(s) are read as text, "
                    "and rows where that is no ISO-8601 time are quarantined"
                )
    return warnings


def _load_file(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> tuple[int, list[str]]:
    """Load one file into raw.<table> (and raw.message_labels): the rows loaded and warnings;
    Refused if it breaks the contract as a whole."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise Refused(f"unsupported file type '{path.suffix}' (expected .parquet or .csv)")
    if path.stat().st_size == 0:
        needs = "a CSV file needs at least its header row" if suffix == ".csv" else "not a Parquet file"
        raise Refused(f"empty file (0 bytes): {needs}")
    warnings: list[str] = []
    if suffix == ".csv":
        contract, labels = _contract_positions(table, _read_csv(con, path))
    else:
        names, types = _read_parquet(con, path)
        contract, labels = _contract_positions(table, names)
        _refuse_nested(contract, labels, types)
        try:
            con.execute(
                "create or replace temp table landed_all as "
                "select *, row_number() over () as __nudgeflow_row from landed"
            )
        except duckdb.Error as exc:
            message = _first_line(str(exc).replace(str(path), path.name))
            raise Refused(f"unreadable Parquet data (truncated or corrupt?): {message}") from None
        warnings = _type_warnings(con, contract, types)

    def text(name: str) -> str:
        return f"cast(c{contract[name]} as varchar)" if name in contract else "cast(null as varchar)"

    select = ", ".join(f"{text(name)} as {quote_identifier(name)}" for name, _ in COLUMNS[table])
    file = _literal(path.name)
    try:
        con.execute(
            f"insert into raw.{quote_identifier(table)} by name "
            f"select {select}, {file} as _file, __nudgeflow_row as _row from landed_all"
        )
        for dimension, i in labels.items():
            con.execute(
                f"""insert into raw.message_labels
                select {text("message_id")}, ? as dimension, nullif(trim(cast(c{i} as varchar)), ''),
                       {file}, __nudgeflow_row
                from landed_all
                where nullif(trim(cast(c{i} as varchar)), '') is not null""",
                [dimension],
            )
        return con.execute("select count(*) from landed_all").fetchall()[0][0], warnings
    except duckdb.Error as exc:
        raise Refused(f"unreadable rows: {_first_line(str(exc).replace(str(path), path.name))}") from None


# ----------------------------------------------------------------------------- ingest


def _record(con: duckdb.DuckDBPyConnection, table: str, name: str, version: Version) -> None:
    """Record the version of a file just read, with the next load_seq."""
    con.execute("delete from raw.landed_files where table_name = ? and _file = ?", [table, name])
    con.execute(
        """insert into raw.landed_files
        select ?, ?, coalesce(max(load_seq), 0) + 1, ?, ?, ?, current_timestamp::timestamp from raw.landed_files""",
        [table, name, version.size_bytes, version.modified_at, version.sha256],
    )


def _attempt(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, version: Version
) -> tuple[int | None, str | None, list[str]]:
    """Load one file in one transaction: (rows, None, warnings) or (None, reason, [])."""
    con.execute("begin transaction")
    try:
        n_rows, warnings = _load_file(con, table, path)
    except Exception as exc:  # whatever a file does, it never stops the others
        con.execute("rollback")
        reason = str(exc) if isinstance(exc, Refused) else f"could not be ingested: {type(exc).__name__}: {exc}"
        con.execute("begin transaction")
        con.execute("delete from raw.quarantined_files where table_name = ? and _file = ?", [table, path.name])
        con.execute(
            "insert into raw.quarantined_files values (?, ?, ?, current_timestamp::timestamp)",
            [table, path.name, reason],
        )
        _record(con, table, path.name, version)
        con.execute("commit")
        return None, reason, []
    con.execute("delete from raw.quarantined_files where table_name = ? and _file = ?", [table, path.name])
    con.execute(
        "insert into raw.ingested_files values (?, ?, ?, current_timestamp::timestamp)",
        [table, path.name, n_rows],
    )
    _record(con, table, path.name, version)
    con.execute("commit")
    return n_rows, None, warnings


def _known_versions(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], Version | None]:
    rows = con.execute("select table_name, _file, size_bytes, modified_at, sha256 from raw.landed_files").fetchall()
    return {(t, f): (Version(s, m, h) if s is not None else None) for t, f, s, m, h in rows}


def _update_stat(con: duckdb.DuckDBPyConnection, table: str, name: str, version: Version) -> None:
    """Same content, new size/mtime record (touched, copied): no need to hash it next time."""
    con.execute(
        "update raw.landed_files set size_bytes = ?, modified_at = ?, sha256 = ? where table_name = ? and _file = ?",
        [version.size_bytes, version.modified_at, version.sha256, table, name],
    )


def _changed(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, recorded: Version | None, was_ingested: bool
) -> Version | None:
    """The file's new version if its content differs from the recorded one, else None. The
    size and mtime are compared first; only when they differ is the content hashed (a file
    touched or copied with the same content is unchanged, and its new stat is recorded). A
    file ingested before versions were recorded gets its version recorded as it is now."""
    stat = Version.of(path, content=False)
    if recorded is not None and recorded.same_stat(stat):
        return None
    now = Version.of(path)
    if recorded is not None and recorded.sha256 not in (None, now.sha256):
        return now
    if recorded is None and not was_ingested:
        return now  # quarantined before versions were recorded: read it again once
    _update_stat(con, table, path.name, now)
    return None


def ingest(
    con: duckdb.DuckDBPyConnection, landing: Path, progress: Callable[[str], None] | None = None
) -> IngestReport:
    """Load every landed file not yet loaded, and every quarantined file whose content changed
    since it was quarantined; one transaction per file."""

    def say(message: str) -> None:
        if progress:
            progress(message)

    con.execute("set TimeZone = 'UTC'")
    create_raw_tables(con)
    ingested = set(con.execute("select table_name, _file from raw.ingested_files").fetchall())
    quarantined = set(con.execute("select table_name, _file from raw.quarantined_files").fetchall())
    known = _known_versions(con)
    report = IngestReport(
        loaded={t: 0 for t in COLUMNS},
        rows={t: 0 for t in COLUMNS},
        quarantined=[],
        still_quarantined={t: 0 for t in COLUMNS},
    )
    for table in COLUMNS:
        new_quarantined = 0
        for path in _landed_files(Path(landing), table):
            key = (table, path.name)
            recorded = known.get(key)
            retry = None
            try:
                if key in ingested or key in quarantined:
                    changed = _changed(con, table, path, recorded, key in ingested)
                else:
                    changed = version = Version.of(path)
            except OSError as exc:  # gone or unreadable since it was listed: tried again next run
                say(f"warning: could not read {table}/{path.name} ({exc.strerror or exc}): it is tried again next run")
                continue
            if key in ingested or key in quarantined:
                if changed is None:
                    if key in quarantined:
                        report.still_quarantined[table] += 1
                    continue
                if key in ingested:
                    report.changed.append(key)
                    say(
                        f"warning: {table}/{path.name} changed after it was ingested: landed files never change, "
                        "so the change is ignored (land new rows in a new file)"
                    )
                    continue
                version = changed
                retry = (
                    "it changed since it was quarantined"
                    if recorded is not None
                    else "it was quarantined before file versions were recorded"
                )
                report.retried.append((table, path.name, retry))
                say(f"retrying quarantined {table}/{path.name}: {retry}")
            n_rows, reason, warnings = _attempt(con, table, path, version)
            for warning in warnings:
                say(f"warning: {table}/{path.name}: {warning}")
            if reason is not None:
                report.quarantined.append((table, path.name, reason))
                new_quarantined += 1
                say(f"{'still quarantined' if retry else 'quarantined'} {table}/{path.name}: {reason}")
                continue
            if retry:
                say(f"ingested {table}/{path.name} ({n_rows} rows): no longer quarantined")
            report.loaded[table] += 1
            report.rows[table] += n_rows
        still = report.still_quarantined[table]
        say(
            f"{table}: {report.loaded[table]} new file(s) ingested, {report.rows[table]} rows; "
            f"{new_quarantined} file(s) quarantined"
            + (f", {still} still quarantined (unchanged: fix or replace them to retry)" if still else "")
        )
    files = sum(report.loaded.values())
    still = sum(report.still_quarantined.values())
    say(
        f"ingested {files} new file(s), {sum(report.rows.values())} rows; "
        f"{len(report.quarantined)} file(s) quarantined" + (f", {still} still quarantined (unchanged)" if still else "")
    )
    return report


def step_ingest(home: Path, day, progress: Callable[[str], None] | None = None) -> dict:
    """Load newly landed files into raw.*; bad files are quarantined, never block the rest."""

    with connect(home) as con:
        report = ingest(con, Path(home) / "landing", progress)
    return {
        "files": sum(report.loaded.values()),
        "rows": sum(report.rows.values()),
        "quarantined_files": len(report.quarantined),
        "still_quarantined_files": sum(report.still_quarantined.values()),
        "retried_files": len(report.retried),
        "tables": {
            t: {
                "files": report.loaded[t],
                "rows": report.rows[t],
                "quarantined_files": sum(1 for q in report.quarantined if q[0] == t),
                "still_quarantined_files": report.still_quarantined[t],
            }
            for t in COLUMNS
        },
    }


# ----------------------------------------------------------------------------- accounting


def accounting(con: duckdb.DuckDBPyConnection, progress: Callable[[str], None] | None = None) -> dict:
    """Where every landed row went, per landing table, over everything landed so far; read
    after the dbt build (the staging models decide which rows are valid). ``landed`` (rows in
    raw.<table>) = ``accepted`` + ``quarantined`` + ``duplicates``: quarantined rows are the
    'dropped' rows of marts.quarantine (incl. a repeated send_id or message_id), duplicates
    the repeated events that the contract folds into one (not errors, not listed there), and
    accepted rows include those read with a fail-safe note ('kept' in marts.quarantine,
    counted again in ``accepted_with_note``). Files refused as a whole are counted apart
    (their rows could not be read). Prints one line per table when ``progress`` is given."""

    if not table_exists(con, "marts", "quarantine"):
        return {}
    result = {}
    for table in COLUMNS:
        base = f"staging.{quote_identifier('base_raw__' + table)}"

        def count(sql: str, params: list | None = None) -> int:
            return con.execute(sql, params or []).fetchall()[0][0]

        landed = count(f"select count(*) from raw.{quote_identifier(table)}")
        valid = count(f"select count(*) from {base} where reject_reason is null")
        # events: one accepted row per event (its event_id, else its user, name, time and value),
        # the rows of the deduplicated model (a count from its metadata, not a distinct over the history)
        accepted = count("select count(*) from staging.base_raw__events_deduplicated") if table == "events" else valid
        quarantined, noted = con.execute(
            """select count(*) filter (where action = 'dropped' and _row is not null),
                      count(*) filter (where action = 'kept')
            from marts.quarantine where table_name = ?""",
            [table],
        ).fetchall()[0]
        result[table] = {
            "landed": landed,
            "accepted": accepted,
            "quarantined": quarantined,
            "duplicates": valid - accepted,
            "accepted_with_note": noted,
            "files_ingested": count("select count(*) from raw.ingested_files where table_name = ?", [table]),
            "files_quarantined": count("select count(*) from raw.quarantined_files where table_name = ?", [table]),
            "balanced": landed == valid + quarantined,
        }
    if progress:
        for line in accounting_lines(result):
            progress(line)
    return result


def accounting_lines(result: dict) -> list[str]:
    """One plain-text line per table of an ``accounting`` result."""
    lines = []
    for table, a in result.items():
        line = (
            f"{table}: {a['landed']} row(s) landed = {a['accepted']} accepted + {a['quarantined']} quarantined "
            f"+ {a['duplicates']} duplicate(s) dropped"
        )
        if a["accepted_with_note"]:
            line += f" ({a['accepted_with_note']} accepted with a note)"
        line += f"; files: {a['files_ingested']} ingested, {a['files_quarantined']} quarantined"
        if not a["balanced"]:
            gap = a["landed"] - a["accepted"] - a["quarantined"] - a["duplicates"]
            line += f"; DOES NOT ADD UP: {gap} row(s) unaccounted for"
        lines.append(line)
    return lines
