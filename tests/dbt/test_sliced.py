"""The controls built in slices of send hours (macros/sliced_table.sql, measure_slice_sends) are
the controls built in one statement: a first run with one send hour (one feature date for
int_user_features__dated) per slice gives the same tables as one slice."""

from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import pytest
from polars.testing import assert_frame_equal

from nudgeflow.config import Settings, as_of
from nudgeflow.lab.simulate import create_world
from nudgeflow.steps import step_ingest
from nudgeflow.steps.measure import dbt_build

START = dt.date(2026, 1, 5)
HISTORY = 9
DAY = START + dt.timedelta(days=HISTORY)

TABLES = {
    "intermediate.int_user_features__dated": "feature_date, user_id",
    "intermediate.int_sends__controls": "send_id, control_rank",
    "intermediate.int_sends__outcomes_controls": "send_id, control_user_id",
    "marts.send_outcomes": "send_id",
    "marts.placebo_outcomes": "send_id",
}


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    whole = tmp_path_factory.mktemp("whole")
    create_world(whole, users=400, history_days=HISTORY, start=START, seed=5)
    sliced = tmp_path_factory.mktemp("sliced")
    shutil.copytree(whole / "landing", sliced / "landing")
    for home, slice_sends in ((whole, 10**9), (sliced, 1)):
        step_ingest(home, DAY)
        dbt_build(home, Settings(placebo_sends=5000, measure_slice_sends=slice_sends), as_of(DAY))
    return whole, sliced


def test_the_history_was_built_in_one_slice_and_in_one_per_send_hour(homes, read_tables):
    whole, sliced = homes
    con = duckdb.connect(str(sliced / "warehouse.duckdb"), read_only=True)
    try:
        hours, days = con.sql(
            "select count(distinct date_trunc('hour', sent_ts)), count(distinct date_trunc('day', sent_ts))"
            " from intermediate.int_sends__to_measure"
        ).fetchall()[0]
    finally:
        con.close()
    assert days >= 3
    whole_log, sliced_log = ((h / ".dbt" / "logs" / "dbt.log").read_text() for h in homes)
    for model in ("int_sends__controls", "int_sends__outcomes_controls"):
        assert f"{model}: slice 1 of 1 " in whole_log
        assert f"{model}: slice {hours} of {hours} " in sliced_log, "one slice per send hour"
    assert "int_user_features__dated: slice 1 of 1 " in whole_log
    assert f"int_user_features__dated: slice {days} of {days} " in sliced_log, "one slice per send day"


def test_sliced_controls_are_the_controls_of_one_slice(homes, read_tables):
    whole, sliced = (read_tables(h, TABLES) for h in homes)
    for table in TABLES:
        assert whole[table].height > 0, table
        # features and outcomes are parallel sums (1e-14); the controls' distances follow them
        assert_frame_equal(whole[table], sliced[table], rel_tol=1e-12)
