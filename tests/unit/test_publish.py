"""The published events (warehouse._publish_events): one Parquet file per day, written again
only when the day's events changed, and always the warehouse's typed, deduplicated events."""

from __future__ import annotations

import duckdb
import pytest

from nudgeflow.warehouse import _publish_events


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("create schema staging")
    con.execute(
        """
        create table staging.stg_raw__events as
        select * from (values
            ('e1', 'u1', 'view', timestamp '2026-01-01 00:00:00', null::double, 1::bigint),
            ('e2', 'u1', 'buy', timestamp '2026-01-01 23:59:59.999999', 10.0, 1),
            ('e3', 'u2', 'view', timestamp '2026-01-02 12:00:00', null, 2),
            ('e4', 'u2', 'buy', timestamp '2026-01-03 08:00:00', 5.0, 3)
        ) as t(event_id, user_id, event_name, event_ts, value, load_seq)
        """
    )
    yield con
    con.close()


def published(folder):
    return sorted(duckdb.sql(f"select event_id from read_parquet('{folder / '*.parquet'}')").fetchall())


def stamps(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}


def test_each_day_once_and_again_only_when_it_changed(con, tmp_path):
    folder = tmp_path / "events"
    assert _publish_events(con, folder) == 3
    assert sorted(p.name for p in folder.glob("*.parquet")) == [
        "2026-01-01.parquet",
        "2026-01-02.parquet",
        "2026-01-03.parquet",
    ]
    assert duckdb.sql(f"select count(*) from '{folder / '2026-01-01.parquet'}'").fetchall() == [(2,)]
    assert published(folder) == [("e1",), ("e2",), ("e3",), ("e4",)]
    before = stamps(folder)
    assert _publish_events(con, folder) == 0
    assert stamps(folder) == before

    # a late event for 2 January, landed by a later load: that day alone is written again
    con.execute("insert into staging.stg_raw__events values ('e5', 'u3', 'view', '2026-01-02 13:00:00', null, 4)")
    assert _publish_events(con, folder) == 1
    after = stamps(folder)
    assert after["2026-01-01.parquet"] == before["2026-01-01.parquet"]
    assert after["2026-01-03.parquet"] == before["2026-01-03.parquet"]
    assert published(folder) == [("e1",), ("e2",), ("e3",), ("e4",), ("e5",)]

    # a day whose events are gone (e.g. a user erased) disappears
    con.execute("delete from staging.stg_raw__events where event_id = 'e4'")
    assert _publish_events(con, folder) == 0
    assert not (folder / "2026-01-03.parquet").exists()
    assert published(folder) == [("e1",), ("e2",), ("e3",), ("e5",)]


def test_new_columns_write_every_day_again(con, tmp_path):
    folder = tmp_path / "events"
    _publish_events(con, folder)
    con.execute("alter table staging.stg_raw__events add column platform varchar default 'ios'")
    assert _publish_events(con, folder) == 3
    assert duckdb.sql(f"select distinct platform from read_parquet('{folder / '*.parquet'}')").fetchall() == [("ios",)]


def test_a_lost_manifest_or_file_is_written_again(con, tmp_path):
    folder = tmp_path / "events"
    _publish_events(con, folder)
    (folder / "2026-01-02.parquet").unlink()
    assert _publish_events(con, folder) == 1
    (folder / "_days.json").write_text("not json")
    assert _publish_events(con, folder) == 3
    assert published(folder) == [("e1",), ("e2",), ("e3",), ("e4",)]


def test_no_events_leave_an_empty_file_with_the_columns(con, tmp_path):
    folder = tmp_path / "events"
    _publish_events(con, folder)
    con.execute("delete from staging.stg_raw__events")
    assert _publish_events(con, folder) == 0
    assert [p.name for p in folder.glob("*.parquet")] == ["empty.parquet"]
    columns = [c[0] for c in duckdb.sql(f"describe select * from '{folder / 'empty.parquet'}'").fetchall()]
    assert columns == ["event_id", "user_id", "event_name", "event_ts", "value", "load_seq"]
    con.execute("insert into staging.stg_raw__events values ('e6', 'u1', 'view', '2026-01-05 00:00:00', null, 5)")
    _publish_events(con, folder)
    assert [p.name for p in folder.glob("*.parquet")] == ["2026-01-05.parquet"]
