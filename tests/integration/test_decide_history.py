"""The live warehouse keeps the per-user Decide tables of the latest decide_history_days planned
dates (users x actions rows a date: 33 million at a million users), the report's posterior
paths of every date, and a step asked for a pruned date fails in one line instead of writing
an empty day."""

from __future__ import annotations

import datetime as dt

import pytest

from nudgeflow.config import NudgeflowError
from nudgeflow.lab.simulate import create_world
from nudgeflow.steps import match, priors, run, sample
from nudgeflow.warehouse import PATH_USERS, connect

START = dt.date(2026, 1, 5)


def dates(home, table):
    with connect(home) as con:
        return [r[0] for r in con.sql(f"select distinct schedule_date from decide.{table} order by 1").fetchall()]


def test_the_decide_tables_keep_the_latest_dates_and_the_paths_every_date(tmp_path):
    """Three runs with decide_history_days 2 (the default is 1)."""
    home = tmp_path / "home"
    create_world(home, users=60, history_days=7, start=START, seed=3)
    with (home / "nudgeflow.yml").open("a") as f:
        f.write("\ndecide_history_days: 2\n")
    days = [START + dt.timedelta(days=7 + i) for i in range(3)]
    for day in days:
        run(home, day)
    assert dates(home, "posteriors") == days[1:]
    assert dates(home, "samples") == days[1:]
    assert dates(home, "choices") == days  # the decisions (propensities) are kept whole
    assert dates(home, "posterior_paths") == days
    with connect(home) as con:
        per_date = con.sql(
            "select schedule_date, count(distinct user_id) from decide.posterior_paths group by 1 order by 1"
        ).fetchall()
        # the paths are the posteriors' own rows, for the same users every date
        assert [n for _, n in per_date] == [min(PATH_USERS, n) for _, n in per_date] and per_date[0][1] > 0
        missing = con.sql(
            "select count(*) from decide.posterior_paths as p anti join decide.posteriors as q "
            "using (schedule_date, user_id, action_set, action, alpha, beta) where schedule_date = ?",
            params=[days[-1]],
        ).fetchall()[0][0]
        assert missing == 0
    # a step asked for the pruned date fails and writes nothing over its decisions
    with connect(home) as con:
        choices = con.sql(
            "select * from decide.choices where schedule_date = ? order by all", params=[days[0]]
        ).fetchall()
    with pytest.raises(NudgeflowError, match=f"no longer holds {days[0]}.*run the whole run for {days[0]} again"):
        match.step_match(home, days[0])
    with pytest.raises(NudgeflowError, match="no longer holds"):
        sample.step_sample(home, days[0])
    with connect(home) as con:
        assert (
            con.sql("select * from decide.choices where schedule_date = ? order by all", params=[days[0]]).fetchall()
            == choices
        )
    # the run for the pruned date makes it again, for the same users, and keeps the later dates
    # (the same messages here, not the same propensities: a run for an earlier date keeps the
    # no-repeat rules with the later dates' schedules, steps/match.py _scheduled_after)
    run(home, days[0])
    assert dates(home, "posteriors") == days
    with connect(home) as con:
        again = con.sql(
            "select * from decide.choices where schedule_date = ? order by all", params=[days[0]]
        ).fetchall()
    assert [row[:2] for row in again] == [row[:2] for row in choices] and choices
    # the next run for the latest date prunes the old date again
    priors.step_priors(home, days[-1])
    assert dates(home, "posteriors") == days[1:]
