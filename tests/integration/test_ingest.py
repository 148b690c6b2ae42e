"""Ingest of hostile landed files (plugins/nudgeflow/steps/ingest.py): every file is either
loaded correctly or quarantined as a whole with a reason that says what is wrong, never a
crash, never a silent drop, never a block on the other files; landed names reach SQL only
quoted; a quarantined file fixed in place is read again; "first landed" means ingest order."""

from __future__ import annotations

import datetime as dt
import os
import re

import duckdb
import polars as pl
import pytest

from nudgeflow.steps.ingest import ingest

EVENTS_HEADER = "event_id,user_id,event_name,event_ts,value\n"
GOOD_EVENT = "e1,u1,app_open,2026-01-06T10:00:00Z,\n"


def _ingest(con, landing) -> tuple[object, list[str]]:
    lines: list[str] = []
    report = ingest(con, landing, lines.append)
    return report, lines


def _quarantined(con) -> dict[tuple[str, str], str]:
    return {
        (t, f): r for t, f, r in con.execute("select table_name, _file, reason from raw.quarantined_files").fetchall()
    }


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def _write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("column", ['label_a"b', "label_a=b", "label_it's", "label_two words", 'label_"', "label_[/y]"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_label_column_names_are_quoted(con, tmp_path, column, fmt):
    frame = pl.DataFrame(
        {
            "message_id": ["m1", "m2"],
            "channel": ["push", "email"],
            "label_tone": ["calm", "loud"],
            column: ["x", "[/y]"],
        }
    )
    path = tmp_path / "messages" / f"catalogue.{fmt}"
    path.parent.mkdir(parents=True)
    frame.write_csv(path) if fmt == "csv" else frame.write_parquet(path)
    report, lines = _ingest(con, tmp_path)
    assert report.quarantined == [], lines
    labels = con.execute("select message_id, dimension, value from raw.message_labels order by all").fetchall()
    dimension = column[len("label_") :]
    assert labels == sorted(
        [("m1", "tone", "calm"), ("m2", "tone", "loud"), ("m1", dimension, "x"), ("m2", dimension, "[/y]")]
    )


def test_a_file_name_with_glob_characters_is_read_alone(con, tmp_path):
    _write(tmp_path / "events" / "a*.csv", EVENTS_HEADER + GOOD_EVENT)
    _write(tmp_path / "events" / "ab.csv", EVENTS_HEADER + GOOD_EVENT + "e2,u1,app_open,2026-01-06T11:00:00Z,\n")
    _write(tmp_path / "events" / "it's [1].csv", EVENTS_HEADER + GOOD_EVENT)
    report, lines = _ingest(con, tmp_path)
    assert report.quarantined == [], lines
    counts = dict(con.execute("select _file, count(*) from raw.events group by _file").fetchall())
    assert counts == {"a*.csv": 1, "ab.csv": 2, "it's [1].csv": 1}


# ----------------------------------------------------------------------------- hostile files


def _parquet(frame: pl.DataFrame):
    def write(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path)

    return write


def _truncated(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"event_id": [f"e{i}" for i in range(500)], "user_id": "u1", "event_name": "x"}).with_columns(
        event_ts=pl.lit(dt.datetime(2026, 1, 6))
    ).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-200])


# (file name under events/ or consents/, content, expected): expected is the number of rows
# loaded, or a regular expression that the quarantine reason must match
CASES = {
    "ragged": (
        "events/ragged.csv",
        EVENTS_HEADER + GOOD_EVENT + "e2,u1,app_open,2026-01-06T10:00:00Z,,extra\ne3,u1,app_open\n",
        r"^ragged CSV: the header has 5 fields: line 3 has 6 fields, line 4 has 3 fields",
    ),
    "ragged, many lines": (
        "events/ragged_many.csv",
        EVENTS_HEADER + "e,u\n" * 10,
        r"^ragged CSV: .*line 2 has 2 fields, line 3 has 2 fields, line 4 has 2 fields \(and 7 more bad line",
    ),
    "not UTF-8 in a row": (
        "events/latin1.csv",
        (EVENTS_HEADER + GOOD_EVENT + "e2,u1,caf\xe9,2026-01-06T10:00:00Z,\n").encode("latin-1"),
        r"^not UTF-8: line 3 has bytes that are not UTF-8",
    ),
    "not UTF-8 in the header": (
        "events/latin1_header.csv",
        "event_id,user_id,event_name,event_ts,valu\xe9\n".encode("latin-1"),
        r"^not UTF-8: the header row",
    ),
    "UTF-16": ("events/utf16.csv", (EVENTS_HEADER + GOOD_EVENT).encode("utf-16"), r"^not UTF-8"),
    "empty CSV": ("events/empty.csv", b"", r"^empty file \(0 bytes\)"),
    "empty Parquet": ("events/empty.parquet", b"", r"^empty file \(0 bytes\)"),
    "blank lines only": ("events/blank.csv", "\n \n\r\n", r"^no header row"),
    "header only": ("events/header_only.csv", EVENTS_HEADER, 0),
    "header only, no newline": ("events/header_only_no_newline.csv", EVENTS_HEADER.strip(), 0),
    "no header": ("events/no_header.csv", GOOD_EVENT * 2, r"^missing required column\(s\): .*\(the header has: 'e1'"),
    "wrong header": (
        "events/wrong_header.csv",
        "id,user,name,ts\ne1,u1,x,2026-01-06\n",
        r"^missing required column\(s\): user_id, event_name, event_ts",
    ),
    "ambiguous header": (
        "events/twice.csv",
        "event_id,user_id,event_name,event_ts,User_ID\ne1,u1,x,2026-01-06,u2\n",
        r"^ambiguous header: user_id appears 2 times",
    ),
    "unterminated quote": (
        "events/quote.csv",
        EVENTS_HEADER + 'e1,u1,"never closed,2026-01-06,\n' + GOOD_EVENT,
        r"^malformed CSV .*line 2 has a quote that is not closed",
    ),
    "a line over 2 MB": (
        "events/long_line.csv",
        EVENTS_HEADER + "e1,u1," + "x" * 2_200_000 + ",2026-01-06,\n",
        r"line 2 is longer than 2,097,152 bytes",
    ),
    "unsupported type": ("events/events.json", '{"event_id": "e1"}', r"^unsupported file type '\.json'"),
    "truncated Parquet": (
        "events/truncated.parquet",
        _truncated,
        r"^not a readable Parquet file \(truncated or corrupt",
    ),
    "not Parquet at all": ("events/text.parquet", EVENTS_HEADER + GOOD_EVENT, r"^not a readable Parquet file"),
    "nested Parquet column": (
        "events/nested.parquet",
        _parquet(
            pl.DataFrame(
                {"user_id": [{"id": 1}], "event_name": ["x"], "event_ts": [dt.datetime(2026, 1, 6)], "value": [1.0]}
            )
        ),
        r"^nested Parquet column type\(s\): user_id is STRUCT",
    ),
    # accepted as they are
    "quotes, commas and newlines": (
        "events/quoted.csv",
        EVENTS_HEADER
        + 'e1,u1,"say ""hi"", it\'s",2026-01-06,\ne2,u1,"two\nlines",2026-01-06,\n'
        + 'e3,u1,buy "now",x,\n',
        3,
    ),
    "BOM and CRLF": ("events/bom.csv", ("\ufeff" + EVENTS_HEADER + GOOD_EVENT).replace("\n", "\r\n").encode(), 1),
    "blank lines before the header": ("events/blank_first.csv", "\n\n" + EVENTS_HEADER + GOOD_EVENT, 1),
    "semicolons": ("events/semicolons.csv", EVENTS_HEADER.replace(",", ";") + GOOD_EVENT.replace(",", ";"), 1),
    "header with spaces and case": ("events/spaces.csv", " Event_ID , USER_ID,event_name ,Event_TS\ne1,u1,x,t\n", 1),
    "100 kB strings": (
        "events/big.csv",
        EVENTS_HEADER + "e1,u1," + "x" * 100_000 + ",2026-01-06," + "9" * 1000 + "\n",
        1,
    ),
    "Parquet event_ts as an integer": (
        "events/ts_int.parquet",
        _parquet(pl.DataFrame({"user_id": ["u1", "u2"], "event_name": ["x", "y"], "event_ts": [1767700000, None]})),
        2,
    ),
    "Parquet opted_in as an integer": (
        "consents/opted_in_int.parquet",
        _parquet(
            pl.DataFrame(
                {
                    "user_id": ["u1", "u2"],
                    "channel": ["push", "push"],
                    "opted_in": [0, 1],
                    "updated_ts": [dt.datetime(2026, 1, 6)] * 2,
                }
            )
        ),
        2,
    ),
    "Parquet all-null optional timestamp": (
        "users/null_ts.parquet",
        _parquet(pl.DataFrame({"user_id": ["u1"], "updated_ts": [None]})),
        1,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_file_is_loaded_or_quarantined_with_what_is_wrong(con, tmp_path, case):
    name, content, expected = CASES[case]
    path = tmp_path / name
    content(path) if callable(content) else _write(path, content)
    table = name.split("/")[0]
    good = tmp_path / table / "zz_good.csv"  # sorts after it: loaded whatever the hostile file did
    header = {"events": EVENTS_HEADER, "consents": "user_id,channel,opted_in,updated_ts\n", "users": "user_id\n"}
    _write(
        good, header[table] + {"events": GOOD_EVENT, "consents": "u1,push,true,2026-01-01\n", "users": "u1\n"}[table]
    )
    report, lines = _ingest(con, tmp_path)
    quarantined = _quarantined(con)
    loaded = dict(con.execute("select _file, n_rows from raw.ingested_files").fetchall())
    assert loaded["zz_good.csv"] == 1
    if isinstance(expected, int):
        assert (table, path.name) not in quarantined, quarantined
        assert loaded[path.name] == expected
        raw = con.execute(f"select count(*) from raw.{table} where _file = ?", [path.name]).fetchall()[0][0]
        assert raw == expected
    else:
        assert path.name not in loaded
        assert re.search(expected, quarantined[(table, path.name)]), quarantined[(table, path.name)]
        assert str(tmp_path) not in quarantined[(table, path.name)]  # the file's name, not where it lives
        assert any(line.startswith(f"quarantined {table}/{path.name}: ") for line in lines), lines
        assert con.execute(f"select count(*) from raw.{table} where _file = ?", [path.name]).fetchall() == [(0,)]


def test_values_of_hostile_files_land_as_text(con, tmp_path):
    for case in ("quotes, commas and newlines", "100 kB strings", "Parquet event_ts as an integer"):
        name, content, _ = CASES[case]
        content(tmp_path / name) if callable(content) else _write(tmp_path / name, content)
    _, lines = _ingest(con, tmp_path)
    rows = con.execute(
        "select _file, _row, event_name, event_ts, value from raw.events order by _file, _row"
    ).fetchall()
    assert rows[:2] == [
        ("big.csv", 1, "x" * 100_000, "2026-01-06", "9" * 1000),
        ("quoted.csv", 1, 'say "hi", it\'s', "2026-01-06", None),
    ]
    assert rows[2][2] == "two\nlines" and rows[3][2] == 'buy "now"'
    assert rows[4:] == [("ts_int.parquet", 1, "x", "1767700000", None), ("ts_int.parquet", 2, "y", None, None)]
    assert any("warning: events/ts_int.parquet: column event_ts is BIGINT, not a timestamp" in line for line in lines)


def test_a_file_that_vanishes_while_listed_is_tried_again_next_run(con, tmp_path, monkeypatch):
    import nudgeflow.steps.ingest as ingest_module

    _write(tmp_path / "events" / "a.csv", EVENTS_HEADER + GOOD_EVENT)
    _write(tmp_path / "events" / "b.csv", EVENTS_HEADER + GOOD_EVENT)
    real = ingest_module._sha256

    def gone(path):
        if path.name == "a.csv":
            raise FileNotFoundError(2, "No such file or directory")
        return real(path)

    monkeypatch.setattr(ingest_module, "_sha256", gone)
    report, lines = _ingest(con, tmp_path)
    assert report.loaded["events"] == 1 and report.quarantined == []
    assert "warning: could not read events/a.csv (No such file or directory): it is tried again next run" in lines
    monkeypatch.setattr(ingest_module, "_sha256", real)
    report, _ = _ingest(con, tmp_path)
    assert report.loaded["events"] == 1


# ----------------------------------------------------------------------------- fixed in place


def _bump_mtime(path, seconds: int = 10) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_a_quarantined_file_fixed_in_place_is_read_again(con, tmp_path):
    path = tmp_path / "events" / "day1.csv"
    _write(path, EVENTS_HEADER + GOOD_EVENT + "e2,u1,app_open\n")
    _write(tmp_path / "events" / "day0.csv", EVENTS_HEADER + "e0,u1,app_open,2026-01-05T10:00:00Z,\n")
    report, lines = _ingest(con, tmp_path)
    assert [q[1] for q in report.quarantined] == ["day1.csv"]

    # unchanged: not read again, and the run says it is still quarantined
    report, lines = _ingest(con, tmp_path)
    assert report.quarantined == [] and report.retried == []
    assert report.still_quarantined["events"] == 1
    assert "events: 0 new file(s) ingested, 0 rows; 0 file(s) quarantined, 1 still quarantined" in lines[0]
    assert lines[-1].endswith("0 file(s) quarantined, 1 still quarantined (unchanged)")

    # touched, same content: still not read again
    _bump_mtime(path)
    report, lines = _ingest(con, tmp_path)
    assert report.retried == [] and report.still_quarantined["events"] == 1

    # fixed in place: read again, its rows are used and it leaves the quarantine
    _write(path, EVENTS_HEADER + GOOD_EVENT + "e2,u1,app_open,2026-01-06T11:00:00Z,\n")
    _bump_mtime(path, 20)
    report, lines = _ingest(con, tmp_path)
    assert report.retried == [("events", "day1.csv", "it changed since it was quarantined")]
    assert "retrying quarantined events/day1.csv: it changed since it was quarantined" in lines
    assert "ingested events/day1.csv (2 rows): no longer quarantined" in lines
    assert report.loaded["events"] == 1 and report.rows["events"] == 2
    assert _quarantined(con) == {}
    assert con.execute("select count(*) from raw.events where _file = 'day1.csv'").fetchall() == [(2,)]
    seq = dict(con.execute("select _file, load_seq from raw.landed_files").fetchall())
    assert seq["day1.csv"] > seq["day0.csv"]  # it landed when it was fixed

    # and from then on it is an ingested file like any other
    report, lines = _ingest(con, tmp_path)
    assert report.loaded["events"] == 0 and report.retried == [] and report.still_quarantined["events"] == 0


def test_a_quarantined_file_fixed_but_still_bad_gets_the_new_reason(con, tmp_path):
    path = tmp_path / "users" / "users.csv"
    _write(path, "")
    _ingest(con, tmp_path)
    _write(path, "id,timezone\nu1,UTC\n")
    _bump_mtime(path)
    report, lines = _ingest(con, tmp_path)
    assert [r[1] for r in report.retried] == ["users.csv"]
    assert any(
        line.startswith("still quarantined users/users.csv: missing required column(s): user_id") for line in lines
    )
    assert list(_quarantined(con).values()) == [
        "missing required column(s): user_id (the header has: 'id', 'timezone')"
    ]  # one row per file: the latest reason


def test_an_ingested_file_that_changes_is_not_read_again(con, tmp_path):
    path = tmp_path / "events" / "day1.csv"
    _write(path, EVENTS_HEADER + GOOD_EVENT)
    _ingest(con, tmp_path)
    _write(path, EVENTS_HEADER + GOOD_EVENT + "e2,u1,app_open,2026-01-06T11:00:00Z,\n")
    _bump_mtime(path)
    report, lines = _ingest(con, tmp_path)
    assert report.changed == [("events", "day1.csv")]
    assert any(line.startswith("warning: events/day1.csv changed after it was ingested") for line in lines)
    assert con.execute("select count(*) from raw.events").fetchall() == [(1,)]


def test_a_warehouse_from_before_the_ledger_is_migrated(con, tmp_path):
    """Files ingested before raw.landed_files existed get their load order from ingested_at; a
    file quarantined then (no version known) is read again once."""
    con.execute("create schema raw")
    con.execute(
        "create table raw.ingested_files (table_name varchar, _file varchar, n_rows bigint, ingested_at timestamp)"
    )
    con.execute(
        "create table raw.quarantined_files "
        "(table_name varchar, _file varchar, reason varchar, quarantined_at timestamp)"
    )
    con.execute(
        "insert into raw.ingested_files values "
        "('events', 'b.csv', 1, '2026-01-01'), ('events', 'a.csv', 1, '2026-01-02')"
    )
    con.execute(
        "insert into raw.quarantined_files values ('events', 'c.csv', 'missing required column(s)', '2026-01-01')"
    )
    for name in ("a.csv", "b.csv", "c.csv"):
        _write(tmp_path / "events" / name, EVENTS_HEADER + GOOD_EVENT)
    report, lines = _ingest(con, tmp_path)
    assert report.retried == [("events", "c.csv", "it was quarantined before file versions were recorded")]
    assert report.loaded["events"] == 1 and _quarantined(con) == {}
    seq = dict(con.execute("select _file, load_seq from raw.landed_files").fetchall())
    assert seq["b.csv"] < seq["a.csv"] < seq["c.csv"]
    report, _ = _ingest(con, tmp_path)  # versions recorded: nothing is read again
    assert report.loaded["events"] == 0 and report.retried == [] and report.changed == []


# ----------------------------------------------------------------------------- first landed


def test_a_late_file_never_replaces_what_landed_first(tmp_path):
    """The first landed row of an event_id / send_id is kept, by ingest order: a file that
    lands later but whose name sorts first does not replace it (not in the incremental build
    after it, not in a full refresh);
    a tie of users' updated_ts goes to the row that landed last."""
    from nudgeflow.config import Settings, as_of
    from nudgeflow.steps import step_ingest
    from nudgeflow.steps.measure import dbt_build

    home = tmp_path / "home"
    landing = home / "landing"
    sends_header = "send_id,user_id,message_id,channel,sent_ts\n"
    users_header = "user_id,timezone,updated_ts\n"
    _write(landing / "events" / "b_first.csv", EVENTS_HEADER + "e1,u1,app_open,2026-01-06T10:00:00Z,1\n")
    _write(landing / "sends" / "b_first.csv", sends_header + "s1,u1,m1,push,2026-01-06T10:00:00Z\n")
    _write(landing / "users" / "b_first.csv", users_header + "u1,Europe/Paris,2026-01-01\n")
    step_ingest(home, None)
    day = dt.date(2026, 1, 8)
    dbt_build(home, Settings(), as_of(day))  # so that the next build deduplicates incrementally
    _write(landing / "events" / "a_late.csv", EVENTS_HEADER + "e1,u2,purchase,2026-01-06T09:00:00Z,2\n")
    _write(landing / "sends" / "a_late.csv", sends_header + "s1,u2,m2,email,2026-01-06T09:00:00Z\n")
    _write(landing / "users" / "a_late.csv", users_header + "u1,Asia/Tokyo,2026-01-01\n")
    step_ingest(home, None)
    for full_refresh in (False, True):
        dbt_build(home, Settings(), as_of(day), full_refresh=full_refresh)
        wh = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
        try:
            events = wh.execute("select event_id, user_id, value from staging.stg_raw__events").fetchall()
            sends = wh.execute("select send_id, user_id from staging.stg_raw__sends").fetchall()
            users = wh.execute("select user_id, timezone from staging.stg_raw__users").fetchall()
            dropped = wh.execute("select _file, reason from marts.quarantine where table_name = 'sends'").fetchall()
        finally:
            wh.close()
        assert events == [("e1", "u1", 1.0)], full_refresh
        assert sends == [("s1", "u1")], full_refresh
        assert dropped == [("a_late.csv", "duplicate send_id")], full_refresh
        assert users == [("u1", "Asia/Tokyo")], full_refresh
