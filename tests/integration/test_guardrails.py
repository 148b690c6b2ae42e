"""Nothing wrong is exported: the independent guardrail check (nudgeflow/guardrails.py)
refuses a day with a violating row, and a backfill planned out of order keeps the rules
together with the schedules of later dates."""

import datetime as dt
import hashlib
import shutil

import duckdb
import polars as pl
import pytest

from nudgeflow.config import NudgeflowError, load_settings
from nudgeflow.lab.simulate import create_world
from nudgeflow.steps import run, run_step
from nudgeflow.steps.schedule import export_path

START = dt.date(2026, 1, 5)
HISTORY = 7


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """A world planned for three days out of order: D+2 first, then D and D+1."""
    home = tmp_path_factory.mktemp("guardrails")
    create_world(home, users=400, history_days=HISTORY, start=START, seed=8)
    first = START + dt.timedelta(days=HISTORY)
    days = [first + dt.timedelta(days=2), first, first + dt.timedelta(days=1)]
    for day in days:
        run(home, day)
    return home, sorted(days)


def _schedule(home) -> pl.DataFrame:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return con.sql("select * from send_schedule").pl()
    finally:
        con.close()


def test_backfill_out_of_order_keeps_repeat_and_spacing(planned):
    home, days = planned
    s = load_settings(home)
    sched = _schedule(home).sort("user_id", "send_at")
    assert sched["schedule_date"].n_unique() == 3 and sched.height > 100
    gaps = sched.with_columns(gap=pl.col("send_at").diff().over("user_id")).drop_nulls("gap")
    assert (gaps["gap"] >= dt.timedelta(hours=s.min_hours_between_sends)).all()
    repeats = (
        sched.sort("user_id", "message_id", "send_at")
        .with_columns(gap=pl.col("send_at").diff().over("user_id", "message_id"))
        .drop_nulls("gap")
    )
    assert (repeats["gap"] >= dt.timedelta(days=s.min_days_before_repeat)).all()


@pytest.mark.parametrize("rule", ["holdout", "local_hour", "consent", "cap"])
def test_a_violating_row_is_refused_and_the_export_kept(planned, tmp_path, rule):
    home, days = planned
    copy = tmp_path / "home"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns(".nudgeflow.lock"))
    day = days[0]
    before = export_path(copy, day).read_bytes()
    con = duckdb.connect(str(copy / "warehouse.duckdb"))
    row = con.sql(
        "select c.* from decide.choices as c join marts.user_features as u using (user_id) "
        "where c.schedule_date = ? and u.timezone like 'Europe/%' order by c.user_id limit 1",
        params=[day],
    ).pl()
    if rule == "holdout":
        users = con.sql("select user_id from marts.user_features where is_holdout").pl()["user_id"]
        row = row.with_columns(user_id=pl.lit(users[0]))
    elif rule == "local_hour":  # 01:00 UTC is 01:00 or 02:00 in Europe
        con.execute("delete from decide.choices where user_id = ? and schedule_date = ?", [row["user_id"][0], day])
        row = row.with_columns(send_at=pl.col("send_at").dt.truncate("1d") + pl.duration(hours=1))
    elif rule == "consent":
        row = row.with_columns(channel=pl.lit("carrier_pigeon"))
    elif rule == "cap":
        row = row.with_columns(send_at=pl.col("send_at") + pl.duration(minutes=1))
    con.register("bad", row)
    con.execute("insert into decide.choices select * from bad")
    con.close()
    with pytest.raises(NudgeflowError, match=f"refusing to export the schedule of {day}.*{rule}"):
        run_step("schedule", copy, day)
    assert export_path(copy, day).read_bytes() == before
    assert hashlib.sha256(before).hexdigest()  # the old export is still whole
