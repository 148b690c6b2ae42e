"""Nothing wrong sent, nothing lost: a hostile-input corpus (tests/integration/corpus/, see its
README) and random malformed rows mixed into a simulated world, through the whole pipeline.

Every run succeeds; every bad row is in marts.quarantine with a readable reason and every
refused file with what is wrong with it; every landed row is accounted for (landed =
accepted + quarantined + duplicates, `ingest.accounting`); every exported row keeps the
guardrails (`guardrails.violations`); and a later run still succeeds.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
import tempfile
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nudgeflow.config import load_settings
from nudgeflow.guardrails import violations
from nudgeflow.lab.simulate import create_world
from nudgeflow.steps import run
from nudgeflow.steps.ingest import COLUMNS, accounting

CORPUS = Path(__file__).parent / "corpus" / "landing"
START = dt.date(2026, 1, 5)
HISTORY = 4
DAY = START + dt.timedelta(days=HISTORY)
GOAL = 'it\'s a "purchase"'
BIG = 100_000  # characters of the 100 kB strings

# files refused as a whole: a regular expression for the reason
FILE_EXPECT = {
    ("events", "ragged.csv"): r"^ragged CSV: the header has 6 fields: line 3 has 7 fields, line 4 has 3 fields",
    ("events", "latin1.csv"): r"^not UTF-8: line 2 has bytes that are not UTF-8",
    ("events", "empty.csv"): r"^empty file \(0 bytes\)",
    ("events", "empty.parquet"): r"^empty file \(0 bytes\)",
    (
        "events",
        "no_header.csv",
    ): r"^missing required column\(s\): user_id, event_name, event_ts \(the header has: 'e-noh",
    (
        "events",
        "wrong_header.csv",
    ): r"^missing required column\(s\): event_ts \(the header has: 'user_id', 'event_name'\)",
    ("events", "events.json"): r"^unsupported file type '\.json'",
    ("events", "unterminated_quote.csv"): r"line 2 has a quote that is not closed",
    ("events", "truncated.parquet"): r"^not a readable Parquet file \(truncated or corrupt\?\)",
    ("events", "nested.parquet"): r"^nested Parquet column type\(s\): user_id is STRUCT",
    ("messages", "catalogue_0003_twice.csv"): r"^ambiguous header: label_tone appears 2 times",
}


def _hostile_catalogue(landing: Path) -> None:
    """catalogue_0002.csv: the world's catalogue (so the schedule keeps its messages) with
    hostile label columns, and bad rows; it sorts after the world's and becomes current."""
    world = pl.read_parquet(landing / "messages" / "catalogue_0001.parquet")
    world = world.with_columns(pl.all().cast(pl.String)).with_columns(
        pl.Series('label_a"b', [["x", 'it\'s "q"', None][i % 3] for i in range(world.height)]),
        pl.Series("label_a=b", [["[/y]", "[/z]", ""][i % 3] for i in range(world.height)]),
        expect=pl.lit("ok"),
    )
    first = world.row(0, named=True)

    def row(**values) -> dict:
        return {**first, "title": "corpus", **values}

    extra = pl.DataFrame(
        [
            row(expect="dropped: ^duplicate message_id in snapshot$"),
            row(message_id="m-no-channel", channel=None, expect="dropped: ^missing channel$"),
            row(message_id="m-bad-active", active="maybe", expect="dropped: ^unparsable boolean active: maybe$"),
            row(
                message_id="m-bad-from", valid_from="soon", expect="dropped: ^unparsable timestamp valid_from .*: soon$"
            ),
            row(
                message_id="m-bad-to",
                valid_to="2026-01-01T00:00:00+99:00",
                expect="dropped: ^unparsable timestamp valid_to",
            ),
            row(message_id="", expect="dropped: ^missing message_id$"),
            row(message_id="m-pigeon", channel="carrier_pigeon", countries="", expect="ok"),
            row(message_id="m-big", title="t" * BIG, body="b" * BIG, label_tone="z" * BIG, expect="ok"),
        ],
        schema=world.schema,
    )
    pl.concat([world, extra]).write_csv(landing / "messages" / "catalogue_0002.csv")


def _generated(landing: Path) -> None:
    """The cases that need a binary writer or are too big to keep as files."""
    _hostile_catalogue(landing)
    events = landing / "events"
    world_events = sorted(events.glob("events_*.parquet"))[0]
    (events / "truncated.parquet").write_bytes(world_events.read_bytes()[:-100])
    pl.DataFrame(
        {
            "user_id": [{"id": 1}],
            "event_name": ["app_open"],
            "event_ts": [dt.datetime(2026, 1, 7)],
        }
    ).write_parquet(events / "nested.parquet")
    pl.DataFrame(
        {
            "event_id": ["e-int-1", "e-int-2"],
            "user_id": ["u000001", "u000001"],
            "event_name": ["app_open", "app_open"],
            "event_ts": [1767700000, None],
            "expect": ["dropped: ^unparsable timestamp event_ts .*: 1767700000$", "dropped: ^missing event_ts$"],
        }
    ).write_parquet(events / "ts_int.parquet")
    pl.DataFrame(
        {
            "event_id": ["e-big-1", "e-big-2"],
            "user_id": ["u000042", "u" * BIG],
            "event_name": ["n" * BIG, "app_open"],
            "event_ts": ["2026-01-07T10:00:00Z"] * 2,
            "expect": ["ok", "ok"],
        }
    ).write_csv(events / "big_strings.csv")
    pl.DataFrame(
        {
            "user_id": ["u000040", "u000041"],
            "channel": ["push", "push"],
            "opted_in": [0, 1],
            "updated_ts": [dt.datetime(2026, 1, 8)] * 2,
            "expect": ["ok", "ok"],
        }
    ).write_parquet(landing / "consents" / "opted_in_int.parquet")


def _expectations(home: Path, con) -> dict[tuple[str, str, int], str]:
    """(table, file, row) -> the `expect` cell, for every ingested file that has that column."""
    out = {}
    for table, name in con.execute("select table_name, _file from raw.ingested_files").fetchall():
        path = home / "landing" / table / name
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            rows = frame.to_dicts() if "expect" in frame.columns else []
        else:
            with path.open(encoding="utf-8-sig", newline="") as f:
                rows = list(csv.DictReader(f))
        for i, r in enumerate(rows, 1):
            if r.get("expect") is not None:
                out[(table, name, i)] = r["expect"].strip()
    return out


def _check_rows(home: Path, con, fixed: frozenset = frozenset()) -> dict:
    """Every expectation holds; nothing else is quarantined (but the files of FILE_EXPECT,
    less those fixed since); the accounting adds up."""
    expect = _expectations(home, con)
    quarantine = con.execute("select table_name, _file, _row, reason, action from marts.quarantine").fetchall()
    rows = {(t, f, r): (reason, action) for t, f, r, reason, action in quarantine if r is not None}
    assert len(rows) == sum(1 for q in quarantine if q[2] is not None)  # one entry per row
    for key, e in expect.items():
        if e in ("ok", "duplicate"):
            assert key not in rows, (key, rows.get(key))
        else:
            action, regex = e.split(": ", 1)
            assert key in rows, (key, e)
            reason, got = rows[key]
            assert got == action and re.search(regex, reason), (key, e, reason, got)
    assert set(rows) <= set(expect), set(rows) - set(expect)  # nothing the corpus did not expect
    files = {(t, f): reason for t, f, r, reason, _ in quarantine if r is None}
    assert set(files) == set(FILE_EXPECT) - fixed
    for key, reason in files.items():
        assert re.search(FILE_EXPECT[key], reason), (key, reason)
    for _, _, _, reason, _ in quarantine:  # readable: short, one line
        assert 0 < len(reason) <= 400 and "\n" not in reason, reason

    lines: list[str] = []
    acc = accounting(con, lines.append)
    assert set(acc) == set(COLUMNS) and len(lines) == len(COLUMNS)
    for table, a in acc.items():
        assert a["balanced"], (table, a)
        assert a["landed"] == a["accepted"] + a["quarantined"] + a["duplicates"]
        assert a["quarantined"] == sum(1 for (t, _, _), (_, act) in rows.items() if t == table and act == "dropped")
        assert a["accepted_with_note"] == sum(1 for (t, _, _), (_, act) in rows.items() if t == table and act == "kept")
    assert acc["events"]["duplicates"] == sum(
        1 for (t, _, _), e in expect.items() if t == "events" and e == "duplicate"
    )
    assert all(re.fullmatch(r"\w+: \d+ row\(s\) landed = \d+ accepted \+ \d+ quarantined \+ \d+ .*", x) for x in lines)
    return acc


def _guardrails_hold(home: Path, day: dt.date) -> int:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        assert violations(con, day, load_settings(home)).height == 0
        return con.execute("select count(*) from send_schedule where schedule_date = ?", [day]).fetchall()[0][0]
    finally:
        con.close()


@pytest.fixture(scope="module")
def corpus_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("corpus")
    create_world(home, users=60, history_days=HISTORY, start=START, seed=11)
    (home / "nudgeflow.yml").write_text(yaml.safe_dump({"goal_event": GOAL}))  # a goal with quotes
    for path in CORPUS.rglob("*"):
        if path.is_file():
            target = home / "landing" / path.relative_to(CORPUS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    _generated(home / "landing")
    lines: list[str] = []
    result = run(home, DAY, progress=lines.append)
    return home, result, lines


def test_the_corpus_runs_and_every_bad_row_is_quarantined_with_its_reason(corpus_home):
    home, result, lines = corpus_home
    assert load_settings(home).goal_event == GOAL
    assert result["rows"] > 0  # a schedule, despite everything
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        _check_rows(home, con)
        # accepted correctly: offsets honoured, padding trimmed, the first duplicate kept, 0/1 opt-ins
        ts = dict(con.execute("select event_id, event_ts from staging.stg_raw__events").fetchall())
        assert ts["e-ok-3"] == dt.datetime(2026, 1, 6, 20) and ts["e-ok-4"] == dt.datetime(2026, 1, 7, 15, 30)
        assert "e-ok-future" not in ts  # accepted, but after the as-of time
        first = con.execute("select user_id, event_name from staging.stg_raw__events where event_id = 'e-ok-1'")
        assert first.fetchall() == [("u000001", "app_open")]
        spaces = con.execute(
            "select user_id, event_name, value from staging.stg_raw__events where event_id = 'e-ok-spaces'"
        )
        assert spaces.fetchall() == [("u000013", "app_open", 3.0)]
        big = con.execute("select count(*) from staging.stg_raw__events where length(event_name) = ?", [BIG])
        assert big.fetchall() == [(1,)]
        opted = {
            (u, c): o
            for u, c, o in con.execute("select * exclude (updated_ts) from staging.stg_raw__consents").fetchall()
        }
        assert opted[("u000040", "push")] is False and opted[("u000041", "push")] is True  # 0 / 1
        assert opted[("u000022", "push")] is False and opted[("u000023", "email")] is False  # maybe / empty
        assert opted[("u000024", "push")] is True and opted[("u000021", "carrier_pigeon")] is True
        zone = con.execute("select timezone from staging.stg_raw__users where user_id = 'u000020'").fetchall()
        assert zone == [("Asia/Tokyo",)]
        # the hostile label columns are action sets of the current catalogue (the quarantined
        # snapshot that sorts last never becomes current)
        current = con.execute(
            "select distinct snapshot_file from staging.stg_raw__messages where is_current"
        ).fetchall()
        assert current == [("catalogue_0002.csv",)]
        sets = dict(
            con.execute(
                "select action_set, list(distinct action order by action) from marts.catalogue_labels group by 1"
            ).fetchall()
        )
        assert sets['label_a"b'] == ['it\'s "q"', "x"] and sets["label_a=b"] == ["[/y]", "[/z]"]
        assert "z" * BIG in sets["label_tone"]
        goals = con.execute("select count(*) from staging.stg_raw__events where event_name = ?", [GOAL]).fetchall()
        assert goals == [(3,)]
    finally:
        con.close()
    assert _guardrails_hold(home, DAY) == result["rows"]
    # the run says what it did: one line per table, and every refused file
    for table in COLUMNS:
        assert any(line.startswith(f"{table}: ") and "new file(s) ingested" in line for line in lines), table
    for table, name in FILE_EXPECT:
        assert any(line.startswith(f"quarantined {table}/{name}: ") for line in lines), name


def test_a_later_run_succeeds_picks_up_a_fixed_file_and_keeps_the_first_landed(corpus_home):
    home, _, _ = corpus_home
    landing = home / "landing"
    ragged = landing / "events" / "ragged.csv"
    ragged.write_text(
        "event_id,user_id,event_name,event_ts,value,expect\n"
        "e-ragged-1,u000001,app_open,2026-01-07T10:00:00Z,,ok\n"
        "e-ragged-2,u000001,app_open,2026-01-07T10:00:00Z,,ok\n"
    )
    # late files whose names sort before the world's: they must not replace what landed first
    (landing / "events" / "a_late.csv").write_text(
        "event_id,user_id,event_name,event_ts,value,expect\n"
        "e20260105-0000001,u000002,purchase,2026-01-05T00:00:00Z,1000,duplicate\n"
        "e-late-1,u000002,app_open,2026-01-09T10:00:00Z,,ok\n"
    )
    (landing / "sends" / "a_late.csv").write_text(
        "send_id,user_id,message_id,channel,sent_ts,expect\n"
        "s-20260105-000001,u000002,msg_002,email,2026-01-05T12:00:00Z,dropped: ^duplicate send_id$\n"
    )
    day = DAY + dt.timedelta(days=1)
    lines: list[str] = []
    result = run(home, day, progress=lines.append)
    assert "retrying quarantined events/ragged.csv: it changed since it was quarantined" in lines
    assert "ingested events/ragged.csv (2 rows): no longer quarantined" in lines
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        acc = _check_rows(home, con, fixed=frozenset({("events", "ragged.csv")}))
        event = con.sql(
            "select * exclude (load_seq) from staging.stg_raw__events where event_id = 'e20260105-0000001'"
        ).pl()
        send = con.sql("select * from staging.stg_raw__sends where send_id = 's-20260105-000001'").pl()
    finally:
        con.close()
    world_event = pl.read_parquet(landing / "events" / "events_2026-01-05.parquet").filter(
        pl.col("event_id") == "e20260105-0000001"
    )
    world_send = pl.read_parquet(landing / "sends" / "sends_2026-01-05.parquet").filter(
        pl.col("send_id") == "s-20260105-000001"
    )
    assert world_event.height == 1 and world_send.height == 1
    assert event.to_dicts() == world_event.select(event.columns).to_dicts()
    assert send.to_dicts() == world_send.select(send.columns).to_dicts()
    assert acc["events"]["files_quarantined"] == len([k for k in FILE_EXPECT if k[0] == "events"]) - 1
    assert _guardrails_hold(home, day) == result["rows"]


# ----------------------------------------------------------------------------- property


@pytest.fixture(scope="module")
def clean_home(tmp_path_factory):
    """A small world planned for DAY: the starting point of every random example."""
    home = tmp_path_factory.mktemp("property")
    create_world(home, users=40, history_days=3, start=START, seed=12)
    run(home, START + dt.timedelta(days=3))
    return home


PROPERTY_DAY = START + dt.timedelta(days=4)
USERS = [f"u{i:06d}" for i in range(1, 41)]
BAD_TIMESTAMPS = [
    "yesterday",
    "infinity",
    "-infinity",
    "epoch",
    "0044-03-15 BC",
    "2026-01-07T10:00:00+99:00",
    "2300-01-01",
    "1969-12-31T23:59:59Z",
    "2026-02-30",
    "1767700000",
    "10:00",
    "NaT",
]
BAD_NUMBERS = ["NaN", "inf", "-inf", "1e400", "1,5", "abc"]
# free text: anything with a visible character (quotes, commas, newlines, NUL, unicode)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(lambda s: s.strip())


@st.composite
def _timestamp(draw) -> str:
    t = draw(st.datetimes(min_value=dt.datetime(2025, 12, 1), max_value=dt.datetime(2026, 1, 9, 23)))
    form = draw(
        st.sampled_from(["{:%Y-%m-%dT%H:%M:%S}Z", "{:%Y-%m-%d %H:%M:%S}", "{:%Y-%m-%dT%H:%M}+02:00", "{:%Y-%m-%d}"])
    )
    return form.format(t)


@st.composite
def _rows(draw, table: str) -> list[tuple[dict, str | None]]:
    """Rows for one landing table, each with the reason fragment it must be quarantined with
    (None: a valid row)."""
    out = []
    for i in range(draw(st.integers(1, 12))):
        if table == "events":
            row = {
                "event_id": draw(st.one_of(st.none(), st.sampled_from(["h1", "h2"]), TEXT)),
                "user_id": draw(st.sampled_from(USERS)),
                "event_name": draw(st.one_of(st.sampled_from(["app_open", "view_item", "purchase"]), TEXT)),
                "event_ts": draw(_timestamp()),
                "value": draw(st.one_of(st.none(), st.floats(0, 500).map(repr))),
            }
            required, timestamps, numbers = ["user_id", "event_name", "event_ts"], ["event_ts"], ["value"]
        elif table == "users":
            row = {
                "user_id": draw(st.one_of(st.sampled_from(USERS), TEXT)),
                "timezone": draw(
                    st.one_of(st.none(), st.sampled_from(["Europe/Paris", "utc", "PST", "Mars/Olympus"]), TEXT)
                ),
                "country": draw(st.one_of(st.none(), st.sampled_from(["FR", "us", "GB"]), TEXT)),
                "updated_ts": draw(st.one_of(st.none(), _timestamp())),
            }
            required, timestamps, numbers = ["user_id"], ["updated_ts"], []
        elif table == "consents":
            row = {
                "user_id": draw(st.sampled_from(USERS)),
                "channel": draw(st.one_of(st.sampled_from(["push", "email", "in_app", "sms", "PUSH"]), TEXT)),
                "opted_in": draw(st.one_of(st.sampled_from(["true", "false", "yes", "0", "maybe", ""]), TEXT)),
                "updated_ts": draw(_timestamp()),
            }
            required, timestamps, numbers = ["user_id", "channel", "updated_ts"], ["updated_ts"], []
        else:
            row = {
                "send_id": f"hs-{i}" if draw(st.booleans()) else "hs-dup",
                "user_id": draw(st.sampled_from(USERS)),
                "message_id": draw(st.one_of(st.sampled_from(["msg_001", "msg_002"]), TEXT)),
                "channel": draw(st.sampled_from(["push", "email", "sms"])),
                "sent_ts": draw(_timestamp()),
            }
            required, timestamps, numbers = ["send_id", "user_id", "message_id", "channel", "sent_ts"], ["sent_ts"], []
        defect = draw(st.sampled_from([None, None, "missing", "timestamp", "number"]))
        reason = None
        if defect == "missing":
            column = draw(st.sampled_from(required))
            row[column] = draw(st.sampled_from(["", "   ", None]))
            reason = f"missing {column}"
        elif defect == "timestamp":
            column = draw(st.sampled_from(timestamps))
            row[column] = draw(st.sampled_from(BAD_TIMESTAMPS))
            reason = f"unparsable timestamp {column}"
        elif defect == "number" and numbers:
            row["value"] = draw(st.sampled_from(BAD_NUMBERS))
            reason = "unparsable number value"
        out.append((row, reason))
    if table == "sends":  # of the valid rows sharing a send_id, the first is kept
        seen = set()
        for k, (row, reason) in enumerate(out):
            if reason is None:
                if row["send_id"] in seen:
                    out[k] = (row, "duplicate send_id")
                seen.add(row["send_id"])
    return out


BROKEN = {  # a file broken as a whole, and the reason it must get
    "ragged": (b"user_id,channel\nu1,push,extra\n", r"^ragged CSV"),
    "latin1": ("user_id,channel\nu1,caf\xe9\n".encode("latin-1"), r"^not UTF-8"),
    "empty": (b"", r"^empty file"),
    "no header": (b"\n\n", r"^no header row"),
}


@settings(
    max_examples=4,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(
    data=st.fixed_dictionaries({t: _rows(t) for t in ("events", "users", "consents", "sends")}),
    parquet=st.sampled_from(["events", "users", "consents", "sends", None]),
    broken=st.one_of(st.none(), st.tuples(st.sampled_from(sorted(BROKEN)), st.sampled_from(sorted(COLUMNS)))),
)
def test_random_malformed_rows_are_accounted_for_and_never_break_the_guardrails(clean_home, data, parquet, broken):
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(clean_home, home, ignore=shutil.ignore_patterns(".nudgeflow.lock"))
        written = {}
        for table, rows in data.items():
            name = f"zz_random.{'parquet' if table == parquet else 'csv'}"
            path = home / "landing" / table / name
            columns = [c for c, _ in COLUMNS[table]]
            if table == parquet:
                pl.DataFrame([r for r, _ in rows], schema={c: pl.String for c in columns}).write_parquet(path)
            else:
                with path.open("w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f)
                    w.writerow(columns)
                    w.writerows([[r[c] if r[c] is not None else "" for c in columns] for r, _ in rows])
            written[(table, name)] = rows
        if broken:
            kind, table = broken
            (home / "landing" / table / "zz_broken.csv").write_bytes(BROKEN[kind][0])
        day = PROPERTY_DAY
        run(home, day)
        con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
        try:
            acc = accounting(con)
            assert all(a["balanced"] for a in acc.values()), acc
            dropped = {
                (t, f, r): reason
                for t, f, r, reason in con.execute(
                    "select table_name, _file, _row, reason from marts.quarantine where action = 'dropped'"
                ).fetchall()
            }
            for (table, name), rows in written.items():
                landed = con.execute(f"select count(*) from raw.{table} where _file = ?", [name]).fetchall()[0][0]
                assert landed == len(rows)  # nothing silently lost
                for i, (row, reason) in enumerate(rows, 1):
                    if reason is None:
                        assert (table, name, i) not in dropped, (table, row, dropped.get((table, name, i)))
                    else:
                        assert reason in dropped.get((table, name, i), ""), (table, row, reason)
            if broken:
                kind, table = broken
                assert re.search(BROKEN[kind][1], dropped[(table, "zz_broken.csv", None)])
        finally:
            con.close()
        _guardrails_hold(home, day)
