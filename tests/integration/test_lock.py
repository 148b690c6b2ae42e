"""One writer per home: a second run waits for the lock and gives up with a clear message;
readers use the published copy, so a reader holding it open never blocks the next run."""

import datetime as dt
import subprocess
import sys
import time

import duckdb
import pytest

from nudgeflow.config import NudgeflowError
from nudgeflow.lab.simulate import create_world, deliver
from nudgeflow.lock import home_lock
from nudgeflow.steps import run
from nudgeflow.warehouse import connect, published_path, table_exists

START = dt.date(2026, 1, 5)
HOLD = """
import sys, time
from nudgeflow.lock import home_lock
with home_lock(sys.argv[1], "test holder"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_a_second_writer_waits_then_gives_up_naming_the_holder(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        said = []
        started = time.monotonic()
        with pytest.raises(NudgeflowError) as err:
            with home_lock(tmp_path, "second", wait_seconds=1.0, progress=said.append):
                pass
        assert time.monotonic() - started >= 1.0
        assert f"pid {child.pid} (test holder" in str(err.value) and "gave up after 1s" in str(err.value)
        assert said and "waiting for the home's lock" in said[0]
    finally:
        child.kill()
        child.wait()
    with home_lock(tmp_path, "after the holder died", wait_seconds=1.0):  # released with its process
        with home_lock(tmp_path, "reentrant", wait_seconds=0.0):
            pass


def test_a_reader_holding_the_published_copy_does_not_block_the_next_run(tmp_path):
    home = tmp_path / "home"
    create_world(home, users=200, history_days=7, start=START, seed=4)
    first = START + dt.timedelta(days=7)
    run(home, first)
    deliver(home, first)
    reader = duckdb.connect(str(published_path(home)), read_only=True)
    try:
        before = reader.sql("select count(*) from send_schedule").fetchall()[0][0]
        result = run(home, first + dt.timedelta(days=1))  # would fail on DuckDB's lock if readers used the live file
        assert reader.sql("select count(*) from send_schedule").fetchall()[0][0] == before  # its snapshot
    finally:
        reader.close()
    fresh = duckdb.connect(str(published_path(home)), read_only=True)
    assert fresh.sql("select count(*) from send_schedule").fetchall()[0][0] == before + result["rows"]
    fresh.close()
    parquet = published_path(home).parent
    for name in ("send_schedule", "send_outcomes", "event_weights", "daily_lift", "channel_effects"):
        assert (parquet / f"{name}.parquet").exists(), name
    rows = duckdb.sql(f"select count(*) from '{parquet / 'send_schedule.parquet'}'").fetchall()[0][0]
    assert rows == before + result["rows"]
    # the events by day: the warehouse's typed, deduplicated events, whatever a reader holds
    with connect(home) as live:
        events = live.sql("select * from staging.stg_raw__events order by event_id").fetchall()
    with connect(home, published=True) as snapshot:
        assert snapshot.sql("select * from events order by event_id").fetchall() == events
        assert not table_exists(snapshot, "staging", "stg_raw__events")  # the result schemas only
