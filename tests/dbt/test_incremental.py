"""Incremental measurement: N daily runs give the tables of one full recompute, and late data
follows the documented policy (dbt_project/README.md, "Incremental runs and late data").

A daily run scores only the sends that matured since the last run. Each send's outcome is a
function of the data and of the send alone: the event weights of its weights_as_of (the first
midnight after it matured, frozen in event_weights_history) and controls matched on the
features of its own day. So the order and number of runs cannot change it.
"""

from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from nudgeflow.config import Settings, as_of, load_settings
from nudgeflow.lab.simulate import create_world
from nudgeflow.steps import step_ingest
from nudgeflow.steps.measure import dbt_args, dbt_build, run_dbt

START = dt.date(2026, 1, 5)
HISTORY = 9
DAILY = [START + dt.timedelta(days=d) for d in (7, 8, 9)]  # three daily runs
PLACEBOS = Settings(
    placebo_sends=5000
)  # placebos on: their selection and adjustment must not depend on the runs either

TABLES = {
    "marts.send_outcomes": "send_id",
    "marts.placebo_outcomes": "send_id",
    "marts.event_weights_history": "weights_as_of, event_name",
    "marts.event_weights": "event_name",
    "marts.send_actions": "send_id, action_set",
    "marts.action_outcomes": "user_id, action_set, action",
    "marts.event_weight_strata": "user_id, event_name",
    "marts.daily_lift": "event_date, user_group",
    "marts.consents_current": "user_id, channel",
    "marts.quarantine": "table_name, _file, _row, reason",
    # the day tables (macros/day_table.sql), without the build's watermark
    "(select * exclude (loaded_through) from intermediate.int_user_days)": "user_id, event_day",
    "(select * exclude (loaded_through) from intermediate.int_event_days)": "user_id, event_name, event_day",
    "(select * exclude (loaded_through) from intermediate.int_followed_days)": "user_id, event_day",
}


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    daily = tmp_path_factory.mktemp("daily")
    create_world(daily, users=400, history_days=HISTORY, start=START, seed=5)
    full = tmp_path_factory.mktemp("full")
    shutil.copytree(daily / "landing", full / "landing")
    step_ingest(daily, DAILY[0])
    for day in DAILY:
        dbt_build(daily, PLACEBOS, as_of(day))
    step_ingest(full, DAILY[-1])
    dbt_build(full, PLACEBOS, as_of(DAILY[-1]))
    return daily, full


def test_daily_runs_equal_a_full_recompute(homes, read_tables):
    daily, full = homes
    a, b = read_tables(daily, TABLES), read_tables(full, TABLES)
    assert a["marts.send_outcomes"].height > 300  # the runs scored real sends
    assert a["marts.send_outcomes"]["weights_as_of"].n_unique() >= len(DAILY)
    for table in TABLES:
        assert_frame_equal(a[table], b[table], check_exact=False, rel_tol=1e-9, abs_tol=1e-12)
    # the keys that send_actions and action_outcomes hold by construction (no dbt data test
    # rescans them in a run: _marts__models.yml)
    actions = a["marts.send_actions"]
    assert (
        actions.height >= 3 * a["marts.send_outcomes"].height
        and not actions.select("send_id", "action_set").is_duplicated().any()
    )
    assert set(actions["send_id"]) <= set(a["marts.send_outcomes"]["send_id"])
    assert actions.drop("reward").null_count().sum_horizontal().item() == 0  # a view: no constraints
    assert not a["marts.action_outcomes"].select("user_id", "action_set", "action").is_duplicated().any()


def test_daily_lift_counts_each_days_goal_events_by_group(homes, read_tables):
    """marts.daily_lift (read from int_user_days) against the goal events themselves."""
    daily, _ = homes
    settings = load_settings(daily)
    t = read_tables(
        daily,
        {
            "marts.daily_lift": "event_date, user_group",
            "marts.consents_current": "user_id, channel",
            "marts.quarantine": "table_name, _file, _row, reason",
            "staging.stg_raw__events": "event_ts",
            "marts.user_features": "user_id",
        },
    )
    groups = t["marts.user_features"].select(
        "user_id", user_group=pl.when("is_holdout").then(pl.lit("holdout")).otherwise(pl.lit("agentic"))
    )
    start = as_of(DAILY[-1]) - dt.timedelta(days=settings.report_window_days)
    goals = t["staging.stg_raw__events"].filter(
        (pl.col("event_name") == settings.goal_event) & (pl.col("event_ts") >= start)
    )
    expected = (
        goals.join(groups, on="user_id")
        .group_by(event_date=pl.col("event_ts").dt.date(), user_group="user_group")
        .agg(goal_events=pl.len(), goal_users=pl.col("user_id").n_unique(), gmv=pl.col("value").sum())
    )
    lift = t["marts.daily_lift"]
    assert goals.height > 100 and lift["goal_events"].sum() == expected["goal_events"].sum()
    got = lift.join(expected, on=["event_date", "user_group"], how="left", suffix="_events")
    for column in ("goal_events", "goal_users", "gmv"):
        want = got[f"{column}_events"].fill_null(0).cast(pl.Float64)
        assert (got[column].cast(pl.Float64) - want).abs().max() < 1e-9, column
    # every day from the first event to the day before as_of, for each group, with its size
    first = t["staging.stg_raw__events"]["event_ts"].min().date()
    assert lift["event_date"].unique().sort().to_list() == [
        first + dt.timedelta(days=d) for d in range((DAILY[-1] - first).days)
    ]
    sizes = dict(groups.group_by("user_group").len().iter_rows())
    assert dict(lift.select("user_group", "n_users").unique().iter_rows()) == sizes


def test_sends_are_scored_with_the_weights_of_their_first_run(homes, read_tables):
    daily, _ = homes
    outcomes = read_tables(daily, TABLES)["marts.send_outcomes"]
    day = pl.col("matured_at").dt.truncate("1d")
    expected = pl.when(pl.col("matured_at") == day).then(day).otherwise(day + pl.duration(days=1))
    checked = outcomes.with_columns(expected=expected)
    # including the sends that had matured long before the first run (its backlog)
    assert checked.filter(pl.col("matured_at") < as_of(DAILY[0]) - dt.timedelta(days=1)).height > 0
    assert (checked["weights_as_of"] == checked["expected"]).all()


def test_late_events_do_not_rescore_measured_sends(homes, read_tables, tmp_path):
    """Policy: a send is measured once, by the first run after it matured, with the data landed
    by then; events that land later (for times before that run) are used by every later
    weight date, feature date and window, but never rescore a measured send. A full refresh
    (`dbt build --full-refresh`) re-measures everything with all data landed so far."""
    daily, _ = homes
    home = tmp_path / "late"
    shutil.copytree(daily, home, ignore=shutil.ignore_patterns(".dbt"))
    before = read_tables(home, TABLES)["marts.send_outcomes"]
    send = before.sort("sent_ts").row(before.height // 2, named=True)
    late = pl.DataFrame(
        {
            "event_id": ["late-1"],
            "user_id": [send["user_id"]],
            "event_name": ["purchase"],
            "event_ts": [send["sent_ts"] + dt.timedelta(hours=1)],
            "value": [50.0],
        }
    )
    late.write_parquet(home / "landing" / "events" / "late_arrivals.parquet")
    # a later consents file (base_raw__consents types only the files it has not seen): the
    # user withdraws every consent
    flip_ts = dt.datetime.combine(DAILY[-1], dt.time(6))
    withdrawn = pl.DataFrame(
        {"user_id": [send["user_id"]] * 4, "channel": ["push", "email", "in_app", "sms"], "opted_in": [False] * 4}
    ).with_columns(updated_ts=pl.lit(flip_ts))
    withdrawn.write_parquet(home / "landing" / "consents" / "consents_later.parquet")
    # and int_user_days as an earlier version left it, without a column added since (its
    # watermark loaded_through, then goal_value): rebuilt whole once
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("alter table intermediate.int_user_days drop column goal_value")
    next_day = DAILY[-1] + dt.timedelta(days=1)
    step_ingest(home, next_day)
    dbt_build(home, PLACEBOS, as_of(next_day))
    after = read_tables(home, TABLES)["marts.send_outcomes"]
    again = after.filter(pl.col("send_id") == send["send_id"]).row(0, named=True)
    assert again["y_post"] == pytest.approx(send["y_post"])  # frozen
    assert after.height >= before.height
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    landed = con.execute("select count(*) from staging.stg_raw__events where event_id = 'late-1'").fetchall()
    con.close()
    assert landed == [(1,)]  # the late event is in the warehouse for every later use
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        typed = con.sql("select _file, count(*) from staging.base_raw__consents group by 1 order by 1").fetchall()
        opted = con.sql(
            "select channel, opted_in from marts.consents_current where user_id = ? order by 1",
            params=[send["user_id"]],
        ).fetchall()
        raw = con.sql("select _file, count(*) from raw.consents group by 1 order by 1").fetchall()
    assert typed == raw and ("consents_later.parquet", 4) in typed  # every landed row typed once
    assert opted == [(c, False) for c in ("email", "in_app", "push", "sms")]

    # the day tables rebuilt the days the late goal reaches: the same as a full refresh
    refreshed = tmp_path / "refreshed"
    shutil.copytree(home, refreshed, ignore=shutil.ignore_patterns(".dbt"))
    models = ["int_user_days", "int_event_days", "int_followed_days", "event_weight_strata"]
    refresh = ["--full-refresh", "--exclude-resource-type", "unit_test", "--select", *models]
    run_dbt(dbt_args("build", refreshed, PLACEBOS, *refresh), refreshed, as_of(next_day))
    days = {t: k for t, k in TABLES.items() if any(m in t for m in models)}
    a, b = read_tables(home, days), read_tables(refreshed, days)
    for table in days:  # (a column added to an existing table comes last)
        assert_frame_equal(a[table], b[table], check_exact=False, rel_tol=1e-9, abs_tol=1e-12, check_column_order=False)
    user_days = next(t for t in days if "int_user_days" in t)
    goals = {
        name: t[user_days].filter(pl.col("user_id") == send["user_id"])["n_goal"].sum()
        for name, t in (("before", read_tables(daily, days)), ("after", a))
    }
    assert goals["after"] == goals["before"] + 1  # the late goal's day was rebuilt
